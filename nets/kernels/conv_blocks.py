"""Convolution by space-to-depth blocks, with no patch matrix (CPU only).

A (kh, kw) convolution with stride (sy, sx) reads the input in sy x sx blocks: space-to-depth
turns x into S, one row per block position (sample, by, bx) holding the block's C * sy * sx values.
The kernel then covers qy x qx blocks (q = ceil(k / s)), and

    Z = S @ Wb                              (rows, C*sy*sx) @ (C*sy*sx, qy*qx*out)
    out[n, oy, ox] = sum over (dy, dx) of Z[(n, oy + dy, ox + dx), (dy, dx, :)]     (shift_add)

costs one well-shaped matrix product and no expanded patch matrix (im2col writes every input value
about (k / s)^2 times). The backward pass mirrors it: `spread_rows` lays the output gradient out
like Z (dZ), then dWb = S^T @ dZ, dS = dZ @ Wb^T, and depth_to_space is a plain permutation back
to x.
The callers work a chunk of samples at a time, so that S, Z and dZ stay in cache.

Column orders of S: (c, ry, rx) for channels-first x, (ry, rx, c) for channels-last x, so the
innermost copies are contiguous. Blocks outside the padded input read as zero. Like the other CPU
kernels these are single-threaded, release the GIL and index with unsigned integers (see conv.py).
"""
from __future__ import annotations

import numpy as np
from numba import njit
from numba import uint64 as u

from .conv import _im2col_hwc


@njit(cache=True, inline="always")
def _copy_run(S, row, k, x, n, c, y, x0, length):
    """S[row, k:k+length] = x[n, c, y, x0:x0+length]; the common block widths written out so
    that they compile to single vector moves."""
    if length == 4:
        S[row, u(k)] = x[u(n), u(c), u(y), u(x0)]
        S[row, u(k + 1)] = x[u(n), u(c), u(y), u(x0 + 1)]
        S[row, u(k + 2)] = x[u(n), u(c), u(y), u(x0 + 2)]
        S[row, u(k + 3)] = x[u(n), u(c), u(y), u(x0 + 3)]
    elif length == 2:
        S[row, u(k)] = x[u(n), u(c), u(y), u(x0)]
        S[row, u(k + 1)] = x[u(n), u(c), u(y), u(x0 + 1)]
    else:
        for r in range(length):
            S[row, u(k + r)] = x[u(n), u(c), u(y), u(x0 + r)]


@njit(cache=True, nogil=True)
def _space_to_depth_chw(x, S, n0, n1, hb, wb, sy, sx, py, px):
    channels, height, width = x.shape[1], x.shape[2], x.shape[3]
    for n in range(n0, n1):
        for by in range(hb):
            for bx in range(wb):
                row = u(((n - n0) * hb + by) * wb + bx)
                x0 = bx * sx - px
                inside = x0 >= 0 and x0 + sx <= width
                k = 0
                for c in range(channels):
                    for ry in range(sy):
                        y = by * sy + ry - py
                        if y < 0 or y >= height:
                            for rx in range(sx):
                                S[row, u(k + rx)] = 0
                        elif inside:
                            _copy_run(S, row, k, x, n, c, y, x0, sx)
                        else:
                            for rx in range(sx):
                                xx = x0 + rx
                                S[row, u(k + rx)] = x[u(n), u(c), u(y), u(xx)] if 0 <= xx < width else 0
                        k += sx


def space_to_depth(x, S, n0: int, n1: int, grid, stride, padding, channels_last: bool) -> None:
    """Fill S ((n1 - n0) * hb * wb, c * sy * sx) with the sy x sx blocks of samples n0..n1-1."""
    if channels_last:  # blocks are the patches of a kernel the size of its stride
        _im2col_hwc(x.transpose(0, 2, 3, 1), S, n0, n1, grid[0], grid[1], stride[0], stride[1],
                    stride[0], stride[1], padding[0], padding[1])
    else:
        _space_to_depth_chw(x, S, n0, n1, grid[0], grid[1], stride[0], stride[1], padding[0],
                            padding[1])


@njit(cache=True, nogil=True)
def _depth_to_space_chw(dS, dx, hb, wb, sy, sx, py, px):
    channels, height, width = dx.shape[1], dx.shape[2], dx.shape[3]
    for n in range(dx.shape[0]):
        for c in range(channels):
            for y in range(height):
                by, ry = (y + py) // sy, (y + py) % sy
                for xx in range(width):
                    bx, rx = (xx + px) // sx, (xx + px) % sx
                    if by < hb and bx < wb:
                        row, k = u((n * hb + by) * wb + bx), u((c * sy + ry) * sx + rx)
                        dx[u(n), u(c), u(y), u(xx)] = dS[row, k]
                    else:
                        dx[u(n), u(c), u(y), u(xx)] = 0


@njit(cache=True, nogil=True)
def _depth_to_space_hwc(dS, dx_nhwc, hb, wb, sy, sx, py, px):
    height, width, channels = dx_nhwc.shape[1], dx_nhwc.shape[2], dx_nhwc.shape[3]
    for n in range(dx_nhwc.shape[0]):
        for y in range(height):
            by, ry = (y + py) // sy, (y + py) % sy
            for xx in range(width):
                bx, rx = (xx + px) // sx, (xx + px) % sx
                if by < hb and bx < wb:
                    row, k = u((n * hb + by) * wb + bx), (ry * sx + rx) * channels
                    for c in range(channels):
                        dx_nhwc[u(n), u(y), u(xx), u(c)] = dS[row, u(k + c)]
                else:
                    for c in range(channels):
                        dx_nhwc[u(n), u(y), u(xx), u(c)] = 0


def depth_to_space(dS, dx, grid, stride, padding, channels_last: bool) -> None:
    """Write every element of dx (n, c, h, w) from the block rows dS (the inverse permutation;
    pixels that no block covers, past the last window, get zero)."""
    if channels_last:
        _depth_to_space_hwc(dS, dx.transpose(0, 2, 3, 1), grid[0], grid[1], stride[0], stride[1],
                            padding[0], padding[1])
    else:
        _depth_to_space_chw(dS, dx, grid[0], grid[1], stride[0], stride[1], padding[0], padding[1])


@njit(cache=True, nogil=True)
def _shift_add(Z, out, bias, n_count, hb, wb, oh, ow, qy, qx, relu):
    channels = out.shape[1]
    for n in range(n_count):
        for oy in range(oh):
            for ox in range(ow):
                row = u((n * oh + oy) * ow + ox)
                for o in range(channels):
                    out[row, u(o)] = bias[u(o)]
                for dy in range(qy):
                    for dx in range(qx):
                        source = u((n * hb + oy + dy) * wb + ox + dx)
                        k = (dy * qx + dx) * channels
                        for o in range(channels):
                            out[row, u(o)] += Z[source, u(k + o)]
                if relu:
                    for o in range(channels):
                        out[row, u(o)] = max(out[row, u(o)], 0)


def shift_add(Z, out, bias, n_count: int, grid, out_hw, blocks, relu: bool) -> None:
    """out rows (n, oy, ox) = bias + the sum over kernel blocks (dy, dx) of Z[(n, oy+dy, ox+dx),
    (dy, dx, :)], for n_count samples, then max(0, .) if `relu`; writes every element of `out`."""
    _shift_add(Z, out, bias, n_count, grid[0], grid[1], out_hw[0], out_hw[1], blocks[0], blocks[1],
               relu)


@njit(cache=True, nogil=True)
def _spread(gy_rows, y_rows, dZ, gb, n0, n1, oh, ow, hb, wb, qy, qx, relu):
    channels = gy_rows.shape[1]
    for n in range(n0, n1):
        for by in range(hb):
            for bx in range(wb):
                row = u(((n - n0) * hb + by) * wb + bx)
                for dy in range(qy):
                    oy = by - dy
                    for dx in range(qx):
                        ox = bx - dx
                        k = (dy * qx + dx) * channels
                        if 0 <= oy < oh and 0 <= ox < ow:
                            source = u((n * oh + oy) * ow + ox)
                            if relu:
                                for o in range(channels):
                                    g = gy_rows[source, u(o)]
                                    dZ[row, u(k + o)] = g if y_rows[source, u(o)] > 0 else 0
                            else:
                                for o in range(channels):
                                    dZ[row, u(k + o)] = gy_rows[source, u(o)]
                            if gb.size and dy == 0 and dx == 0:  # each position once
                                for o in range(channels):
                                    gb[u(o)] += dZ[row, u(k + o)]
                        else:
                            for o in range(channels):
                                dZ[row, u(k + o)] = 0


def rows(images):
    """(n * h * w, c) view of a channels-last (n, c, h, w) array (a copy for other layouts)."""
    return images.transpose(0, 2, 3, 1).reshape(-1, images.shape[1])


def spread_rows(gy_rows, y_rows, out_hw, dZ, n0: int, n1: int, grid, blocks, gb=None) -> None:
    """dZ[(n, by, bx), (dy, dx, o)] = gy[n, o, by - dy, bx - dx] (zero off the output), for samples
    n0..n1-1 of the output gradient gy, given as its (n * oh * ow, out) rows (see `rows`; the whole
    batch's, so that they are not re-arranged per chunk): the adjoint of shift_add. With `y_rows`
    (the output of a fused ReLU) the gradient is zero where y is not positive; with `gb` (out,)
    the bias gradient of these samples is added into it."""
    relu = y_rows is not None
    _spread(gy_rows, y_rows if relu else gy_rows, dZ,
            gb if gb is not None else np.empty(0, dtype=gy_rows.dtype), n0, n1, out_hw[0], out_hw[1],
            grid[0], grid[1], blocks[0], blocks[1], relu)
