"""Layers that change an image's geometry: transposed convolution, upsampling, and the spatial
transformer (Jaderberg et al. 2015)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init
from ..functional_conv import pair
from ..module import Module, Parameter
from .dense import Linear

MODES = ("nearest", "bilinear")


class ConvTranspose2D(Module):
    """Transposed convolution ("deconvolution"): the gradient of a conv2d with respect to its
    input, used to upsample with learned filters (DCGAN generators, decoder halves).

    weight (in, out, kh, kw); output size (h - 1) * stride - 2 * padding + kh + output_padding,
    so a stride-2, kernel-4, padding-1 layer doubles the height and width.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, bias: bool = True, initializer=init.he_normal):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride, self.padding = pair(stride, "stride"), pair(padding, "padding")
        self.output_padding = pair(output_padding, "output_padding")
        self.weight = Parameter(initializer((in_channels, out_channels, *self.kernel_size)))
        self.bias = Parameter(init.zeros(out_channels)) if bias else None

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ConvTranspose2D expects (batch, {self.in_channels}, height, width) "
                             f"input, got shape {tuple(x.shape)}")
        return F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding,
                                  self.output_padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}")


class Upsample(Module):
    """Upsampling by an integer factor per axis: 'nearest' repeats pixels, 'bilinear'
    interpolates (pixel centres aligned, align_corners=False)."""

    def __init__(self, scale=2, mode: str = "nearest"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"Upsample mode must be one of {MODES}, got {mode!r}")
        self.scale, self.mode = pair(scale, "scale"), mode

    def forward(self, x):
        if self.mode == "nearest":
            return F.upsample_nearest(x, self.scale)
        return F.upsample_bilinear(x, self.scale)

    def extra_repr(self) -> str:
        return f"scale={self.scale}, mode={self.mode!r}"


class SpatialTransformer(Module):
    """localisation(x) -> theta (2x3 affine) -> affine grid -> bilinear sample of x.

    `localisation` maps the input batch to (batch, features); a final Linear(features, 6) turns
    that into theta. That layer starts at the identity transform (zero weights, bias
    [1, 0, 0, 0, 1, 0]), so training begins from "look at the whole image" (as in the paper).
    `output_size` (height, width) defaults to the input's. The last call's transforms are kept
    in `theta` ((batch, 2, 3) array) for display.
    """

    def __init__(self, localisation: Module, features: int, output_size=None):
        super().__init__()
        self.localisation = localisation
        self.affine = Linear(features, 6, initializer=init.zeros)
        self.affine.bias.data[:] = np.array([1, 0, 0, 0, 1, 0], dtype=np.float32)
        self.output_size = None if output_size is None else pair(output_size, "output_size")
        self.theta = None

    def forward(self, x):
        if x.ndim != 4:
            raise ValueError(f"SpatialTransformer expects (batch, channels, height, width) input, "
                             f"got shape {tuple(x.shape)}")
        features = self.localisation(x)
        if features.ndim != 2 or features.shape[1] != self.affine.in_features:
            raise ValueError(f"SpatialTransformer: localisation gave {tuple(features.shape)}, "
                             f"expected (batch, {self.affine.in_features})")
        theta = F.reshape(self.affine(features), (x.shape[0], 2, 3))
        self.theta = theta.data
        grid = F.affine_grid(theta, self.output_size or tuple(x.shape[2:]))
        return F.grid_sample(x, grid)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"
