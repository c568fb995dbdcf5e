from __future__ import annotations

from .. import functional as F
from .. import init
from ..module import Module, Parameter


class Linear(Module):
    """y = x W + b, then `activation` (None, "relu" or "tanh", fused into the op: see F.linear).
    W is (in, out) so the forward is one matmul with no transpose."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 initializer=init.glorot_uniform, activation=None):
        super().__init__()
        if activation not in F.DENSE_ACTIVATIONS:
            raise ValueError(f"Linear activation must be one of {F.DENSE_ACTIVATIONS}, got {activation!r}")
        self.in_features, self.out_features, self.activation = in_features, out_features, activation
        self.weight = Parameter(initializer((in_features, out_features)))
        self.bias = Parameter(init.zeros(out_features)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias, self.activation)

    def extra_repr(self) -> str:
        return (f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"
                + (f", activation={self.activation!r}" if self.activation else ""))
