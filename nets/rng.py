"""One seeded generator for initialisers, dropout masks and sampling: `seed(n)` makes a run repeatable."""
from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def seed(value: int | None) -> None:
    """Reseed the engine's generator (initial weights, dropout masks, sampling)."""
    global _generator
    _generator = np.random.default_rng(value)


def generator() -> np.random.Generator:
    return _generator
