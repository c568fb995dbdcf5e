from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init
from ..functional_conv import ACTIVATIONS, pair
from ..module import Module, Parameter


class Conv2D(Module):
    """2-D convolution over (batch, channels, height, width) input; weight (out, in, kh, kw).

    He-initialised by default (the layer is usually followed by a ReLU); bias starts at zero.
    `activation="relu"` fuses the ReLU into the convolution (same result as F.relu after it,
    with two fewer passes over the output). `input_scale` multiplies the input as it is read:
    it goes into the weights, conv(s x, w) = conv(x, s w), so uint8 pixels with 1/255 are read as
    they are and no scaled float copy of the batch is made.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, activation=None, initializer=init.he_normal,
                 input_scale: float = 1.0):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"Conv2D activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.activation = activation
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.weight = Parameter(initializer((out_channels, in_channels, *self.kernel_size)))
        self.bias = Parameter(init.zeros(out_channels)) if bias else None
        self.input_scale = float(input_scale)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv2D expects (batch, {self.in_channels}, height, width) input, "
                             f"got shape {tuple(x.shape)}")
        weight = self.weight if self.input_scale == 1 else self.weight * np.float32(self.input_scale)
        return F.conv2d(x, weight, self.bias, self.stride, self.padding, self.activation)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
                + (f", activation={self.activation!r}" if self.activation else "")
                + (f", input_scale={self.input_scale:g}" if self.input_scale != 1 else ""))
