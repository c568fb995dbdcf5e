"""Dense products: outer products, and products added into a gradient as BLAS makes them.

Products whose inner dimension is 1 are outer products.
A batch of one's weight gradient (x^T gy with one row), a one-output layer's input gradient
(gy W^T with one column: a value head, a critic), a one-input layer's forward pass and a
recurrent layer's input projection of a one-feature series are outer products. OpenBLAS (0.3.31)
takes several times as long over them as over an inner dimension of two: 2592 x 256 from one row
0.77 ms against 0.15 ms from two, 256 x 256 from one column 76 us; written row by row here they
take 0.08 ms and 7 us, the speed of writing the result.

A weight gradient is added into the parameter's gradient by the product itself (`add_matmul`:
OpenBLAS's sgemm with beta = 1, called through ctypes, as NumPy's matmul cannot add into its
output), not written out and then added: the product and the adding pass over a large gradient,
out of cache, took 940 us where the added product takes 384 (the Nature net's 3136 x 512 dense
layer at batch 32, 2 threads).

On the GPU both are one cuBLAS call (blas_gpu.py): no second launch for the add, and none of
CuPy's matmul's ~20 us of host time, which small layers are bound by.
"""
from __future__ import annotations

import ctypes
import functools

import numpy as np
import threadpoolctl
from numba import njit

from .. import backend
from . import blas_gpu, dense_gpu

_SGEMM_FROM = 1 << 14  # a ctypes call costs ~5 us; below this many outputs NumPy's add is cheaper
_ROW_MAJOR, _AS_IS, _TRANSPOSED = 101, 111, 112  # CBLAS's enums


@njit(cache=True, nogil=True)
def _outer(a, b, out, add):
    """out = a b^T of vectors a and b, or out += a b^T with `add`."""
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = out[i, j] + a[i] * b[j] if add else a[i] * b[j]


def matmul(a, b, out=None):
    """a @ b for a (m, k) and b (k, n), into `out` if given: an outer product written row by row
    when k is 1 on the CPU, BLAS otherwise."""
    xp = backend.get_array_module(a)
    if xp is not np:
        if out is None:
            out = xp.empty((a.shape[0], b.shape[1]), dtype=xp.result_type(a.dtype, b.dtype))
        blas_gpu.matmul(a, b, out)
        return out
    if a.shape[1] != 1:
        return xp.matmul(a, b, out=out)
    if out is None:
        out = np.empty((a.shape[0], b.shape[1]), dtype=np.result_type(a.dtype, b.dtype))
    _outer(a[:, 0], b[0], out, False)
    return out


def bias_activation(y, b, activation):
    """y = activation(y + b) in place and returned: y (rows, columns), b (columns,) or None,
    activation None, "relu" or "tanh"; one kernel on the GPU."""
    if backend.get_array_module(y) is not np:
        dense_gpu.bias_activation(y, b, activation)
        return y
    if b is not None:
        y += b
    if activation == "relu":
        np.maximum(y, 0, out=y)
    elif activation == "tanh":
        np.tanh(y, out=y)
    return y


def activation_gradient(gy, y, activation):
    """gy through `activation` (None, "relu" or "tanh"), read from its output y; one kernel on
    the GPU."""
    if activation is None:
        return gy
    if backend.get_array_module(y) is not np:
        return dense_gpu.activation_gradient(gy, y, activation)
    return gy * (y > 0) if activation == "relu" else gy * (1 - y * y)


def add_column_sums(x, into) -> None:
    """into += x.sum(axis=0): on the GPU one cuBLAS product with a row of ones."""
    if backend.get_array_module(into) is np:
        into += x.sum(axis=0)
    else:
        blas_gpu.add_column_sums(x, into)


def add_matmul(a, b, into) -> None:
    """into += a @ b for a (m, k), b (k, n) and a row-contiguous float32 `into` (m, n): the product
    is added by BLAS as it is made (on the CPU, when k is 1, by an outer-product kernel)."""
    xp = backend.get_array_module(into)
    if xp is not np:
        blas_gpu.matmul(a, b, into, add=True)
    elif into.dtype != np.float32 or a.dtype != np.float32 or b.dtype != np.float32:
        into += a @ b
    elif a.shape[1] == 1:
        _outer(a[:, 0], b[0], into, True)
    elif (into.size < _SGEMM_FROM or not a.shape[1] or into.strides[1] != 4
          or into.strides[0] < 4 * into.shape[1] or _sgemm() is None):
        into += a @ b
    else:
        transpose_a, a, lda = _operand(a)
        transpose_b, b, ldb = _operand(b)
        _sgemm()(_ROW_MAJOR, transpose_a, transpose_b, *into.shape, a.shape[1], 1.0, a.ctypes.data, lda,
                 b.ctypes.data, ldb, 1.0, into.ctypes.data, into.strides[0] // 4)


def _operand(x):
    """How sgemm reads the float32 matrix `x`: (as it is or transposed, x, leading dimension);
    an array with no unit stride is copied first."""
    if x.strides[1] == 4 and x.strides[0] >= 4 * max(1, x.shape[1]):
        return _AS_IS, x, x.strides[0] // 4
    if x.strides[0] == 4 and x.strides[1] >= 4 * max(1, x.shape[0]):
        return _TRANSPOSED, x, x.strides[1] // 4
    x = np.ascontiguousarray(x)
    return _AS_IS, x, max(1, x.shape[1])


@functools.cache
def _sgemm():
    """cblas_sgemm of an OpenBLAS loaded in this process (NumPy's first), or None where none is.
    The symbols of the wheels' scipy-openblas builds (64-bit or 32-bit integers); a call that does
    not reproduce NumPy's product on a small case is not used."""
    libraries = [lib for lib in threadpoolctl.threadpool_info() if lib["internal_api"] == "openblas"]
    for library in sorted(libraries, key=lambda lib: "numpy" not in lib["filepath"]):  # NumPy's first
        blas = ctypes.CDLL(library["filepath"])
        for name, integer in (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
                              ("scipy_cblas_sgemm", ctypes.c_int)):
            sgemm = getattr(blas, name, None)
            if sgemm is None:
                continue
            pointer, single = ctypes.c_void_p, ctypes.c_float
            sgemm.argtypes = [integer] * 6 + [single, pointer, integer, pointer, integer, single,
                                               pointer, integer]
            sgemm.restype = None
            if _reproduces_numpy(sgemm):
                return sgemm
    return None


def _reproduces_numpy(sgemm) -> bool:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.arange(12, dtype=np.float32).reshape(3, 4)
    into = np.ones((2, 4), np.float32)
    sgemm(_ROW_MAJOR, _AS_IS, _AS_IS, 2, 4, 3, 1.0, a.ctypes.data, 3, b.ctypes.data, 4, 1.0, into.ctypes.data, 4)
    return bool(np.array_equal(into, a @ b + 1))
