"""Weight initialisers. Each returns a float32 NumPy array drawn from the engine's generator."""
from __future__ import annotations

import math

import numpy as np

from . import rng as _rng


def _fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) for dense (in, out) and conv (out, in, kh, kw) weight shapes."""
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def glorot_uniform(shape, gain: float = 1.0) -> np.ndarray:
    """Glorot & Bengio 2010: U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)).
    Use gain=4 for sigmoid layers, as in the Deep Learning Tutorials (Theano)."""
    fan_in, fan_out = _fans(shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _rng.generator().uniform(-bound, bound, size=shape).astype(np.float32)


def he_normal(shape) -> np.ndarray:
    """He et al. 2015, for ReLU layers: N(0, 2 / fan_in)."""
    fan_in, _ = _fans(shape)
    return (_rng.generator().standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)


def he_uniform(shape) -> np.ndarray:
    fan_in, _ = _fans(shape)
    bound = math.sqrt(6.0 / fan_in)
    return _rng.generator().uniform(-bound, bound, size=shape).astype(np.float32)


def orthogonal(shape, gain: float = 1.0) -> np.ndarray:
    """Saxe et al. 2014: a (semi-)orthogonal matrix over the flattened trailing dimensions."""
    rows, cols = shape[0], math.prod(shape[1:])
    a = _rng.generator().standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make the draw uniform over orthogonal matrices
    if rows < cols:
        q = q.T
    return (gain * q[:rows, :cols]).reshape(shape).astype(np.float32)


def uniform(shape, bound: float) -> np.ndarray:
    return _rng.generator().uniform(-bound, bound, size=shape).astype(np.float32)


def normal(shape, std: float) -> np.ndarray:
    return (_rng.generator().standard_normal(shape) * std).astype(np.float32)


def zeros(shape) -> np.ndarray:
    return np.zeros(shape, dtype=np.float32)


def ones(shape) -> np.ndarray:
    return np.ones(shape, dtype=np.float32)
