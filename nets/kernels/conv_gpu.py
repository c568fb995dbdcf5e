"""CuPy versions of im2col and col2im, with the contract of nets/kernels/conv.py.

One thread per output element. `raw` inputs are indexed with their logical (C-order) position,
which CuPy maps through the array's strides, so channels-last inputs need no copy.
"""
from __future__ import annotations

import functools

from .. import backend


@functools.cache
def _kernels():
    cp = backend.cupy_module()
    im2col = cp.ElementwiseKernel(
        "raw T x, int64 n0, int64 channels, int64 height, int64 width, int64 oh, int64 ow, "
        "int64 kh, int64 kw, int64 sy, int64 sx, int64 py, int64 px, bool hwc",
        "T cols",
        """
        const long long taps = channels * kh * kw;
        const long long row = i / taps, k = i % taps;
        const long long ox = row % ow, oy = row / ow % oh, n = n0 + row / (ow * oh);
        long long c, ky, kx;
        if (hwc) { c = k % channels; kx = k / channels % kw; ky = k / (channels * kw); }
        else { kx = k % kw; ky = k / kw % kh; c = k / (kw * kh); }
        const long long iy = oy * sy + ky - py, ix = ox * sx + kx - px;
        cols = (iy >= 0 && iy < height && ix >= 0 && ix < width)
            ? x[((n * channels + c) * height + iy) * width + ix] : (T)0;
        """,
        "workbench_im2col")
    col2im = cp.ElementwiseKernel(
        "raw T cols, int64 channels, int64 height, int64 width, int64 oh, int64 ow, "
        "int64 kh, int64 kw, int64 sy, int64 sx, int64 py, int64 px, bool hwc",
        "T dx",
        """
        const long long ix = i % width, iy = i / width % height;
        const long long c = i / (width * height) % channels, n = i / (width * height * channels);
        const long long taps = channels * kh * kw;
        const long long oy_lo = max((iy + py - kh) / sy + ((iy + py - kh) >= 0 ? 1 : 0), 0LL);
        const long long ox_lo = max((ix + px - kw) / sx + ((ix + px - kw) >= 0 ? 1 : 0), 0LL);
        const long long oy_hi = min((iy + py) / sy, oh - 1), ox_hi = min((ix + px) / sx, ow - 1);
        T total = 0;
        for (long long oy = oy_lo; oy <= oy_hi; ++oy) {
            const long long ky = iy + py - oy * sy;
            if (ky >= kh) continue;
            for (long long ox = ox_lo; ox <= ox_hi; ++ox) {
                const long long kx = ix + px - ox * sx;
                if (kx >= kw) continue;
                const long long k = hwc ? (ky * kw + kx) * channels + c : (c * kh + ky) * kw + kx;
                total += cols[((n * oh + oy) * ow + ox) * taps + k];
            }
        }
        dx = total;
        """,
        "workbench_col2im")
    return im2col, col2im


def im2col(x, cols, n0, n1, kernel, stride, padding, channels_last) -> None:
    from .conv import out_size
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    _, channels, height, width = x.shape
    oh, ow = out_size(height, kh, sy, py), out_size(width, kw, sx, px)
    _kernels()[0](x, n0, channels, height, width, oh, ow, kh, kw, sy, sx, py, px,
                  bool(channels_last), cols)


def col2im(cols, dx, kernel, stride, padding, channels_last) -> None:
    from .conv import out_size
    (kh, kw), (sy, sx), (py, px) = kernel, stride, padding
    _, channels, height, width = dx.shape
    oh, ow = out_size(height, kh, sy, py), out_size(width, kw, sx, px)
    _kernels()[1](cols, channels, height, width, oh, ow, kh, kw, sy, sx, py, px,
                  bool(channels_last), dx)
