from __future__ import annotations

from .. import functional as F
from .. import init
from ..module import Module, Parameter


class BatchNorm(Module):
    """Batch normalisation over axis 1: the features of (batch, features) input or the channels of
    (batch, channels, height, width) input. Batch statistics in training, running ones in eval.

    running = (1 - momentum) * running + momentum * batch statistic (the variance unbiased).
    """

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.num_features, self.momentum, self.eps = num_features, momentum, eps
        self.gamma = Parameter(init.ones(num_features))
        self.beta = Parameter(init.zeros(num_features))
        self.register_buffer("running_mean", init.zeros(num_features))
        self.register_buffer("running_var", init.ones(num_features))

    def forward(self, x):
        return F.batch_norm(x, self.gamma, self.beta, self.running_mean, self.running_var,
                            self.training, self.momentum, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}, eps={self.eps}"
