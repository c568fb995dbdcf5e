"""Every CuPy kernel's CUDA C compiles, checked without a GPU where NVRTC (CUDA's runtime compiler
library) is found: each GPU kernel module builds its kernels against a stand-in for CuPy that
records them, and each is compiled inside a loop like the one CuPy wraps an elementwise body in
(non-raw arguments bound element by element, raw ones as pointers, scalars by value).

A typo, an undeclared name or a type error in a kernel otherwise shows up only on a machine with a
GPU, where device time is scarce. This checks that the code compiles, not what it computes
(tests/test_gpu.py does, on a GPU). Where no NVRTC library is found, it is skipped.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib
import site
import sys
from pathlib import Path

import pytest

from nets import backend

MODULES = ["nets.kernels.conv_gpu", "nets.kernels.pool_gpu", "nets.kernels.recurrent_gpu",
           "nets.kernels.optim_gpu", "nets.kernels.softmax_gpu", "nets.kernels.embedding",
           "nets.kernels.dense_gpu", "agents.losses_gpu"]
C_TYPES = {"float32": "float", "float64": "double", "int64": "long long", "int32": "int",
           "uint8": "unsigned char", "bool": "bool"}


def _nvrtc():
    """The NVRTC library: on the loader's path, in an nvidia-cuda-nvrtc wheel, or CUDA's own."""
    roots = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    candidates = [ctypes.util.find_library("nvrtc"),
                  *(path for root in roots for path in glob.glob(f"{root}/nvidia/cu*nvrtc*/lib/libnvrtc.so*")),
                  *glob.glob("/usr/local/cuda*/lib64/libnvrtc.so*")]
    for path in filter(None, candidates):
        if "builtins" in path or ".alt." in path:
            continue
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _compile(nvrtc, source: str, name: str) -> str:
    """NVRTC's log for `source`, or '' when it compiled."""
    program = ctypes.c_void_p()
    assert nvrtc.nvrtcCreateProgram(ctypes.byref(program), source.encode(), f"{name}.cu".encode(), 0, None, None) == 0
    options = (ctypes.c_char_p * 2)(b"--gpu-architecture=compute_90", b"--std=c++14")
    result = nvrtc.nvrtcCompileProgram(program, 2, options)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return "" if result == 0 else log.value.decode(errors="replace")


def _parameters(text: str):
    """(raw, C type, name) of a CuPy parameter list: a one-letter type placeholder is float for
    T and an integer for the others (labels, indices and masks index arrays or compare)."""
    for item in filter(None, (part.strip() for part in text.split(","))):
        words = item.split()
        raw = words[0] == "raw"
        kind, name = words[-2], words[-1]
        c_type = C_TYPES.get(kind) or ("float" if kind == "T" else "long long")
        yield raw, c_type, name


def _elementwise_source(inputs: str, outputs: str, body: str, name: str, preamble: str = "") -> str:
    """The body in a grid-stride loop over i; a non-raw argument (an array, or a scalar CuPy
    passes by value: the same to the body) is bound to its element i."""
    arguments, bindings = [], []
    for is_output, text in ((False, inputs), (True, outputs)):
        for raw, c_type, param in _parameters(text):
            if raw:
                arguments.append(f"{c_type}* {param}")
            else:
                arguments.append(f"{c_type}* _p_{param}")
                bindings.append(f"{c_type} &{param} = _p_{param}[i];" if is_output
                                else f"const {c_type} {param} = _p_{param}[i];")
    return "\n".join([
        "typedef float T;", preamble,
        f'extern "C" __global__ void {name}({", ".join([*arguments, "long long _size"])}) {{',
        "  for (ptrdiff_t i = (ptrdiff_t)blockIdx.x * blockDim.x + threadIdx.x; i < _size;"
        " i += (ptrdiff_t)blockDim.x * gridDim.x) {",
        *(f"    {b}" for b in bindings), body, "  }", "}"])


def _reduction_source(inputs: str, outputs: str, map_expr: str, reduce_expr: str, post_map: str,
                      identity: str, name: str) -> str:
    """A reduction as one thread would run it: map each element, fold with reduce_expr over
    a and b, then post_map into the output (its type is the reduction's, as CuPy's default)."""
    (_, in_type, x), = _parameters(inputs)
    (_, out_type, out), = _parameters(outputs)
    return "\n".join([
        "typedef float T;",
        f'extern "C" __global__ void {name}(const {in_type}* _p_{x}, {out_type}* _p_{out}, long long _size) {{',
        f"  typedef {out_type} type_reduce;",
        f"  type_reduce a = ({identity});",
        "  for (ptrdiff_t i = 0; i < _size; ++i) {",
        f"    const {in_type} {x} = _p_{x}[i];",
        f"    type_reduce b = ({map_expr});",
        f"    a = ({reduce_expr});",
        "  }",
        f"  {out_type} &{out} = _p_{out}[0];",
        f"  {post_map};", "}"])


class _RecordingCuPy:
    """Stands in for the cupy module while a kernel module builds its kernels: records each."""

    def __init__(self):
        self.kernels: list[tuple[str, str]] = []  # (name, CUDA C source)

    def ElementwiseKernel(self, inputs, outputs, body, name, preamble="", **_):  # noqa: N802 - CuPy's name
        self.kernels.append((name, _elementwise_source(inputs, outputs, body, name, preamble)))
        return name

    def ReductionKernel(self, inputs, outputs, map_expr, reduce_expr, post_map, identity, name, **_):  # noqa: N802
        self.kernels.append((name, _reduction_source(inputs, outputs, map_expr, reduce_expr, post_map,
                                                     identity, name)))
        return name


def _kernel_sources(module_name: str, monkeypatch) -> list[tuple[str, str]]:
    recorder = _RecordingCuPy()
    monkeypatch.setattr(backend, "cupy_module", lambda: recorder)
    module = importlib.import_module(module_name)
    for builder in vars(module).values():  # the cached functions that build a module's kernels
        if callable(builder) and hasattr(builder, "cache_clear"):
            builder.__wrapped__()  # past the cache: this process may have built them for real
    assert recorder.kernels, f"{module_name} built no kernel"
    return recorder.kernels


def test_the_check_covers_every_module_that_builds_gpu_kernels():
    root = Path(__file__).resolve().parents[1]
    sources = [p for p in [*root.glob("nets/kernels/*.py"), *root.glob("agents/*.py")]
               if "ElementwiseKernel(" in p.read_text() or "ReductionKernel(" in p.read_text()]
    names = {".".join(p.relative_to(root).with_suffix("").parts) for p in sources}
    assert names == set(MODULES)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_gpu_kernel_compiles(module_name, monkeypatch):
    nvrtc = _nvrtc()
    if nvrtc is None:
        pytest.skip("needs NVRTC, CUDA's runtime compiler library (pip install nvidia-cuda-nvrtc-cu12)")
    for name, source in _kernel_sources(module_name, monkeypatch):
        log = _compile(nvrtc, source, name)
        assert not log, f"{module_name}: {name} does not compile:\n{log}\n{source}"


def test_the_stand_in_compiler_rejects_a_kernel_with_an_error(monkeypatch):
    """The check can fail: an undeclared name in a body is a compile error."""
    nvrtc = _nvrtc()
    if nvrtc is None:
        pytest.skip("needs NVRTC, CUDA's runtime compiler library (pip install nvidia-cuda-nvrtc-cu12)")
    good = _elementwise_source("T x, raw T b, int64 n", "T y", "y = x + b[i % n];", "good")
    bad = _elementwise_source("T x, raw T b, int64 n", "T y", "y = x + c[i % n];", "bad")
    assert _compile(nvrtc, good, "good") == ""
    assert "identifier \"c\" is undefined" in _compile(nvrtc, bad, "bad")
