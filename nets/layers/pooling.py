from __future__ import annotations

from .. import functional as F
from ..functional_conv import pair
from ..module import Module


class MaxPool2D(Module):
    """Max over kernel windows every `stride` pixels (default: the kernel, windows do not overlap)."""

    def __init__(self, kernel_size, stride=None):
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else pair(stride, "stride")

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class AvgPool2D(MaxPool2D):
    """Mean over kernel windows every `stride` pixels (default: the kernel, windows do not overlap)."""

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride)


class GlobalAvgPool(Module):
    """(batch, channels, height, width) -> (batch, channels): the mean over each channel's map."""

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"GlobalAvgPool expects (batch, channels, height, width) input, "
                             f"got shape {tuple(x.shape)}")
        return F.mean(x, axis=(2, 3))
