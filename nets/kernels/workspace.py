"""Reusable scratch buffers (im2col patch matrices and the like).

A fresh multi-megabyte array costs page faults on every step (glibc maps allocations above its
threshold straight from the kernel), which is as slow as the copy that fills it. `take` hands back
a buffer that nothing else holds any more; a buffer stays taken as long as any array (a view, an
op saved for backward) refers to it, so reuse can never overwrite live data.
"""
from __future__ import annotations

import contextlib
import sys
import threading
from collections import OrderedDict

MAX_KEYS = 32  # distinct (shape, dtype, device) kinds kept; the least recently used go first
MAX_PER_KEY = 4  # buffers kept per kind; beyond that, buffers are plain allocations

_pool: "OrderedDict[tuple, list]" = OrderedDict()
_lock = threading.Lock()
_unpooled = 0  # > 0 inside `unpooled()`


def _refcount_when_free() -> int:
    """What getrefcount reports for a pooled buffer nobody else holds (the pool's list, the loop
    variable, the call's argument: measured, since interpreters count borrowed references
    differently)."""
    held = [bytearray(1)]
    for item in held:
        return sys.getrefcount(item)


_FREE_REFCOUNT = _refcount_when_free()


def take(xp, shape, dtype):
    """An uninitialised array of `shape` and `dtype` on xp's device that nobody else uses."""
    if _unpooled:
        return xp.empty(shape, dtype=dtype)
    key = (tuple(shape), xp.dtype(dtype).str, xp.__name__)
    with _lock:
        buffers = _pool.get(key)
        if buffers is None:
            buffers = _pool[key] = []
            if len(_pool) > MAX_KEYS:
                _pool.popitem(last=False)
        else:
            _pool.move_to_end(key)
        for buffer in buffers:
            if sys.getrefcount(buffer) <= _FREE_REFCOUNT:
                return buffer
        buffer = xp.empty(shape, dtype=dtype)
        if len(buffers) < MAX_PER_KEY:
            buffers.append(buffer)
        return buffer


def clear() -> None:
    """Drop every pooled buffer (memory is returned once no op holds them)."""
    with _lock:
        _pool.clear()


@contextlib.contextmanager
def unpooled():
    """Inside, `take` hands out plain new arrays and keeps none: a CUDA graph captured here keeps
    its scratch to itself, where a pooled buffer would be written by every replay while an eager
    op might hold it (nets/capture.py)."""
    global _unpooled
    with _lock:
        _unpooled += 1
    try:
        yield
    finally:
        with _lock:
            _unpooled -= 1
