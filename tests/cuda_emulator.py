"""CuPy's ElementwiseKernel and ReductionKernel emulated on the CPU: a kernel's CUDA C body is
compiled by the C++ compiler into a loop over i and run on NumPy arrays, so that what a GPU kernel
computes is checked on a machine without a GPU (tests/test_gpu_emulated.py).

`EmulatedCuPy()` stands in for the cupy module (`backend.cupy_module`): its kernels are emulated
and any other attribute is NumPy's (`cp.empty`, `cp.empty_like`). A call follows CuPy's
conventions: inputs, then outputs (a missing non-raw output is allocated); a non-raw argument is
an array bound element by element over the broadcast shape of the non-raw arrays, or a scalar
passed by value; a `raw` array is indexed by its logical C-order position (passed here as a
C-contiguous copy, written back for outputs); `size=` sets the loop's length. One-letter types
are bound from the arrays' dtypes. A body runs sequentially, one i after another, where a GPU runs
them at once: a kernel whose threads race is not caught here.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

C_TYPES = {"float32": "float", "float64": "double", "int64": "long long", "int32": "int",
           "uint8": "unsigned char", "bool": "bool"}
CTYPES = {"float": ctypes.c_float, "double": ctypes.c_double, "long long": ctypes.c_longlong,
          "int": ctypes.c_int, "unsigned char": ctypes.c_ubyte, "bool": ctypes.c_bool}
_HEADER = """#include <cmath>
#include <cstddef>
using namespace std;
template <typename A> A atomicAdd(A* address, A value) { A old = *address; *address += value; return old; }
"""
_BUILD = Path(tempfile.mkdtemp(prefix="cuda-emulator-"))  # the compiled kernels, gone at exit
atexit.register(shutil.rmtree, _BUILD, ignore_errors=True)


def parameters(text: str):
    """(raw, type name, name) per parameter: a NumPy dtype name or a one-letter placeholder."""
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        yield words[0] == "raw", words[-2], words[-1]


def _dtype(kind: str, bound: dict) -> np.dtype:
    return np.dtype(kind if kind in C_TYPES else bound[kind])


def _c_type(kind: str, bound: dict) -> str:
    return C_TYPES[_dtype(kind, bound).name]


def _prologue(bound: dict, device: bool) -> str:
    """The placeholders' typedefs, after the host's headers (NVRTC brings its own math)."""
    types = "".join(f"typedef {C_TYPES[dtype]} {kind};\n" for kind, dtype in bound.items())
    return types if device else _HEADER + types


def elementwise_source(inputs, outputs, body: str, name: str, preamble: str, bound: dict,
                       by_value=frozenset(), device: bool = False) -> str:
    """An elementwise kernel's C++: `inputs` and `outputs` are (raw, type, name) lists, `bound`
    the placeholders' dtypes, `by_value` the scalars passed by value. A raw array is a pointer, a
    non-raw one is bound to its element i; the loop runs over i on the host, or, with `device`, as
    a CUDA kernel's grid-stride loop (for NVRTC: tests/test_gpu_sources.py)."""
    arguments, bindings = [], []
    for output, params in ((False, inputs), (True, outputs)):
        for raw, kind, param in params:
            c_type = _c_type(kind, bound)
            if param in by_value:
                arguments.append(f"const {c_type} {param}")
            elif raw:
                arguments.append(f"{c_type}* {param}")
            else:
                arguments.append(f"{c_type}* _p_{param}")
                bindings.append(f"{c_type} &{param} = _p_{param}[i];" if output
                                else f"const {c_type} {param} = _p_{param}[i];")
    signature = f'extern "C" {"__global__ " if device else ""}void {name}({", ".join([*arguments, "long long _size"])}) {{'
    loop = ("  for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < _size;"
            " i += (ptrdiff_t)blockDim.x * gridDim.x) {" if device else "  for (ptrdiff_t i = 0; i < _size; ++i) {")
    return "\n".join([_prologue(bound, device) + preamble, signature, loop, *bindings, body, "  }", "}"])


def reduction_source(x, out, map_expr: str, reduce_expr: str, post_map: str, identity: str, name: str,
                     bound: dict, device: bool = False) -> str:
    """A reduction's C++ as one thread runs it: map each element of input `x`, fold with
    reduce_expr over a and b, then post_map into `out` (each (raw, type, name); the fold's type is
    the output's, as CuPy's default)."""
    (_, in_kind, x_name), (_, out_kind, out_name) = x, out
    in_type, out_type = _c_type(in_kind, bound), _c_type(out_kind, bound)
    return "\n".join([
        _prologue(bound, device),
        f'extern "C" {"__global__ " if device else ""}void {name}(const {in_type}* _p_{x_name}, '
        f'{out_type}* _p_{out_name}, long long _size) {{',
        f"  typedef {out_type} type_reduce;", f"  type_reduce a = ({identity});",
        "  for (ptrdiff_t i = 0; i < _size; ++i) {",
        f"    const {in_type} {x_name} = _p_{x_name}[i];", f"    type_reduce b = ({map_expr});",
        f"    a = ({reduce_expr});", "  }",
        f"  {out_type} &{out_name} = _p_{out_name}[0];", f"  {post_map};", "}"])


def _compile(source: str, symbol: str):
    """The C function `symbol` of `source`, compiled once per distinct source."""
    digest = hashlib.sha1(source.encode()).hexdigest()[:16]
    library = _BUILD / f"{symbol}-{digest}.so"
    if not library.exists():
        path = _BUILD / f"{symbol}-{digest}.cpp"
        path.write_text(source)
        done = subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(library), str(path)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{symbol} does not compile as C++:\n{done.stderr}\n{source}")
    return getattr(ctypes.CDLL(str(library)), symbol)


class _Elementwise:
    def __init__(self, inputs, outputs, body, name, preamble=""):
        self.inputs, self.outputs = list(parameters(inputs)), list(parameters(outputs))
        self.body, self.name, self.preamble = body, name, preamble

    def __call__(self, *args, size=None):
        params = [(raw, kind, name, False) for raw, kind, name in self.inputs] + \
                 [(raw, kind, name, True) for raw, kind, name in self.outputs]
        args = list(args) + [None] * (len(params) - len(args))
        bound = {}
        for (raw, kind, _, _), value in zip(params, args):
            if len(kind) == 1 and isinstance(value, np.ndarray):
                bound.setdefault(kind, value.dtype.name)
        arrays = [v for (raw, _, _, _), v in zip(params, args) if not raw and isinstance(v, np.ndarray)]
        shape = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else (size,)
        loop = int(np.prod(shape)) if size is None else size
        for i, ((raw, kind, name, output), value) in enumerate(zip(params, args)):
            if output and value is None:  # CuPy allocates a missing output in the loop's shape
                args[i] = np.empty(shape, _dtype(kind, bound))
        scalar = [not raw and not isinstance(v, np.ndarray) for (raw, _, _, _), v in zip(params, args)]
        by_value = {name for (_, _, name, _), is_scalar in zip(params, scalar) if is_scalar}
        source = elementwise_source(self.inputs, self.outputs, self.body, self.name, self.preamble, bound, by_value)
        function = _compile(source, self.name)
        call, kept, write_back = [], [], []
        for (raw, kind, _, output), value, by_value in zip(params, args, scalar):
            if by_value:
                call.append(CTYPES[_c_type(kind, bound)](value))
                continue
            array = value if raw else np.broadcast_to(value, shape)
            contiguous = np.ascontiguousarray(array, dtype=_dtype(kind, bound))
            if output and not np.shares_memory(contiguous, value):
                write_back.append((value, contiguous))
            kept.append(contiguous)  # alive through the call
            call.append(contiguous.ctypes.data_as(ctypes.c_void_p))
        function(*call, ctypes.c_longlong(loop))
        for value, contiguous in write_back:
            value[...] = contiguous.reshape(value.shape)
        outputs = [v for (_, _, _, output), v in zip(params, args) if output]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

class _Reduction:
    def __init__(self, inputs, outputs, map_expr, reduce_expr, post_map, identity, name):
        (_, self.in_kind, self.x), = parameters(inputs)
        (_, self.out_kind, self.out), = parameters(outputs)
        self.map_expr, self.reduce_expr, self.post_map, self.identity = map_expr, reduce_expr, post_map, identity
        self.name = name

    def __call__(self, x):
        x = np.ascontiguousarray(x)
        bound = {self.in_kind: x.dtype.name} if len(self.in_kind) == 1 else {}
        source = reduction_source((False, self.in_kind, self.x), (False, self.out_kind, self.out), self.map_expr,
                                  self.reduce_expr, self.post_map, self.identity, self.name, bound)
        out = np.empty((), _dtype(self.out_kind, bound))
        _compile(source, self.name)(x.ctypes.data_as(ctypes.c_void_p), out.ctypes.data_as(ctypes.c_void_p),
                                    ctypes.c_longlong(x.size))
        return out


class EmulatedCuPy:
    """The cupy module as the GPU kernel modules use it, on NumPy arrays."""

    def ElementwiseKernel(self, inputs, outputs, body, name, preamble="", **_):  # noqa: N802 - CuPy's name
        return _Elementwise(inputs, outputs, body, name, preamble)

    def ReductionKernel(self, inputs, outputs, map_expr, reduce_expr, post_map, identity, name, **_):  # noqa: N802
        return _Reduction(inputs, outputs, map_expr, reduce_expr, post_map, identity, name)

    def __getattr__(self, name):
        return getattr(np, name)
