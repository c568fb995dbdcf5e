"""Process-wide settings the engine makes as it loads, for speed on the CPU (each measured on
2 cores against the default, benchmarks/engine.py's cases; docs/performance.md).

- OpenBLAS's idle threads spin for 2^28 cycles (~0.1 s) after each threaded product, on the cores
  that the engine's own threads (nets/kernels/parallel.py) want next. 2^20 cycles (~0.4 ms) keeps
  them through a burst of products and out of the way after it: PPO's Atari minibatch 0.71x its
  time, A3C's batch of 128 0.63x. OpenBLAS reads it once, as NumPy loads, so it is an environment
  variable, set here only if the user has not set it: a program that imports NumPy before nets
  can export it itself.
- glibc maps each array above its mmap threshold (128 KiB, raised as large arrays are freed)
  fresh from the kernel and unmaps it when freed: every page then faults on first write, and
  in a process whose other threads run on other cores each unmap interrupts them to flush their
  TLBs. Fixed thresholds keep freed arrays up to 32 MiB in the heap for the next step's arrays
  of the same sizes: SAC's step 0.79x its time on 2 threads, PPO's Atari minibatch 0.84x. The
  heap keeps up to 256 MiB of freed memory before it returns any to the system.
"""
from __future__ import annotations

import ctypes
import os

OPENBLAS_THREAD_TIMEOUT = "20"  # log2 of the cycles an idle OpenBLAS thread spins before sleeping
MMAP_THRESHOLD = 32 << 20  # bytes: larger arrays are mapped from the kernel (glibc's largest default)
TRIM_THRESHOLD = 256 << 20  # bytes of free heap top kept before returning memory to the system
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def configure() -> None:
    """Apply both settings to this process (nets/__init__.py calls it before NumPy loads)."""
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", OPENBLAS_THREAD_TIMEOUT)
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc's; absent on macOS
    if mallopt is not None:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
