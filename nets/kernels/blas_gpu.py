"""One cuBLAS product called directly: the recurrent loops' per-step products and the dense
layers' (kernels/dense.py).

CuPy's matmul spends about 20 us of Python and argument checks per call: a char-level LSTM step
makes two products, each under 10 us of GPU work, so that overhead was most of a step. Here a
product of 2-D float32 matrices into a row-major output is one sgemm on CuPy's handle and current
stream, writing or adding (a weight gradient goes straight into the parameter's); an operand with
neither contiguous rows nor contiguous columns is copied first, and other dtypes go to cupy.matmul.

sgemm is called through ctypes on the libcublas CuPy has loaded, not through CuPy's wrappers:
those refuse every cuBLAS call while a stream is being captured (CuPy 13 to 15: "calling cuBLAS
API during stream capture is currently unsupported"), and a product recorded into a CUDA graph is
what nets/capture.py needs. cuBLAS itself records sgemm into a graph; its workspace is a buffer of
ours (set after each cublasSetStream, which resets it), so a graph holds no allocation of
cuBLAS's own (memory nodes, which cuBLAS's notes on graphs advise against). Where that library
cannot be told apart (two mapped), CuPy's wrappers are used and a capture falls back to eager
calls with their message.
"""
from __future__ import annotations

import ctypes
import functools
import re

import numpy as np

from .. import backend

_ONE, _ZERO = np.ones(1, np.float32), np.zeros(1, np.float32)  # host scalars for alpha and beta
_ONE_ADDRESS, _ZERO_ADDRESS = _ONE.ctypes.data, _ZERO.ctypes.data  # (.ctypes costs us per access)
_OP_N, _OP_T, _POINTER_MODE_HOST = 0, 1, 0  # cublasOperation_t, cublasPointerMode_t
WORKSPACE_BYTES = 32 << 20  # cuBLAS's own default on Hopper; one for the process, which runs its
# products on one device and one stream at a time (a graph replays on the stream the eager calls use)
_ones_rows: dict[tuple[int, int], object] = {}  # (length, device) -> a row of ones, kept for reuse


def cublas_path(memory_map: str) -> str | None:
    """The one libcublas file in a /proc/<pid>/maps text (cuBLASLt is another library), else None."""
    paths = set(re.findall(r"\s(/\S*/libcublas\.so[.\d]*)$", memory_map, re.MULTILINE))
    return paths.pop() if len(paths) == 1 else None


def _through_cupy(handle, stream, *arguments):
    from cupy.cuda import cublas  # noqa: PLC0415 - CuPy is imported only through nets.backend's check
    cublas.setStream(handle, stream)
    cublas.setPointerMode(handle, _POINTER_MODE_HOST)
    cublas.sgemm(handle, *arguments)


@functools.cache
def _sgemm():
    """sgemm(handle, stream, op_b, op_a, n, m, k, alpha, b, ldb, a, lda, beta, out, ldo) on CuPy's
    libcublas through ctypes, or through CuPy's wrappers where that library is not found."""
    cp = backend.cupy_module()
    cp.cuda.device.get_cublas_handle()  # creates the handle, so CuPy's libcublas is loaded
    with open("/proc/self/maps") as maps:
        path = cublas_path(maps.read())
    if path is None:
        return _through_cupy
    library = ctypes.CDLL(path)  # already loaded: the same instance, so CuPy's handle is valid here
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    functions = {"cublasSetStream_v2": [pointer, pointer],
                 "cublasSetWorkspace_v2": [pointer, pointer, ctypes.c_size_t],
                 "cublasSetPointerMode_v2": [pointer, integer],
                 "cublasSgemm_v2": [pointer, integer, integer, integer, integer, integer, pointer,
                                    pointer, integer, pointer, integer, pointer, pointer, integer]}
    try:  # the _v2 names: a name without it is the legacy API's, which takes no handle
        for name, argtypes in functions.items():
            function = getattr(library, name)
            function.argtypes, function.restype = argtypes, integer
    except AttributeError:
        return _through_cupy

    workspace = cp.cuda.memory.Memory(WORKSPACE_BYTES)  # its own cudaMalloc, outside any pool,
    # kept for the process: graphs hold its address

    def check(name, status):
        if status:
            raise RuntimeError(f"{name} failed: cuBLAS status {status}")

    def through_ctypes(handle, stream, *arguments):
        check("cublasSetStream_v2", library.cublasSetStream_v2(handle, stream))
        check("cublasSetWorkspace_v2", library.cublasSetWorkspace_v2(handle, workspace.ptr, WORKSPACE_BYTES))
        check("cublasSetPointerMode_v2", library.cublasSetPointerMode_v2(handle, _POINTER_MODE_HOST))
        check("cublasSgemm_v2", library.cublasSgemm_v2(handle, *arguments))
    return through_ctypes


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
    cp = backend.cupy_module()
    if not a.dtype == b.dtype == out.dtype == np.float32 or not a.ndim == b.ndim == out.ndim == 2:
        if add:
            out += cp.matmul(a, b)
        else:
            cp.matmul(a, b, out=out)
        return
    layout = _operand(out)
    if layout is None or layout[0]:  # cuBLAS writes a row-major output
        product = cp.empty(out.shape, np.float32)
        matmul(a, b, product)
        if add:
            out += product
        else:
            out[...] = product
        return
    a, b = (x if _operand(x) else cp.ascontiguousarray(x) for x in (a, b))
    op_b, op_a, n, m, k, ldb, lda, ldo = gemm_arguments(a, b, out)
    if not (m and n and k):
        if not add:
            out[...] = 0
        return
    _sgemm()(cp.cuda.device.get_cublas_handle(), cp.cuda.get_current_stream().ptr,
             _OP_T if op_b else _OP_N, _OP_T if op_a else _OP_N, n, m, k, _ONE_ADDRESS,
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
