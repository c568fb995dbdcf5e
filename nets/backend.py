"""The one place that decides the array module: NumPy on the CPU, CuPy on an NVIDIA GPU.

Code elsewhere writes `xp = backend.get_array_module(x)` (Chainer's idiom) and runs unchanged
on either device. Nothing outside this module imports cupy.
"""
from __future__ import annotations

import numpy as np

float32 = np.float32
DEVICES = ("cpu", "gpu")

try:  # CuPy is an optional extra; a missing or broken install means "no GPU".
    import cupy as _cupy
except Exception:  # noqa: BLE001 - any import failure means the GPU path is unavailable
    _cupy = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one CUDA device."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - driver errors mean no usable device
        return False


def cupy_module():
    """The cupy module itself, for kernels that need RawKernel/ElementwiseKernel."""
    if not gpu_available():
        raise RuntimeError("device 'gpu' needs CuPy and an NVIDIA GPU: install with "
                           "`pip install -e \".[gpu]\"` (CUDA 13; see the README for CUDA 12)")
    return _cupy


def check_device(device: str) -> None:
    """A one-line ValueError for a device name this machine cannot compute on."""
    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, not {device!r}")
    if device == "gpu" and not gpu_available():
        raise ValueError("device gpu needs CuPy and an NVIDIA GPU, and none was found here (run "
                         "`workbench doctor`); install the gpu extra (pip install -e \".[gpu]\") "
                         "on a machine with one, or use --device cpu")


def xp_for(device: str):
    """The array module for a device name ('cpu' or 'gpu')."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; expected one of {DEVICES}")
    return np if device == "cpu" else cupy_module()


def get_array_module(x):
    """numpy or cupy, whichever owns array `x` (numpy for anything that is not a cupy array)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def device_of(x) -> str:
    return "cpu" if get_array_module(x) is np else "gpu"


def to_device(x, device: str):
    """Copy an array to `device`; returns `x` itself when it is already there."""
    if device_of(x) == device:
        return x
    if device == "cpu":
        return _cupy.asnumpy(x)
    return cupy_module().asarray(x)


def to_host(x):
    """A NumPy array (checkpoints, logging and shared memory always hold host arrays)."""
    return to_device(x, "cpu")


def copy_to_host(out: np.ndarray, x) -> None:
    """Copy `x` into the host array `out` (e.g. a shared-memory segment): for a GPU array, one
    device-to-host transfer straight into it."""
    if isinstance(x, np.ndarray):
        np.copyto(out, x)
    else:
        x.get(out=out)


def copy_from_host(out, x: np.ndarray) -> None:
    """Copy the host array `x` into `out` (e.g. a gradient from shared memory into a GPU
    network's gradient vector): for a GPU array, one host-to-device transfer."""
    if isinstance(out, np.ndarray):
        np.copyto(out, x)
    else:
        out.set(x)


def same_device(arrays: list) -> list:
    """`arrays` with the host arrays among them moved to the GPU when any of them is there (a GPU
    network fed NumPy observations, labels or returns); unchanged otherwise."""
    if _cupy is None or not any(isinstance(a, _cupy.ndarray) for a in arrays):
        return arrays
    return [_cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in arrays]
