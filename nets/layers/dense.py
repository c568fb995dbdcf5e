from __future__ import annotations

from .. import functional as F
from .. import init
from ..module import Module, Parameter


class Linear(Module):
    """y = x W + b. W is (in, out) so the forward is one matmul with no transpose."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 initializer=init.glorot_uniform):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(initializer((in_features, out_features)))
        self.bias = Parameter(init.zeros(out_features)) if bias else None

    def forward(self, x):
        if self.bias is None:
            return F.linear(x, self.weight)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
