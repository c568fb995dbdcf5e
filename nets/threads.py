"""How many threads the engine's Numba kernels and BLAS calls use, in this process and in the
processes it starts.

Numba fixes its thread-pool size when the pool starts and, on every later compile, re-reads the
NUMBA_* environment variables and raises if NUMBA_NUM_THREADS changed. A kernel missing from the
on-disk cache compiles in the middle of a run, so a process that wrote the variable after Numba
loaded crashes only on a cold cache. Hence the rule: a running process limits itself through the
runtime APIs (`limit`), and sets the variables only around starting children, which read them as
they load (`for_children`).
"""
from __future__ import annotations

import contextlib
import os

import numba
from threadpoolctl import threadpool_limits

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


def limit(n: int) -> None:
    """Use at most `n` threads for Numba kernels and BLAS in this process; valid at any time."""
    threadpool_limits(n)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


@contextlib.contextmanager
def limited(n: int):
    """`limit(n)` inside the block, the previous limits after it (a library call inside someone
    else's process, a notebook's)."""
    numba_threads = numba.get_num_threads()
    with threadpool_limits(n):
        numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))
        try:
            yield
        finally:
            numba.set_num_threads(numba_threads)


def child_environment(n: int = 1) -> dict[str, str]:
    """The thread variables a child process should start with to use `n` threads."""
    return {name: str(n) for name in THREAD_VARIABLES}


@contextlib.contextmanager
def for_children(n: int = 1):
    """Processes started inside inherit `n`-thread limits; this process's environment is restored
    on exit. Only start processes inside: a Numba compile here would see the changed variables."""
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update(child_environment(n))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
