"""Bilinear sampling (the spatial transformer's sampler, Jaderberg et al. 2015) on the CPU.

Contract: `x` (n, c, h, w) in any memory layout; `grid` (n, H, W, 2) holds normalised (x, y)
source coordinates in [-1, 1] per output pixel, -1 and 1 being the outer edges of the corner
pixels (PyTorch's align_corners=False); pixels outside the image read as zero. The output
(n, c, H, W) is written whole; the backward adds into `gx` (zeroed by the caller) and writes
every entry of `ggrid`.

Loops run over samples, output rows and columns, with the channels innermost, so one pixel's
four source corners are computed once for all channels. Single-threaded for the reason given in
nets/kernels/conv.py (BLAS owns the cores).
"""
from __future__ import annotations

import math

from numba import njit


@njit(cache=True, inline="always")
def _source(g, size):
    """Pixel coordinate of normalised coordinate `g`, its floor and the weight of floor + 1."""
    pos = ((g + 1.0) * size - 1.0) * 0.5
    lo = math.floor(pos)
    return int(lo), pos - lo


@njit(cache=True)
def sample_forward(x, grid, out):
    n, channels, height, width = x.shape
    for b in range(n):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                x0, tx = _source(grid[b, i, j, 0], width)
                y0, ty = _source(grid[b, i, j, 1], height)
                for k in range(channels):
                    out[b, k, i, j] = 0
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= height:
                        continue
                    wy = ty if dy else 1.0 - ty
                    for dx in range(2):
                        xx = x0 + dx
                        if xx < 0 or xx >= width:
                            continue
                        weight = wy * (tx if dx else 1.0 - tx)
                        for k in range(channels):
                            out[b, k, i, j] += weight * x[b, k, yy, xx]


@njit(cache=True)
def sample_backward(x, grid, gy, gx, ggrid, need_x):
    n, channels, height, width = x.shape
    for b in range(n):
        for i in range(grid.shape[1]):
            for j in range(grid.shape[2]):
                x0, tx = _source(grid[b, i, j, 0], width)
                y0, ty = _source(grid[b, i, j, 1], height)
                d_tx = 0.0  # d out / d tx and d ty, summed over channels
                d_ty = 0.0
                for dy in range(2):
                    yy = y0 + dy
                    if yy < 0 or yy >= height:
                        continue
                    wy = ty if dy else 1.0 - ty
                    sy = 1.0 if dy else -1.0
                    for dx in range(2):
                        xx = x0 + dx
                        if xx < 0 or xx >= width:
                            continue
                        wx = tx if dx else 1.0 - tx
                        sx = 1.0 if dx else -1.0
                        for k in range(channels):
                            g = gy[b, k, i, j]
                            if need_x:
                                gx[b, k, yy, xx] += wy * wx * g
                            v = g * x[b, k, yy, xx]
                            d_tx += v * wy * sx
                            d_ty += v * wx * sy
                ggrid[b, i, j, 0] = d_tx * width * 0.5
                ggrid[b, i, j, 1] = d_ty * height * 0.5
