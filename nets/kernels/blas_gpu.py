"""One cuBLAS product called directly, for the per-step products of the recurrent loops.

CuPy's matmul spends about 20 us of Python and argument checks per call: a char-level LSTM step
makes two products, each under 10 us of GPU work, so that overhead was most of a step. Here a
product of row-major 2-D float32 arrays with contiguous rows is one sgemm on CuPy's handle and
current stream; anything else goes to cupy.matmul.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend

_ONE, _ZERO = np.ones(1, np.float32), np.zeros(1, np.float32)  # host scalars for alpha and beta
_ONE_ADDRESS, _ZERO_ADDRESS = _ONE.ctypes.data, _ZERO.ctypes.data  # (.ctypes costs us per access)


@functools.cache
def _cublas():
    from cupy.cuda import cublas  # noqa: PLC0415 - CuPy is imported only through nets.backend's check
    backend.cupy_module()
    return cublas


def _rows(x) -> int | None:
    """The leading dimension of a row-major float32 matrix with contiguous rows, else None."""
    if x.ndim != 2 or x.dtype != np.float32 or x.strides[1] != 4 or x.strides[0] % 4:
        return None
    return max(x.strides[0] // 4, x.shape[1], 1)


def matmul(a, b, out) -> None:
    """out = a @ b on the GPU."""
    lda, ldb, ldo = _rows(a), _rows(b), _rows(out)
    if None in (lda, ldb, ldo):
        backend.cupy_module().matmul(a, b, out=out)
        return
    (m, k), n = a.shape, b.shape[1]
    if not (m and n and k):
        out[...] = 0
        return
    cp, cublas = backend.cupy_module(), _cublas()
    handle = cp.cuda.device.get_cublas_handle()
    cublas.setStream(handle, cp.cuda.get_current_stream().ptr)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    # row-major out = a @ b is column-major out^T = b^T @ a^T: the operands swap places
    cublas.sgemm(handle, cublas.CUBLAS_OP_N, cublas.CUBLAS_OP_N, n, m, k, _ONE_ADDRESS,
                 b.data.ptr, ldb, a.data.ptr, lda, _ZERO_ADDRESS, out.data.ptr, ldo)
