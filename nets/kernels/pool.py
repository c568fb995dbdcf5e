"""Pooling kernels: max and average over (kh, kw) windows with a stride, no padding.

Contract, the same on every device:
- forward reads `x` (batch, channels, height, width) with any strides and writes every element of
  `out` (batch, channels, oh, ow); max pooling also writes `argmax`, the flat index iy * width + ix
  of the winning pixel (the first one on ties), for the backward pass.
- backward writes every element of `dx` (shaped like x): each pixel gathers the gradients of the
  windows that cover it, so overlapping windows (stride < kernel) need no zeroing or scatter.
With `hwc` (channels-last memory, as Conv2D returns) the CPU kernels index the contiguous
(n, h, w, c) views and loop over channels innermost. Like the conv kernels, they are
single-threaded and index with unsigned integers (see nets/kernels/conv.py for why).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u

from .. import backend
from .conv import _tap_range


def _nhwc(a):
    return a.transpose(0, 2, 3, 1)


# -- max pooling -------------------------------------------------------------------------------
@njit(cache=True)
def _max_forward_chw(x, out, argmax, kh, kw, sy, sx):
    channels, width = x.shape[1], x.shape[3]
    oh, ow = out.shape[2], out.shape[3]
    for n in range(x.shape[0]):
        for c in range(channels):
            for oy in range(oh):
                for ox in range(ow):
                    best = x[u(n), u(c), u(oy * sy), u(ox * sx)]
                    where = oy * sy * width + ox * sx
                    for ky in range(kh):
                        iy = oy * sy + ky
                        for kx in range(kw):
                            v = x[u(n), u(c), u(iy), u(ox * sx + kx)]
                            if v > best:
                                best, where = v, iy * width + ox * sx + kx
                    out[u(n), u(c), u(oy), u(ox)] = best
                    argmax[u(n), u(c), u(oy), u(ox)] = where


@njit(cache=True)
def _max_forward_hwc(x, out, argmax, kh, kw, sy, sx):
    width, channels = x.shape[2], x.shape[3]
    oh, ow = out.shape[1], out.shape[2]
    for n in range(x.shape[0]):
        for oy in range(oh):
            for ox in range(ow):
                for c in range(channels):
                    out[u(n), u(oy), u(ox), u(c)] = x[u(n), u(oy * sy), u(ox * sx), u(c)]
                    argmax[u(n), u(oy), u(ox), u(c)] = oy * sy * width + ox * sx
                for ky in range(kh):
                    iy = oy * sy + ky
                    for kx in range(kw):
                        ix = ox * sx + kx
                        for c in range(channels):
                            v = x[u(n), u(iy), u(ix), u(c)]
                            if v > out[u(n), u(oy), u(ox), u(c)]:
                                out[u(n), u(oy), u(ox), u(c)] = v
                                argmax[u(n), u(oy), u(ox), u(c)] = iy * width + ix


@njit(cache=True)
def _max_backward_chw(gy, argmax, dx, kh, kw, sy, sx):
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    oh, ow = gy.shape[2], gy.shape[3]
    for n in range(dx.shape[0]):
        for c in range(channels):
            for iy in range(height):
                oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
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
def _max_backward_hwc(gy, argmax, dx, kh, kw, sy, sx):
    height, width, channels = dx.shape[1], dx.shape[2], dx.shape[3]
    oh, ow = gy.shape[1], gy.shape[2]
    for n in range(dx.shape[0]):
        for iy in range(height):
            oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
            for ix in range(width):
                ox_lo, ox_hi = _tap_range(ix, kw, sx, 0, ow)
                here = iy * width + ix
                for c in range(channels):
                    dx[u(n), u(iy), u(ix), u(c)] = 0
                for oy in range(oy_lo, oy_hi + 1):
                    for ox in range(ox_lo, ox_hi + 1):
                        for c in range(channels):
                            if argmax[u(n), u(oy), u(ox), u(c)] == here:
                                dx[u(n), u(iy), u(ix), u(c)] += gy[u(n), u(oy), u(ox), u(c)]


# -- average pooling ---------------------------------------------------------------------------
@njit(cache=True)
def _avg_forward_chw(x, out, kh, kw, sy, sx):
    scale = 1.0 / (kh * kw)
    for n in range(x.shape[0]):
        for c in range(x.shape[1]):
            for oy in range(out.shape[2]):
                for ox in range(out.shape[3]):
                    total = x.dtype.type(0)
                    for ky in range(kh):
                        for kx in range(kw):
                            total += x[u(n), u(c), u(oy * sy + ky), u(ox * sx + kx)]
                    out[u(n), u(c), u(oy), u(ox)] = total * scale


@njit(cache=True)
def _avg_forward_hwc(x, out, kh, kw, sy, sx):
    channels = x.shape[3]
    scale = 1.0 / (kh * kw)
    for n in range(x.shape[0]):
        for oy in range(out.shape[1]):
            for ox in range(out.shape[2]):
                for c in range(channels):
                    out[u(n), u(oy), u(ox), u(c)] = 0
                for ky in range(kh):
                    for kx in range(kw):
                        iy, ix = oy * sy + ky, ox * sx + kx
                        for c in range(channels):
                            out[u(n), u(oy), u(ox), u(c)] += x[u(n), u(iy), u(ix), u(c)]
                for c in range(channels):
                    out[u(n), u(oy), u(ox), u(c)] *= scale


@njit(cache=True)
def _avg_backward_chw(gy, dx, kh, kw, sy, sx):
    scale = 1.0 / (kh * kw)
    oh, ow = gy.shape[2], gy.shape[3]
    for n in range(dx.shape[0]):
        for c in range(dx.shape[1]):
            for iy in range(dx.shape[2]):
                oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
                for ix in range(dx.shape[3]):
                    ox_lo, ox_hi = _tap_range(ix, kw, sx, 0, ow)
                    total = gy.dtype.type(0)
                    for oy in range(oy_lo, oy_hi + 1):
                        for ox in range(ox_lo, ox_hi + 1):
                            total += gy[u(n), u(c), u(oy), u(ox)]
                    dx[u(n), u(c), u(iy), u(ix)] = total * scale


@njit(cache=True)
def _avg_backward_hwc(gy, dx, kh, kw, sy, sx):
    channels = dx.shape[3]
    scale = 1.0 / (kh * kw)
    oh, ow = gy.shape[1], gy.shape[2]
    for n in range(dx.shape[0]):
        for iy in range(dx.shape[1]):
            oy_lo, oy_hi = _tap_range(iy, kh, sy, 0, oh)
            for ix in range(dx.shape[2]):
                ox_lo, ox_hi = _tap_range(ix, kw, sx, 0, ow)
                for c in range(channels):
                    dx[u(n), u(iy), u(ix), u(c)] = 0
                for oy in range(oy_lo, oy_hi + 1):
                    for ox in range(ox_lo, ox_hi + 1):
                        for c in range(channels):
                            dx[u(n), u(iy), u(ix), u(c)] += gy[u(n), u(oy), u(ox), u(c)]
                for c in range(channels):
                    dx[u(n), u(iy), u(ix), u(c)] *= scale


# -- dispatch ----------------------------------------------------------------------------------
def _gpu():
    from . import pool_gpu
    return pool_gpu


def max_pool_forward(x, out, argmax, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(x) is not np:
        return _gpu().max_pool_forward(x, out, argmax, kernel, stride)
    if hwc:
        _max_forward_hwc(_nhwc(x), _nhwc(out), _nhwc(argmax), *kernel, *stride)
    else:
        _max_forward_chw(x, out, argmax, *kernel, *stride)


def max_pool_backward(gy, argmax, dx, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(gy) is not np:
        return _gpu().max_pool_backward(gy, argmax, dx, kernel, stride)
    if hwc:
        _max_backward_hwc(_nhwc(gy), _nhwc(argmax), _nhwc(dx), *kernel, *stride)
    else:
        _max_backward_chw(gy, argmax, dx, *kernel, *stride)


def avg_pool_forward(x, out, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(x) is not np:
        return _gpu().avg_pool_forward(x, out, kernel, stride)
    if hwc:
        _avg_forward_hwc(_nhwc(x), _nhwc(out), *kernel, *stride)
    else:
        _avg_forward_chw(x, out, *kernel, *stride)


def avg_pool_backward(gy, dx, kernel, stride, hwc: bool) -> None:
    if backend.get_array_module(gy) is not np:
        return _gpu().avg_pool_backward(gy, dx, kernel, stride)
    if hwc:
        _avg_backward_hwc(_nhwc(gy), _nhwc(dx), *kernel, *stride)
    else:
        _avg_backward_chw(gy, dx, *kernel, *stride)
