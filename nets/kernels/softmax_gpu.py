"""CuPy kernels of the fused softmax cross-entropy (nets.functional.SoftmaxCrossEntropy).

Forward: one thread per row computes the softmax and the row's negative log-likelihood in one
pass over its logits (the array code takes eight launches). Backward: one elementwise launch,
g = (softmax - onehot(label)) * scale[row] * gy.
"""
from __future__ import annotations

import functools

from .. import backend


@functools.cache
def _kernels():
    cp = backend.cupy_module()
    forward = cp.ElementwiseKernel(
        "raw T logits, raw L labels, int64 classes", "T nll, raw T probs", """
        const ptrdiff_t row = i * classes;
        T top = logits[row];
        for (ptrdiff_t k = 1; k < classes; ++k) top = logits[row + k] > top ? logits[row + k] : top;
        T total = 0;
        for (ptrdiff_t k = 0; k < classes; ++k) {
            const T e = exp(logits[row + k] - top);
            probs[row + k] = e;
            total += e;
        }
        const T inv = (T)1 / total;
        for (ptrdiff_t k = 0; k < classes; ++k) probs[row + k] *= inv;
        nll = log(total) - (logits[row + labels[i]] - top);
        """, "workbench_softmax_cross_entropy")
    backward = cp.ElementwiseKernel(
        "T p, raw L labels, raw T scale, raw T gy, int64 classes", "T g", """
        const ptrdiff_t row = i / classes;
        g = (p - (i % classes == labels[row] ? (T)1 : (T)0)) * scale[row] * gy[0];
        """, "workbench_softmax_cross_entropy_backward")
    return forward, backward


def forward(logits, labels):
    """(probs, nll) of logits (n, classes) and integer labels (n,)."""
    cp = backend.cupy_module()
    n, classes = logits.shape
    probs = cp.empty_like(logits)
    nll = cp.empty(n, dtype=logits.dtype)
    _kernels()[0](logits, labels, classes, nll, probs)
    return probs, nll


def backward(probs, labels, scale, gy):
    return _kernels()[1](probs, labels, scale, gy.reshape(1), probs.shape[1])
