"""A batch's chunks of samples shared among threads, each thread running its chunks' copies and
matrix products single-threaded (CPU).

The convolutions work a batch in chunks small enough for their scratch to stay in cache (a single
Atari frame per chunk in the first layer), and a product that size is too small for OpenBLAS to
spread over cores: on two threads a PPO minibatch through the Nature net took 0.9x its one-thread
time. Splitting the chunks between threads instead, as PyTorch's oneDNN splits a batch, keeps each
thread on its own cache-sized work. The kernels the threads call release the GIL (`nogil`), and
OpenBLAS is held to one thread inside, so the two kinds of threads never compete for the cores.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

_state = threading.local()
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_blas = None  # threadpoolctl's controller of the BLAS NumPy loaded, made on first use


def _blas_controller():
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas


def threads() -> int:
    """How many threads a parallel region uses: what BLAS would use here (threads.limit sets it),
    one inside a region already."""
    if getattr(_state, "inside", False):
        return 1
    counts = [lib.num_threads for lib in _blas_controller().lib_controllers]
    return max(1, min(counts)) if counts else 1


def split(items: list, parts: int) -> list[list]:
    """`items` in `parts` contiguous groups (or fewer, when there are fewer items), sizes within one."""
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    groups, start = [], 0
    for part in range(parts):
        end = start + size + (part < extra)
        groups.append(items[start:end])
        start = end
    return groups


def map_groups(work, spans: list, parallel: bool = True) -> list:
    """[work(group) for group in split(spans, threads())], the groups run at once on that many
    threads (this one included) with BLAS single-threaded; in order on this thread when one
    group (or `parallel` false: arrays that are not the CPU's)."""
    groups = split(spans, threads() if parallel else 1)
    if len(groups) == 1:
        return [work(groups[0])]
    global _pool, _pool_size
    with _lock:
        if _pool_size < len(groups) - 1:  # this thread works the first group itself
            _pool_size = len(groups) - 1
            _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="nets-chunks")
    with _blas_controller().limit(limits=1):
        futures = [_pool.submit(_inside, work, group) for group in groups[1:]]
        results = [_inside(work, groups[0])]
        results += [future.result() for future in futures]
    return results


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own when needed."""
    global _pool, _pool_size, _lock
    _pool, _pool_size, _lock = None, 0, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def _inside(work, group):
    _state.inside = True
    try:
        return work(group)
    finally:
        _state.inside = False
