"""Pooling kernels: max and average over (kh, kw) windows with a stride, no padding.

Contract, the same on every device:
- forward reads `x` (batch, channels, height, width) with any strides and writes every element of
  `out` (batch, channels, oh, ow); max pooling also writes `argmax`, the flat index iy * width + ix
  of the winning pixel (the first one on ties), for the backward pass.
- backward writes every element of `dx` (shaped like x): each pixel gathers the gradients of the
  windows that cover it, so overlapping windows (stride < kernel) need no atomic adds and the work
  splits by input line across threads.
Loops run channels-innermost when `hwc` is set (channels-last memory, as Conv2D returns) and
width-innermost otherwise. Like the conv kernels, these are single-threaded and index with unsigned
integers (see nets/kernels/conv.py for why).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u

from .. import backend
from .conv import _tap_range


# -- max pooling -------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _max_line(x, out, argmax, n, oy, kh, kw, sy, sx, hwc):
    channels, width = x.shape[1], x.shape[3]
    ow = out.shape[3]
    if hwc:
        for ox in range(ow):
            for c in range(channels):
                out[u(n), u(c), u(oy), u(ox)] = x[u(n), u(c), u(oy * sy), u(ox * sx)]
                argmax[u(n), u(c), u(oy), u(ox)] = oy * sy * width + ox * sx
            for ky in range(kh):
                iy = oy * sy + ky
                for kx in range(kw):
                    ix = ox * sx + kx
                    for c in range(channels):
                        v = x[u(n), u(c), u(iy), u(ix)]
                        if v > out[u(n), u(c), u(oy), u(ox)]:
                            out[u(n), u(c), u(oy), u(ox)] = v
                            argmax[u(n), u(c), u(oy), u(ox)] = iy * width + ix
    else:
        for c in range(channels):
            for ox in range(ow):
                best = x[u(n), u(c), u(oy * sy), u(ox * sx)]
                where = oy * sy * width + ox * sx
                for ky in range(kh):
                    iy = oy * sy + ky
                    for kx in range(kw):
                        ix = ox * sx + kx
                        v = x[u(n), u(c), u(iy), u(ix)]
                        if v > best:
                            best = v
                            where = iy * width + ix
                out[u(n), u(c), u(oy), u(ox)] = best
                argmax[u(n), u(c), u(oy), u(ox)] = where


@njit(cache=True)
def _max_forward(x, out, argmax, kh, kw, sy, sx, hwc):
    oh = out.shape[2]
    for line in range(out.shape[0] * oh):
        _max_line(x, out, argmax, line // oh, line % oh, kh, kw, sy, sx, hwc)


@njit(cache=True, inline="always")
def _max_backward_line(gy, argmax, dx, n, iy, kh, kw, sy, sx):
    channels, width = dx.shape[1], dx.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
    for c in range(channels):
        for ix in range(width):
            ox_lo, ox_hi = _tap_range(ix, kw, sx, 0, ow)
            total = gy.dtype.type(0)
            here = iy * width + ix
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    if argmax[u(n), u(c), u(oy), u(ox)] == here:
                        total += gy[u(n), u(c), u(oy), u(ox)]
            dx[u(n), u(c), u(iy), u(ix)] = total


@njit(cache=True)
def _max_backward(gy, argmax, dx, kh, kw, sy, sx):
    height = dx.shape[2]
    for line in range(dx.shape[0] * height):
        _max_backward_line(gy, argmax, dx, line // height, line % height, kh, kw, sy, sx)


# -- average pooling ---------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _avg_line(x, out, n, oy, kh, kw, sy, sx, hwc):
    channels = x.shape[1]
    ow = out.shape[3]
    scale = 1.0 / (kh * kw)
    if hwc:
        for ox in range(ow):
            for c in range(channels):
                out[u(n), u(c), u(oy), u(ox)] = 0
            for ky in range(kh):
                for kx in range(kw):
                    for c in range(channels):
                        out[u(n), u(c), u(oy), u(ox)] += x[u(n), u(c), u(oy * sy + ky), u(ox * sx + kx)]
            for c in range(channels):
                out[u(n), u(c), u(oy), u(ox)] *= scale
    else:
        for c in range(channels):
            for ox in range(ow):
                total = x.dtype.type(0)
                for ky in range(kh):
                    for kx in range(kw):
                        total += x[u(n), u(c), u(oy * sy + ky), u(ox * sx + kx)]
                out[u(n), u(c), u(oy), u(ox)] = total * scale


@njit(cache=True)
def _avg_forward(x, out, kh, kw, sy, sx, hwc):
    oh = out.shape[2]
    for line in range(out.shape[0] * oh):
        _avg_line(x, out, line // oh, line % oh, kh, kw, sy, sx, hwc)


@njit(cache=True, inline="always")
def _avg_backward_line(gy, dx, n, iy, kh, kw, sy, sx):
    channels, width = dx.shape[1], dx.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    scale = 1.0 / (kh * kw)
    oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
    for c in range(channels):
        for ix in range(width):
            ox_lo, ox_hi = _tap_range(ix, kw, sx, 0, ow)
            total = gy.dtype.type(0)
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    total += gy[u(n), u(c), u(oy), u(ox)]
            dx[u(n), u(c), u(iy), u(ix)] = total * scale


@njit(cache=True)
def _avg_backward(gy, dx, kh, kw, sy, sx):
    height = dx.shape[2]
    for line in range(dx.shape[0] * height):
        _avg_backward_line(gy, dx, line // height, line % height, kh, kw, sy, sx)


# -- dispatch ----------------------------------------------------------------------------------
def _gpu():
    from . import pool_gpu
    return pool_gpu


def max_pool_forward(x, out, argmax, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(x) is not np:
        return _gpu().max_pool_forward(x, out, argmax, kernel, stride)
    _max_forward(x, out, argmax, kernel[0], kernel[1], stride[0], stride[1], hwc)


def max_pool_backward(gy, argmax, dx, kernel, stride) -> None:
    if backend.get_array_module(gy) is not np:
        return _gpu().max_pool_backward(gy, argmax, dx, kernel, stride)
    _max_backward(gy, argmax, dx, kernel[0], kernel[1], stride[0], stride[1])


def avg_pool_forward(x, out, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(x) is not np:
        return _gpu().avg_pool_forward(x, out, kernel, stride)
    _avg_forward(x, out, kernel[0], kernel[1], stride[0], stride[1], hwc)


def avg_pool_backward(gy, dx, kernel, stride) -> None:
    if backend.get_array_module(gy) is not np:
        return _gpu().avg_pool_backward(gy, dx, kernel, stride)
    _avg_backward(gy, dx, kernel[0], kernel[1], stride[0], stride[1])
