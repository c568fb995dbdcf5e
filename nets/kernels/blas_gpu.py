"""One cuBLAS product called directly: the recurrent loops' per-step products and the dense
layers' (kernels/dense.py).

CuPy's matmul spends about 20 us of Python and argument checks per call: a char-level LSTM step
makes two products, each under 10 us of GPU work, so that overhead was most of a step. Here a
product of 2-D float32 matrices, each with contiguous rows or columns (a transposed view), into a
row-major output is one sgemm on CuPy's handle and current stream, writing or adding (a weight
gradient goes straight into the parameter's); anything else goes to cupy.matmul.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import backend

_ONE, _ZERO = np.ones(1, np.float32), np.zeros(1, np.float32)  # host scalars for alpha and beta
_ONE_ADDRESS, _ZERO_ADDRESS = _ONE.ctypes.data, _ZERO.ctypes.data  # (.ctypes costs us per access)
_ones_rows: dict[tuple[int, int], object] = {}  # (length, device) -> a row of ones, kept for reuse


@functools.cache
def _cublas():
    from cupy.cuda import cublas  # noqa: PLC0415 - CuPy is imported only through nets.backend's check
    backend.cupy_module()
    return cublas


def _operand(x) -> tuple[bool, int] | None:
    """(transposed, leading dimension) of a float32 matrix whose rows are contiguous and apart
    (row-major) or whose columns are (a transposed view of a row-major one), else None: a
    broadcast operand's rows overlap, which no leading dimension describes."""
    if x.ndim != 2 or x.dtype != np.float32 or x.strides[0] % 4 or x.strides[1] % 4:
        return None
    (rows, cols), (row_step, col_step) = x.shape, (x.strides[0] // 4, x.strides[1] // 4)
    if col_step == 1 and (rows == 1 or row_step >= cols):
        return False, max(row_step if rows > 1 else cols, 1)
    if row_step == 1 and (cols == 1 or col_step >= rows):
        return True, max(col_step if cols > 1 else rows, 1)
    return None


def gemm_arguments(a, b, out) -> tuple | None:
    """sgemm's (op on b, op on a, n, m, k, ldb, lda, ldo) for out = a @ b, or None where an
    operand has neither contiguous rows nor contiguous columns, or `out` is not row-major.

    cuBLAS is column-major, and a row-major matrix is its transpose there: row-major out = a @ b
    is column-major out^T = b^T a^T, so b comes first. A row-major operand is already that
    transpose (no op); a transposed view is the matrix itself, column-major (op T)."""
    la, lb, lo = _operand(a), _operand(b), _operand(out)
    if None in (la, lb, lo) or lo[0]:
        return None
    (m, k), n = a.shape, b.shape[1]
    return lb[0], la[0], n, m, k, lb[1], la[1], lo[1]


def matmul(a, b, out, add: bool = False) -> None:
    """out = a @ b on the GPU, or out += a @ b with `add` (cuBLAS's beta = 1: no second pass)."""
    arguments = gemm_arguments(a, b, out)
    cp = backend.cupy_module()
    if arguments is None:
        if add:
            out += cp.matmul(a, b)
        else:
            cp.matmul(a, b, out=out)
        return
    op_b, op_a, n, m, k, ldb, lda, ldo = arguments
    if not (m and n and k):
        if not add:
            out[...] = 0
        return
    cublas = _cublas()
    handle = cp.cuda.device.get_cublas_handle()
    cublas.setStream(handle, cp.cuda.get_current_stream().ptr)
    cublas.setPointerMode(handle, cublas.CUBLAS_POINTER_MODE_HOST)
    transpose = {False: cublas.CUBLAS_OP_N, True: cublas.CUBLAS_OP_T}
    cublas.sgemm(handle, transpose[op_b], transpose[op_a], n, m, k, _ONE_ADDRESS,
                 b.data.ptr, ldb, a.data.ptr, lda, _ONE_ADDRESS if add else _ZERO_ADDRESS,
                 out.data.ptr, ldo)


def add_column_sums(x, into) -> None:
    """into += x.sum(axis=0) for x (rows, columns) and into (columns,): one product of a row of
    ones with x, added by cuBLAS (a sum then an add are two launches)."""
    cp = backend.cupy_module()
    key = (x.shape[0], cp.cuda.Device().id)
    ones = _ones_rows.get(key)
    if ones is None:
        ones = _ones_rows[key] = cp.ones((1, x.shape[0]), np.float32)
    matmul(ones, x, into.reshape(1, -1), add=True)
