"""Differentiable ops behind the layers: pooling, dropout, embedding, batch norm (convolution is
in nets/functional_conv.py).

They are re-exported from `nets.functional` (use them as `F.max_pool2d`, ...); the hot loops live
in `nets.kernels`. Image batches are (batch, channels, height, width); the pools keep the memory
layout of their input (channels-last after a conv).
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import rng as _rng
from .functional_conv import check_images, empty_images, out_size, pair
from .kernels import pool as pool_kernels
from .kernels.conv import is_channels_last
from .kernels.embedding import scatter_add
from .tensor import Function, Tensor

_xp = backend.get_array_module


# -- pooling -----------------------------------------------------------------------------------
class _Pool2D(Function):
    op = ""

    def __init__(self, kernel, stride):
        self.kernel = pair(kernel, "kernel")
        self.stride = self.kernel if stride is None else pair(stride, "stride")

    def _setup(self, x):
        check_images(x, self.op)
        n, c, h, w = x.shape
        oh = out_size(self.op, h, self.kernel[0], self.stride[0], 0, "height")
        ow = out_size(self.op, w, self.kernel[1], self.stride[1], 0, "width")
        self.in_shape, self.hwc = x.shape, is_channels_last(x)
        return _xp(x), (n, c, oh, ow)


class MaxPool2D(_Pool2D):
    """Max over each window; the gradient goes to the first maximum of the window."""

    op = "max_pool2d"

    def forward(self, x):
        xp, shape = self._setup(x)
        out = empty_images(xp, shape, x.dtype, self.hwc)
        self.argmax = empty_images(xp, shape, np.int32, self.hwc)
        pool_kernels.max_pool_forward(x, out, self.argmax, self.kernel, self.stride, self.hwc)
        return out

    def backward(self, gy):
        gx = empty_images(_xp(gy), self.in_shape, gy.dtype, self.hwc)
        pool_kernels.max_pool_backward(gy, self.argmax, gx, self.kernel, self.stride, self.hwc)
        return gx


class AvgPool2D(_Pool2D):
    op = "avg_pool2d"

    def forward(self, x):
        xp, shape = self._setup(x)
        out = empty_images(xp, shape, x.dtype, self.hwc)
        pool_kernels.avg_pool_forward(x, out, self.kernel, self.stride, self.hwc)
        return out

    def backward(self, gy):
        gx = empty_images(_xp(gy), self.in_shape, gy.dtype, self.hwc)
        pool_kernels.avg_pool_backward(gy, gx, self.kernel, self.stride, self.hwc)
        return gx


def max_pool2d(x, kernel, stride=None):
    """Max over (kernel) windows every `stride` pixels (default: the kernel, no overlap)."""
    return MaxPool2D(kernel, stride)(x)


def avg_pool2d(x, kernel, stride=None):
    """Mean over (kernel) windows every `stride` pixels (default: the kernel, no overlap)."""
    return AvgPool2D(kernel, stride)(x)


# -- dropout -----------------------------------------------------------------------------------
class Dropout(Function):
    """Inverted dropout: zero each element with probability p and scale the rest by 1 / (1 - p)."""

    def __init__(self, p: float):
        self.p = p

    def forward(self, x):
        keep = _rng.generator().random(x.shape, dtype=np.float32) >= self.p
        self.mask = backend.to_device(keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.p)),
                                      backend.device_of(x))
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


def dropout(x, p: float = 0.5, training: bool = True):
    """Dropout with masks from `nets.rng`; the identity when not training or when p is 0."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0:
        return x if isinstance(x, Tensor) else Tensor(x)
    return Dropout(p)(x)


# -- embedding ---------------------------------------------------------------------------------
class Embedding(Function):
    """weight[indices]: one row of the table per index; the gradient scatter-adds into those rows."""

    def __init__(self, indices):
        self.indices = indices

    def forward(self, weight):
        self.weight_shape = weight.shape
        return weight[self.indices]

    def backward(self, gy):
        gw = _xp(gy).zeros(self.weight_shape, dtype=gy.dtype)
        scatter_add(gw, self.indices.reshape(-1), gy.reshape(-1, self.weight_shape[1]))
        return gw


def embedding(indices, weight):
    """Rows of `weight` (num, dim) picked by integer `indices` of any shape: (*indices.shape, dim)."""
    indices = indices.data if isinstance(indices, Tensor) else indices
    table = weight.data if isinstance(weight, Tensor) else weight
    xp = _xp(table)
    indices = xp.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"embedding indices must be integers, got {indices.dtype}")
    if indices.size and (int(indices.min()) < 0 or int(indices.max()) >= table.shape[0]):
        raise IndexError(f"embedding indices must lie in [0, {table.shape[0]}), got values from "
                         f"{int(indices.min())} to {int(indices.max())}")
    return Embedding(indices)(weight)


# -- batch normalisation -----------------------------------------------------------------------
class BatchNorm(Function):
    """(x - mean) / sqrt(var + eps) * gamma + beta over every axis but axis 1 (the features).

    In training the batch's statistics are used and the running ones (updated in place) follow
    them with `momentum`; in evaluation the running statistics are used.
    """

    def __init__(self, running_mean, running_var, training: bool, momentum: float, eps: float):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, gamma, beta):
        xp = _xp(x)
        if x.ndim < 2 or x.shape[1] != gamma.shape[0]:
            raise ValueError(f"batch norm over {gamma.shape[0]} features expects (batch, "
                             f"{gamma.shape[0]}, ...) input, got shape {x.shape}")
        self.axes = (0,) + tuple(range(2, x.ndim))
        self.shape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
        if self.training:
            count = x.size // x.shape[1]
            if count < 2:
                raise ValueError(f"batch norm in training needs more than one value per feature, "
                                 f"got input {x.shape}; use eval() for single samples")
            mean, var = x.mean(axis=self.axes), x.var(axis=self.axes)
            m = self.momentum
            self.running_mean *= 1 - m
            self.running_mean += m * mean
            self.running_var *= 1 - m
            self.running_var += (m * count / (count - 1)) * var  # unbiased, as the running estimate
        else:
            mean, var = self.running_mean, self.running_var
        self.inv_std = (1 / xp.sqrt(var + self.eps)).astype(x.dtype).reshape(self.shape)
        self.xhat = (x - mean.astype(x.dtype).reshape(self.shape)) * self.inv_std
        self.gamma = gamma.reshape(self.shape)
        return self.xhat * self.gamma + beta.reshape(self.shape)

    def backward(self, gy):
        ggamma = (gy * self.xhat).sum(axis=self.axes)
        gbeta = gy.sum(axis=self.axes)
        gxhat = gy * self.gamma
        if self.training:  # the batch statistics depend on x too
            gx = self.inv_std * (gxhat - gxhat.mean(axis=self.axes, keepdims=True)
                                 - self.xhat * (gxhat * self.xhat).mean(axis=self.axes, keepdims=True))
        else:
            gx = gxhat * self.inv_std
        return gx, ggamma, gbeta


def batch_norm(x, gamma, beta, running_mean, running_var, training: bool = True,
               momentum: float = 0.1, eps: float = 1e-5):
    """Batch normalisation over axis 1 of (batch, features) or (batch, channels, height, width)."""
    return BatchNorm(running_mean, running_var, training, momentum, eps)(x, gamma, beta)
