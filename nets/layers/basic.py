from __future__ import annotations

from .. import functional as F
from ..module import Module


class Flatten(Module):
    """(batch, ...) -> (batch, features): everything after the batch axis in one row."""

    def forward(self, x):
        return F.flatten(x)


class Dropout(Module):
    """Inverted dropout with probability `p` while training (see Module.train / eval)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
