"""CuPy versions of the pooling kernels, with the contract of nets/kernels/pool.py.

One thread per output element (forward) or per input pixel (backward, a gather over the windows
that cover it). `raw` arrays are indexed with their logical (C-order) position, which CuPy maps
through the strides, so channels-last arrays need no copy.
"""
from __future__ import annotations

import functools

from .. import backend

_WINDOW_RANGE = """
    const long long oy_lo = iy >= kh ? (iy - kh) / sy + 1 : 0, oy_hi = min(iy / sy, oh - 1);
    const long long ox_lo = ix >= kw ? (ix - kw) / sx + 1 : 0, ox_hi = min(ix / sx, ow - 1);
"""
_INPUT_PIXEL = """
    const long long ix = i % width, iy = i / width % height, plane = i / (width * height);
"""


@functools.cache
def _kernels():
    cp = backend.cupy_module()
    window = "int64 height, int64 width, int64 oh, int64 ow, int64 kh, int64 kw, int64 sy, int64 sx"
    max_forward = cp.ElementwiseKernel(
        "raw T x, " + window, "T out, int32 argmax",
        """
        const long long ox = i % ow, oy = i / ow % oh, plane = i / (ow * oh);
        const long long base = plane * height * width;
        long long where = oy * sy * width + ox * sx;
        T best = x[base + where];
        for (long long ky = 0; ky < kh; ++ky) {
            for (long long kx = 0; kx < kw; ++kx) {
                const long long here = (oy * sy + ky) * width + ox * sx + kx;
                const T v = x[base + here];
                if (v > best) { best = v; where = here; }
            }
        }
        out = best;
        argmax = (int)where;
        """,
        "workbench_max_pool_forward")
    max_backward = cp.ElementwiseKernel(
        "raw T gy, raw int32 argmax, " + window, "T dx",
        _INPUT_PIXEL + _WINDOW_RANGE + """
        const long long here = iy * width + ix;
        T total = 0;
        for (long long oy = oy_lo; oy <= oy_hi; ++oy)
            for (long long ox = ox_lo; ox <= ox_hi; ++ox) {
                const long long o = (plane * oh + oy) * ow + ox;
                if (argmax[o] == here) total += gy[o];
            }
        dx = total;
        """,
        "workbench_max_pool_backward")
    avg_forward = cp.ElementwiseKernel(
        "raw T x, " + window, "T out",
        """
        const long long ox = i % ow, oy = i / ow % oh, plane = i / (ow * oh);
        const long long base = plane * height * width;
        T total = 0;
        for (long long ky = 0; ky < kh; ++ky)
            for (long long kx = 0; kx < kw; ++kx)
                total += x[base + (oy * sy + ky) * width + ox * sx + kx];
        out = total / (T)(kh * kw);
        """,
        "workbench_avg_pool_forward")
    avg_backward = cp.ElementwiseKernel(
        "raw T gy, " + window, "T dx",
        _INPUT_PIXEL + _WINDOW_RANGE + """
        T total = 0;
        for (long long oy = oy_lo; oy <= oy_hi; ++oy)
            for (long long ox = ox_lo; ox <= ox_hi; ++ox)
                total += gy[(plane * oh + oy) * ow + ox];
        dx = total / (T)(kh * kw);
        """,
        "workbench_avg_pool_backward")
    return max_forward, max_backward, avg_forward, avg_backward


def _window(x_shape, out_shape, kernel, stride):
    return (x_shape[2], x_shape[3], out_shape[2], out_shape[3], *kernel, *stride)


def max_pool_forward(x, out, argmax, kernel, stride) -> None:
    _kernels()[0](x, *_window(x.shape, out.shape, kernel, stride), out, argmax)


def max_pool_backward(gy, argmax, dx, kernel, stride) -> None:
    _kernels()[1](gy, argmax, *_window(dx.shape, gy.shape, kernel, stride), dx)


def avg_pool_forward(x, out, kernel, stride) -> None:
    _kernels()[2](x, *_window(x.shape, out.shape, kernel, stride), out)


def avg_pool_backward(gy, dx, kernel, stride) -> None:
    _kernels()[3](gy, *_window(dx.shape, gy.shape, kernel, stride), dx)
