"""CuPy kernels of the dense and convolution epilogues: the bias and the activation after a
product, in one launch, and the activation's derivative in one.

The array code takes two launches for `y += b` then ReLU, three for `gy * (1 - y * y)`; a small
network's GPU step is bound by launches (~20 us of host time each), not by their arithmetic.
Rows are the output's leading axis and columns its last (a dense layer's (batch, out), a
convolution's channels-last (positions, out)). Activations: 0 none, 1 ReLU, 2 tanh.
"""
from __future__ import annotations

import functools

from .. import backend

ACTIVATIONS = {None: 0, "relu": 1, "tanh": 2}


@functools.cache
def _kernels():
    cp = backend.cupy_module()
    bias_activation = cp.ElementwiseKernel(  # called with x and y the same array: in place
        "T x, raw T b, int64 columns, bool has_bias, int32 activation", "T y", """
        T v = has_bias ? x + b[i % columns] : x;
        if (activation == 1) v = v > (T)0 ? v : (T)0;
        else if (activation == 2) v = tanh(v);
        y = v;
        """, "workbench_bias_activation")
    activation_gradient = cp.ElementwiseKernel(
        "T gy, T y, int32 activation", "T g",
        "g = activation == 1 ? gy * (T)(y > (T)0) : gy * ((T)1 - y * y);",
        "workbench_activation_gradient")
    return bias_activation, activation_gradient


def bias_activation(y, b, activation) -> None:
    """y = activation(y + b) in place, for y (rows, columns) and b (columns,) or None."""
    has_bias = b is not None
    if has_bias and b.dtype != y.dtype:
        b = b.astype(y.dtype)
    bias = b if has_bias else y[:0]  # never read
    _kernels()[0](y, bias, y.shape[-1], has_bias, ACTIVATIONS[activation], y)


def activation_gradient(gy, y, activation):
    """gy times the derivative of `activation` ("relu" or "tanh") read from its output y, laid out
    as y is (a convolution's channels-last output stays one: its rows are then a view)."""
    return _kernels()[1](gy, y, ACTIVATIONS[activation], backend.cupy_module().empty_like(y))
