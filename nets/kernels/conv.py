"""Convolution kernels: im2col (image batch -> matrix of patches) and col2im (its adjoint).

Contract, the same on every device:
- `x` is (batch, channels, height, width) with any strides; channels-last memory (NHWC under an
  NCHW shape, which is what Conv2D returns) is read along its contiguous channel axis.
- `cols` has one row per output position, in (sample, oy, ox) order, and one column per kernel tap,
  in (c, ky, kx) order ("chw", matching weight.reshape(out, -1)) or in (ky, kx, c) order ("hwc",
  chosen for channels-last input so that the innermost copy is contiguous). Padding reads as zero.
- `col2im` writes every element of its output: the sum over all patches of each pixel's entries.

col2im is written as a gather (each pixel sums the patch entries that cover it), so it needs no
zeroed output. Channels-last arrays are indexed through their contiguous (n, h, w, c) view, so the
innermost channel loops vectorise.

Each call is single-threaded and releases the GIL (`nogil`): the convolutions run their chunks of
samples on the engine's own threads, kernels and products alike (nets/kernels/parallel.py). A
second thread pool (Numba's) spinning beside BLAS's had made whole steps several times slower.
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u

from .. import backend


def out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def is_channels_last(x) -> bool:
    """True when the channel axis of a (batch, channels, height, width) array is the contiguous one."""
    return x.shape[1] == 1 or x.strides[1] == x.itemsize


# Indices are cast to unsigned before use: Numba then skips its negative-index wraparound
# check, which otherwise blocks vectorisation and makes these copies 3-4x slower.


# -- im2col ------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _im2col_chw(x, cols, n0, n1, oh, ow, kh, kw, sy, sx, py, px):
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    for n in range(n0, n1):
        for oy in range(oh):
            for ox in range(ow):
                row = u(((n - n0) * oh + oy) * ow + ox)
                ix0 = ox * sx - px
                inside = ix0 >= 0 and ix0 + kw <= width
                k = 0
                for c in range(channels):
                    for ky in range(kh):
                        iy = oy * sy + ky - py
                        if iy < 0 or iy >= height:
                            for kx in range(kw):
                                cols[row, u(k + kx)] = 0
                        elif inside:
                            for kx in range(kw):
                                cols[row, u(k + kx)] = x[u(n), u(c), u(iy), u(ix0 + kx)]
                        else:
                            for kx in range(kw):
                                ix = ix0 + kx
                                inside_x = 0 <= ix < width
                                cols[row, u(k + kx)] = x[u(n), u(c), u(iy), u(ix)] if inside_x else 0
                        k += kw


@njit(cache=True, nogil=True)
def _im2col_hwc(x_nhwc, cols, n0, n1, oh, ow, kh, kw, sy, sx, py, px):
    height, width, channels = x_nhwc.shape[1], x_nhwc.shape[2], x_nhwc.shape[3]
    for n in range(n0, n1):
        for oy in range(oh):
            for ox in range(ow):
                row = u(((n - n0) * oh + oy) * ow + ox)
                k = 0
                for ky in range(kh):
                    iy = oy * sy + ky - py
                    for kx in range(kw):
                        ix = ox * sx + kx - px
                        if iy < 0 or iy >= height or ix < 0 or ix >= width:
                            for c in range(channels):
                                cols[row, u(k + c)] = 0
                        else:
                            for c in range(channels):
                                cols[row, u(k + c)] = x_nhwc[u(n), u(iy), u(ix), u(c)]
                        k += channels


def im2col(x, cols, n0: int, n1: int, kernel, stride, padding, channels_last: bool) -> None:
    """Fill `cols` ((n1 - n0) * oh * ow, c * kh * kw) with the patches of samples n0..n1-1 of `x`."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    oh, ow = out_size(x.shape[2], kh, sy, py), out_size(x.shape[3], kw, sx, px)
    if backend.get_array_module(x) is not np:
        from . import conv_gpu
        conv_gpu.im2col(x, cols, n0, n1, kernel, stride, padding, channels_last)
        return
    if channels_last:  # index the contiguous (n, h, w, c) view: the channel loop vectorises
        _im2col_hwc(x.transpose(0, 2, 3, 1), cols, n0, n1, oh, ow, kh, kw, sy, sx, py, px)
    else:
        _im2col_chw(x, cols, n0, n1, oh, ow, kh, kw, sy, sx, py, px)


# -- col2im ------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _tap_range(i, kernel, stride, pad, out_len):
    """First and last output position o whose window covers input position i."""
    lo = (i + pad - kernel) // stride + 1
    hi = (i + pad) // stride
    return max(lo, 0), min(hi, out_len - 1)


@njit(cache=True, nogil=True)
def _col2im_hwc(cols, dx_nhwc, oh, ow, kh, kw, sy, sx, py, px):
    height, width, channels = dx_nhwc.shape[1], dx_nhwc.shape[2], dx_nhwc.shape[3]
    for n in range(dx_nhwc.shape[0]):
        for iy in range(height):
            oy_lo, oy_hi = _tap_range(iy, kh, sy, py, oh)
            for ix in range(width):
                ox_lo, ox_hi = _tap_range(ix, kw, sx, px, ow)
                for c in range(channels):
                    dx_nhwc[u(n), u(iy), u(ix), u(c)] = 0
                for oy in range(oy_lo, oy_hi + 1):
                    for ox in range(ox_lo, ox_hi + 1):
                        row = u((n * oh + oy) * ow + ox)
                        k = ((iy + py - oy * sy) * kw + ix + px - ox * sx) * channels
                        for c in range(channels):
                            dx_nhwc[u(n), u(iy), u(ix), u(c)] += cols[row, u(k + c)]


@njit(cache=True, nogil=True)
def _col2im_chw(cols, dx, oh, ow, kh, kw, sy, sx, py, px):
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(dx.shape[0]):
        for c in range(channels):
            for iy in range(height):
                oy_lo, oy_hi = _tap_range(iy, kh, sy, py, oh)
                for ix in range(width):
                    ox_lo, ox_hi = _tap_range(ix, kw, sx, px, ow)
                    total = cols.dtype.type(0)
                    for oy in range(oy_lo, oy_hi + 1):
                        for ox in range(ox_lo, ox_hi + 1):
                            row = u((n * oh + oy) * ow + ox)
                            total += cols[row, u((c * kh + iy + py - oy * sy) * kw + ix + px - ox * sx)]
                    dx[u(n), u(c), u(iy), u(ix)] = total


def col2im(cols, dx, kernel, stride, padding, channels_last: bool) -> None:
    """Write into `dx` (n, c, h, w) the sum of `cols` (n * oh * ow, c * kh * kw) over all patches."""
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    oh, ow = out_size(dx.shape[2], kh, sy, py), out_size(dx.shape[3], kw, sx, px)
    if backend.get_array_module(dx) is not np:
        from . import conv_gpu
        conv_gpu.col2im(cols, dx, kernel, stride, padding, channels_last)
        return
    if channels_last:
        _col2im_hwc(cols, dx.transpose(0, 2, 3, 1), oh, ow, kh, kw, sy, sx, py, px)
    else:
        _col2im_chw(cols, dx, oh, ow, kh, kw, sy, sx, py, px)
