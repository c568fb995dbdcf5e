"""Every CuPy kernel's CUDA C compiles, checked without a GPU where NVRTC (CUDA's runtime compiler
library) is found: each GPU kernel module builds its kernels against a stand-in for CuPy that
records them, and each is compiled inside a loop like the one CuPy wraps an elementwise body in
(non-raw arguments bound element by element, raw ones as pointers; the source is the emulator's,
tests/cuda_emulator.py, as a CUDA kernel).

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

from cuda_emulator import elementwise_source, parameters, reduction_source
from nets import backend

MODULES = ["nets.kernels.conv_gpu", "nets.kernels.pool_gpu", "nets.kernels.recurrent_gpu",
           "nets.kernels.optim_gpu", "nets.kernels.softmax_gpu", "nets.kernels.embedding",
           "nets.kernels.dense_gpu", "agents.losses_gpu"]


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


def _placeholders(*params) -> dict:
    """A one-letter type is float32 for T and int64 for the others (labels, indices and masks
    index arrays or compare)."""
    return {kind: "float32" if kind == "T" else "int64" for _, kind, _ in params if len(kind) == 1}


class _RecordingCuPy:
    """Stands in for the cupy module while a kernel module builds its kernels: records each."""

    def __init__(self):
        self.kernels: list[tuple[str, str]] = []  # (name, CUDA C source)

    def ElementwiseKernel(self, inputs, outputs, body, name, preamble="", **_):  # noqa: N802 - CuPy's name
        inputs, outputs = list(parameters(inputs)), list(parameters(outputs))
        bound = _placeholders(*inputs, *outputs)
        self.kernels.append((name, elementwise_source(inputs, outputs, body, name, preamble, bound, device=True)))
        return name

    def ReductionKernel(self, inputs, outputs, map_expr, reduce_expr, post_map, identity, name, **_):  # noqa: N802
        (x,), (out,) = parameters(inputs), parameters(outputs)
        self.kernels.append((name, reduction_source(x, out, map_expr, reduce_expr, post_map, identity, name,
                                                    _placeholders(x, out), device=True)))
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
    inputs, outputs = list(parameters("T x, raw T b, int64 n")), list(parameters("T y"))
    good, bad = (elementwise_source(inputs, outputs, body, name, "", {"T": "float32"}, device=True)
                 for body, name in (("y = x + b[i % n];", "good"), ("y = x + c[i % n];", "bad")))
    assert _compile(nvrtc, good, "good") == ""
    assert "identifier \"c\" is undefined" in _compile(nvrtc, bad, "bad")
