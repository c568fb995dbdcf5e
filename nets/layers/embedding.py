from __future__ import annotations

from .. import functional as F
from .. import init
from ..module import Module, Parameter


class Embedding(Module):
    """A table of `num` vectors of size `dim`, looked up by integer index (N(0, 1) initialised)."""

    def __init__(self, num: int, dim: int, initializer=None):
        super().__init__()
        self.num, self.dim = num, dim
        shape = (num, dim)
        self.weight = Parameter(initializer(shape) if initializer else init.normal(shape, 1.0))

    def forward(self, indices):
        return F.embedding(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num}, {self.dim}"
