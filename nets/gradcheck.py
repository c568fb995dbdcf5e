"""Numerical gradient checks: backward() against central finite differences in float64."""
from __future__ import annotations

import numpy as np

from .module import Module
from .tensor import Tensor


def to_float64(module: Module) -> Module:
    """Cast a module's parameters and buffers to float64 in place (for gradient checks only)."""
    for m in module.modules():
        for p in m._parameters.values():  # contiguous: gradcheck perturbs entries through a flat view
            p.data = np.ascontiguousarray(p.data, dtype=np.float64)
            p.grad = np.zeros_like(p.data)
        for name in m._buffers:
            object.__setattr__(m, name, getattr(m, name).astype(np.float64))
        m._invalidate_flat()
    return module


def gradcheck(f, tensors: list[Tensor], eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4,
              max_elements: int = 64, seed: int = 0) -> None:
    """Assert that backward() of `f()` matches central differences for every tensor in `tensors`.

    `f` takes no arguments and returns a Tensor (it reads the tensors, e.g. a closure over a
    module and its input). The output is reduced with a fixed random projection so that every
    output element's gradient path is exercised. At most `max_elements` entries of each tensor are
    perturbed (chosen at random), which keeps checks of large layers fast.
    """
    rng = np.random.default_rng(seed)
    for t in tensors:
        if t.data.dtype != np.float64:
            raise TypeError(f"gradcheck needs float64 tensors, got {t.data.dtype} (see to_float64)")
    out = f()
    projection = rng.standard_normal(out.shape)

    def objective() -> float:
        return float((f().data * projection).sum())

    for t in tensors:
        t.grad = np.zeros_like(t.data) if t.grad is not None else None
    f().backward(projection.astype(np.float64))
    for index, t in enumerate(tensors):
        analytic = np.zeros_like(t.data) if t.grad is None else t.grad.copy()
        flat = t.data.reshape(-1)
        picks = rng.choice(flat.size, size=min(flat.size, max_elements), replace=False)
        for i in picks:
            saved = flat[i]
            flat[i] = saved + eps
            plus = objective()
            flat[i] = saved - eps
            minus = objective()
            flat[i] = saved
            numeric = (plus - minus) / (2 * eps)
            got = analytic.reshape(-1)[i]
            if not abs(got - numeric) <= atol + rtol * abs(numeric):
                name = t.name or f"tensor {index}"
                raise AssertionError(f"gradient mismatch in {name} {t.shape} at flat index {i}: "
                                     f"backward {got:.8g}, numeric {numeric:.8g}")
