"""Differentiable ops behind the layers: convolution, pooling, dropout, embedding, batch norm.

They are re-exported from `nets.functional` (use them as `F.conv2d`, `F.max_pool2d`, ...); the hot
loops live in `nets.kernels`. Image batches are (batch, channels, height, width). Conv2D and the
pools return that shape in channels-last memory (a transposed view), which is what one patch-matrix
product writes without a copy and what the next conv or pool reads fastest.
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import rng as _rng
from .kernels import conv as conv_kernels
from .kernels import pool as pool_kernels
from .kernels import workspace
from .kernels.embedding import scatter_add
from .tensor import Function, Tensor, is_grad_enabled

_xp = backend.get_array_module

CHUNK_BYTES = 1 << 20  # patch matrix per chunk of samples: small enough to stay in L2 cache
KEEP_PATCHES_BYTES = 1 << 22  # patch matrices up to this size are kept for the weight gradient


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, (int, np.integer)) for v in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    return int(pair[0]), int(pair[1])


def _empty_images(xp, shape, dtype, channels_last: bool):
    """An uninitialised (n, c, h, w) array, in channels-last memory when asked."""
    if not channels_last:
        return xp.empty(shape, dtype=dtype)
    n, c, h, w = shape
    return xp.empty((n, h, w, c), dtype=dtype).transpose(0, 3, 1, 2)


def _check_images(x, op: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{op} expects (batch, channels, height, width) input, got shape {x.shape}")


def _out_size(op, size, kernel, stride, padding, axis) -> int:
    out = conv_kernels.out_size(size, kernel, stride, padding)
    if out < 1:
        raise ValueError(f"{op}: a {axis} of {size} (padding {padding}) is smaller than the "
                         f"kernel's {kernel}")
    return out


# -- convolution -------------------------------------------------------------------------------
class Conv2D(Function):
    """Cross-correlation of x (n, in, h, w) with w (out, in, kh, kw), plus b (out,).

    im2col turns each output position into a row of patch values, so the convolution is one
    matrix product (positions, taps) @ (taps, out) whose result is the output in channels-last
    memory. The products run per chunk of samples while the chunk's patches are still in cache.
    For the weight gradient the patches are kept when they are small and rebuilt chunk by chunk
    when they are not (writing a large patch matrix out to memory and reading it back costs
    more than rebuilding it from cache). Scratch buffers come from a reused workspace.
    """

    def __init__(self, stride, padding):
        self.stride, self.padding = _pair(stride, "stride"), _pair(padding, "padding")

    def __call__(self, x, w, b=None):
        # only the weight gradient reads the patches again
        self.weight_grad = is_grad_enabled() and isinstance(w, Tensor) and w.requires_grad
        return super().__call__(x, w) if b is None else super().__call__(x, w, b)

    def forward(self, x, w, b=None):
        xp = _xp(x)
        _check_images(x, "conv2d")
        if w.ndim != 4 or w.shape[1] != x.shape[1]:
            raise ValueError(f"conv2d: weight {w.shape} does not fit input {x.shape}; expected "
                             f"(out_channels, {x.shape[1]}, kernel_h, kernel_w)")
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"conv2d: bias has shape {b.shape}, expected ({w.shape[0]},)")
        n, channels, height, width = x.shape
        out_channels, _, kh, kw = w.shape
        oh = _out_size("conv2d", height, kh, self.stride[0], self.padding[0], "height")
        ow = _out_size("conv2d", width, kw, self.stride[1], self.padding[1], "width")
        self.kernel = (kh, kw)
        self.channels_last = conv_kernels.is_channels_last(x)
        dtype = np.result_type(x.dtype, w.dtype)
        self.wmat = self._weight_matrix(w)
        self.positions, taps = oh * ow, channels * kh * kw
        sample_bytes = self.positions * taps * dtype.itemsize
        self.chunk = max(1, min(n, CHUNK_BYTES // sample_bytes))
        keep = self.weight_grad and n * sample_bytes <= KEEP_PATCHES_BYTES
        out = xp.empty((n, oh, ow, out_channels), dtype=dtype)
        out_rows = out.reshape(-1, out_channels)
        cols = workspace.take(xp, ((n if keep else self.chunk) * self.positions, taps), dtype)
        for n0, n1, span in self._chunks(n):
            patches = cols[span] if keep else cols[:span.stop - span.start]
            self._patches(x, patches, n0, n1)
            xp.matmul(patches, self.wmat.T, out=out_rows[span])
        if b is not None:
            out_rows += b
        self.x, self.w_shape = x, w.shape
        self.cols = cols if keep else None
        return out.transpose(0, 3, 1, 2)

    def backward(self, gy):
        xp = _xp(gy)
        n, out_channels = self.x.shape[0], self.w_shape[0]
        gy_rows = gy.transpose(0, 2, 3, 1).reshape(-1, out_channels)  # a view for channels-last gy
        need_w, need_x = self.inputs[1].requires_grad, self.inputs[0].requires_grad
        rebuild = need_w and self.cols is None
        gw_mat = gy_rows.T @ self.cols if need_w and not rebuild else None
        gx = _empty_images(xp, self.x.shape, gy.dtype, self.channels_last) if need_x else None
        if rebuild or need_x:
            scratch = workspace.take(xp, (self.chunk * self.positions, self.wmat.shape[1]), gy.dtype)
            for n0, n1, span in self._chunks(n):
                rows = scratch[:span.stop - span.start]
                if rebuild:
                    self._patches(self.x, rows, n0, n1)
                    part = gy_rows[span].T @ rows
                    gw_mat = part if gw_mat is None else xp.add(gw_mat, part, out=gw_mat)
                if need_x:  # patch gradients, summed back onto the pixels they came from
                    xp.matmul(gy_rows[span], self.wmat, out=rows)
                    conv_kernels.col2im(rows, gx[n0:n1], self.kernel, self.stride, self.padding,
                                        self.channels_last)
        gw = self._weight_from_matrix(gw_mat) if need_w else None
        if len(self.inputs) == 3:
            gb = gy_rows.sum(axis=0) if self.inputs[2].requires_grad else None
            return gx, gw, gb
        return gx, gw

    def _chunks(self, n):
        """(first sample, end sample, slice of patch rows) per chunk."""
        for n0 in range(0, n, self.chunk):
            n1 = min(n, n0 + self.chunk)
            yield n0, n1, slice(n0 * self.positions, n1 * self.positions)

    def _patches(self, x, cols, n0, n1):
        conv_kernels.im2col(x, cols, n0, n1, self.kernel, self.stride, self.padding,
                            self.channels_last)

    def _weight_matrix(self, w):
        """(out, taps) in the column order of the patch matrix."""
        if self.channels_last:
            return w.transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        return w.reshape(w.shape[0], -1)

    def _weight_from_matrix(self, gw_mat):
        o, c, kh, kw = self.w_shape
        if self.channels_last:
            return _xp(gw_mat).ascontiguousarray(gw_mat.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
        return gw_mat.reshape(self.w_shape)


def conv2d(x, w, b=None, stride=1, padding=0):
    """2-D convolution (cross-correlation) of x (n, in, h, w) with w (out, in, kh, kw) and bias b."""
    return Conv2D(stride, padding)(x, w) if b is None else Conv2D(stride, padding)(x, w, b)


# -- pooling -----------------------------------------------------------------------------------
class _Pool2D(Function):
    op = ""

    def __init__(self, kernel, stride):
        self.kernel = _pair(kernel, "kernel")
        self.stride = self.kernel if stride is None else _pair(stride, "stride")

    def _setup(self, x):
        _check_images(x, self.op)
        n, c, h, w = x.shape
        oh = _out_size(self.op, h, self.kernel[0], self.stride[0], 0, "height")
        ow = _out_size(self.op, w, self.kernel[1], self.stride[1], 0, "width")
        self.in_shape, self.hwc = x.shape, conv_kernels.is_channels_last(x)
        return _xp(x), (n, c, oh, ow)


class MaxPool2D(_Pool2D):
    """Max over each window; the gradient goes to the first maximum of the window."""

    op = "max_pool2d"

    def forward(self, x):
        xp, shape = self._setup(x)
        out = _empty_images(xp, shape, x.dtype, self.hwc)
        self.argmax = _empty_images(xp, shape, np.int32, self.hwc)
        pool_kernels.max_pool_forward(x, out, self.argmax, self.kernel, self.stride, self.hwc)
        return out

    def backward(self, gy):
        gx = _empty_images(_xp(gy), self.in_shape, gy.dtype, self.hwc)
        pool_kernels.max_pool_backward(gy, self.argmax, gx, self.kernel, self.stride)
        return gx


class AvgPool2D(_Pool2D):
    op = "avg_pool2d"

    def forward(self, x):
        xp, shape = self._setup(x)
        out = _empty_images(xp, shape, x.dtype, self.hwc)
        pool_kernels.avg_pool_forward(x, out, self.kernel, self.stride, self.hwc)
        return out

    def backward(self, gy):
        gx = _empty_images(_xp(gy), self.in_shape, gy.dtype, self.hwc)
        pool_kernels.avg_pool_backward(gy, gx, self.kernel, self.stride)
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
