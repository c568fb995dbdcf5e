"""Differentiable ops: each is a Function with its backward beside its forward, plus a function
that applies it. Arrays may be NumPy or CuPy; `xp` is taken from the data, never imported.
"""
from __future__ import annotations

import numpy as np

from . import backend
from .kernels import dense as dense_kernels, softmax_gpu
from .tensor import Function, Tensor, unbroadcast

_xp = backend.get_array_module


def _shape(x):
    return getattr(x, "shape", ())


# -- elementwise arithmetic (broadcasting) ---------------------------------------------------
class Add(Function):
    def forward(self, a, b):
        self.shapes = _shape(a), _shape(b)
        return a + b

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(gy, self.shapes[1])


class Sub(Function):
    def forward(self, a, b):
        self.shapes = _shape(a), _shape(b)
        return a - b

    def backward(self, gy):
        return unbroadcast(gy, self.shapes[0]), unbroadcast(-gy, self.shapes[1])


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        ga = unbroadcast(gy * self.b, _shape(self.a)) if self.inputs[0].requires_grad else None
        gb = unbroadcast(gy * self.a, _shape(self.b)) if self.inputs[1].requires_grad else None
        return ga, gb


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        ga = unbroadcast(gy / self.b, _shape(self.a)) if self.inputs[0].requires_grad else None
        gb = (unbroadcast(-gy * self.a / (self.b * self.b), _shape(self.b))
              if self.inputs[1].requires_grad else None)
        return ga, gb


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Pow(Function):
    def __init__(self, exponent: float):
        self.exponent = exponent

    def forward(self, x):
        self.x = x
        return x ** self.exponent

    def backward(self, gy):
        p = self.exponent
        return gy * p * self.x ** (p - 1)


class Maximum(Function):
    """Elementwise max of two arrays; ties send the gradient to the first."""

    def forward(self, a, b):
        self.first = a >= b
        self.shapes = _shape(a), _shape(b)
        return _xp(a).maximum(a, b)

    def backward(self, gy):
        return (unbroadcast(gy * self.first, self.shapes[0]),
                unbroadcast(gy * ~self.first, self.shapes[1]))


def add(a, b): return Add()(a, b)
def sub(a, b): return Sub()(a, b)
def mul(a, b): return Mul()(a, b)
def div(a, b): return Div()(a, b)
def neg(x): return Neg()(x)
def pow(x, exponent: float): return Pow(exponent)(x)  # noqa: A001 - mirrors the operator
def maximum(a, b): return Maximum()(a, b)


# -- matrix products -------------------------------------------------------------------------
class MatMul(Function):
    """a @ b for 2-D or batched (..., m, k) @ (..., k, n) operands."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        # a 1-D operand is a row vector on the left and a column vector on the right, as in forward
        a = self.a[None, :] if self.a.ndim == 1 else self.a
        b = self.b[:, None] if self.b.ndim == 1 else self.b
        if self.b.ndim == 1:
            gy = gy[..., None]
        if self.a.ndim == 1:
            gy = gy[..., None, :]
        ga = gb = None
        if self.inputs[0].requires_grad:
            ga = unbroadcast(gy @ b.swapaxes(-1, -2), a.shape).reshape(self.a.shape)
        if self.inputs[1].requires_grad:
            gb = unbroadcast(a.swapaxes(-1, -2) @ gy, b.shape).reshape(self.b.shape)
        return ga, gb


DENSE_ACTIVATIONS = (None, "relu", "tanh")


class Linear(Function):
    """y = act(x W + b) in one op: x (..., in), W (in, out), b (out,) or None, `activation` one of
    DENSE_ACTIVATIONS. The activation is applied in place on the product and its derivative read
    from the output, as conv2d's fused ReLU: small nets are bound by the ops' count, not their
    arithmetic, and a control MLP's layer is then one op, not two.

    Leading axes are folded into one, so a (batch, time, in) input is a time-distributed dense.
    """

    def __init__(self, activation=None):
        if activation not in DENSE_ACTIVATIONS:
            raise ValueError(f"linear activation must be one of {DENSE_ACTIVATIONS}, got {activation!r}")
        self.activation = activation

    def forward(self, x, w, b=None):
        self.in_shape = x.shape
        self.x = x.reshape(-1, x.shape[-1])
        self.w = w
        y = dense_kernels.bias_activation(dense_kernels.matmul(self.x, w), b, self.activation)
        self.y = y if self.activation else None
        return y.reshape(*x.shape[:-1], w.shape[1])

    def backward(self, gy):
        gy = dense_kernels.activation_gradient(gy.reshape(-1, gy.shape[-1]), self.y, self.activation)
        gx = None
        if self.inputs[0].requires_grad:
            # (W gy^T)^T, not gy W^T: OpenBLAS multiplies by a transposed right operand slowly,
            # and this order took 0.55-0.7x the time on batches of 5 to 32 rows, 0.8-0.9x on 64
            # to 128, the same on 256 (five layer shapes from 256x256 to 3136x512, 1 and 2
            # threads); small layers keep the plain order, their products cost next to nothing,
            # and so does the GPU, where reshaping the transposed result would copy it
            if gy.shape[0] < 256 and self.w.size >= 1 << 16 and _xp(gy) is np:
                gx = dense_kernels.matmul(self.w, gy.T).T
            else:
                gx = dense_kernels.matmul(gy, self.w.T)
            gx = gx.reshape(self.in_shape)
        gw = _weight_gradient(self.inputs[1], self.x.T, gy)
        if len(self.inputs) == 3:
            return gx, gw, bias_gradient(self.inputs[2], gy)
        return gx, gw


def _weight_gradient(w, a, b):
    """a @ b as the gradient of `w`: added straight into a parameter's gradient (None is returned:
    nothing is left to accumulate), returned otherwise; frozen weights get no product."""
    if not w.requires_grad:
        return None
    buffer = w.gradient_buffer()
    if buffer is None:
        return dense_kernels.matmul(a, b)
    dense_kernels.add_matmul(a, b, buffer)
    return None


def bias_gradient(b, rows):
    """The sum of `rows` as the gradient of bias `b`, like `_weight_gradient`: added straight into
    a parameter's gradient (one product on the GPU), returned otherwise; a frozen bias gets none."""
    if not b.requires_grad:
        return None
    buffer = b.gradient_buffer()
    if buffer is None:
        return rows.sum(axis=0)
    dense_kernels.add_column_sums(rows, buffer)
    return None


def matmul(a, b): return MatMul()(a, b)


def linear(x, w, b=None, activation=None):
    return Linear(activation)(x, w) if b is None else Linear(activation)(x, w, b)


# -- shape ops -------------------------------------------------------------------------------
class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        return gy.transpose(np.argsort(self.axes))


class Concat(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        self.splits = np.cumsum([x.shape[self.axis] for x in xs])[:-1]
        return _xp(xs[0]).concatenate(xs, axis=self.axis)

    def backward(self, gy):
        return tuple(_xp(gy).split(gy, self.splits, axis=self.axis))


class Stack(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, *xs):
        return _xp(xs[0]).stack(xs, axis=self.axis)

    def backward(self, gy):
        xp = _xp(gy)
        return tuple(xp.take(gy, i, axis=self.axis) for i in range(gy.shape[self.axis]))


class GetItem(Function):
    """x[index] for slices, integers and integer/boolean arrays (repeated indices accumulate)."""

    def __init__(self, index):
        self.index = index.data if isinstance(index, Tensor) else index

    def forward(self, x):
        self.in_shape, self.dtype = x.shape, x.dtype
        if _xp(x) is not np:  # host index arrays (actions, labels) go where x is
            parts = self.index if isinstance(self.index, tuple) else (self.index,)
            moved = tuple(backend.same_device([x, *parts])[1:])
            self.index = moved if isinstance(self.index, tuple) else moved[0]
        return x[self.index]

    def backward(self, gy):
        xp = _xp(gy)
        gx = xp.zeros(self.in_shape, dtype=self.dtype)
        if xp is np:
            np.add.at(gx, self.index, gy)
        else:
            xp.add.at(gx, self.index, gy)
        return gx


def reshape(x, shape): return Reshape(tuple(shape) if not isinstance(shape, int) else (shape,))(x)
def transpose(x, axes=None): return Transpose(None if axes is None else tuple(axes))(x)
def concat(xs, axis: int = -1): return Concat(axis)(*xs)
def stack(xs, axis: int = 0): return Stack(axis)(*xs)
def getitem(x, index): return GetItem(index)(x)
def flatten(x): return reshape(x, (x.shape[0], -1))


# -- reductions ------------------------------------------------------------------------------
def _expand(gy, in_shape, axis, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input again."""
    if axis is None or keepdims:
        return gy.reshape([1] * len(in_shape)) if axis is None and not keepdims else gy
    axes = (axis,) if isinstance(axis, int) else axis
    axes = sorted(a % len(in_shape) for a in axes)
    shape = list(gy.shape)
    for a in axes:
        shape.insert(a, 1)
    return gy.reshape(shape)


class Sum(Function):
    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.in_shape = x.shape
        return _xp(x).asarray(x.sum(axis=self.axis, keepdims=self.keepdims))

    def backward(self, gy):
        g = _expand(gy, self.in_shape, self.axis, self.keepdims)
        return _xp(gy).broadcast_to(g, self.in_shape).copy()


class Mean(Sum):
    def forward(self, x):
        total = super().forward(x)
        self.count = x.size // total.size
        return total / x.dtype.type(self.count)

    def backward(self, gy):
        return super().backward(gy / self.count)


class Max(Function):
    """Max over axes; the gradient is shared evenly among ties."""

    def __init__(self, axis, keepdims):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.x = x
        self.y = _xp(x).asarray(x.max(axis=self.axis, keepdims=True))
        return self.y if self.keepdims else _xp(x).asarray(x.max(axis=self.axis, keepdims=False))

    def backward(self, gy):
        g = _expand(gy, self.x.shape, self.axis, self.keepdims)
        mask = (self.x == self.y)
        return mask * (g / mask.sum(axis=self.axis, keepdims=True))


def sum(x, axis=None, keepdims=False): return Sum(axis, keepdims)(x)  # noqa: A001
def mean(x, axis=None, keepdims=False): return Mean(axis, keepdims)(x)
def max(x, axis=None, keepdims=False): return Max(axis, keepdims)(x)  # noqa: A001


# -- elementwise math ------------------------------------------------------------------------
class Exp(Function):
    def forward(self, x):
        self.y = _xp(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return _xp(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = _xp(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, x):
        self.sign = _xp(x).sign(x)
        return _xp(x).abs(x)  # the builtin `abs` is shadowed by this module's own

    def backward(self, gy):
        return gy * self.sign


class Clip(Function):
    """Clamp to [low, high]; the gradient passes only where x was inside."""

    def __init__(self, low, high):
        self.low, self.high = low, high

    def forward(self, x):
        self.inside = (x >= self.low) & (x <= self.high)
        return _xp(x).clip(x, self.low, self.high)

    def backward(self, gy):
        return gy * self.inside


def exp(x): return Exp()(x)
def log(x): return Log()(x)
def sqrt(x): return Sqrt()(x)
def abs(x): return Abs()(x)  # noqa: A001
def clip(x, low, high): return Clip(low, high)(x)


# -- activations -----------------------------------------------------------------------------
class ReLU(Function):
    def forward(self, x):
        self.y = _xp(x).maximum(x, 0)
        return self.y

    def backward(self, gy):
        return gy * (self.y > 0)


class LeakyReLU(Function):
    def __init__(self, slope: float):
        self.slope = slope

    def forward(self, x):
        self.positive = x > 0
        return _xp(x).where(self.positive, x, x * self.slope)

    def backward(self, gy):
        return _xp(gy).where(self.positive, gy, gy * self.slope)


class Sigmoid(Function):
    def forward(self, x):
        xp = _xp(x)
        # tanh form is stable for large |x| (no exp overflow)
        self.y = (xp.tanh(x * 0.5) * 0.5 + 0.5).astype(x.dtype, copy=False)
        return self.y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class HardSigmoid(Function):
    """clip(0.2 x + 0.5, 0, 1), Theano's hard_sigmoid."""

    def forward(self, x):
        self.inside = (x > -2.5) & (x < 2.5)
        return _xp(x).clip(x * 0.2 + 0.5, 0, 1).astype(x.dtype, copy=False)

    def backward(self, gy):
        return gy * (0.2 * self.inside).astype(gy.dtype, copy=False)


class Tanh(Function):
    def forward(self, x):
        self.y = _xp(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


class Softplus(Function):
    def forward(self, x):
        xp = _xp(x)
        self.x = x
        return xp.logaddexp(x, 0).astype(x.dtype, copy=False)

    def backward(self, gy):
        xp = _xp(gy)
        return gy * (xp.tanh(self.x * 0.5) * 0.5 + 0.5)


class Softmax(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


class LogSoftmax(Function):
    def __init__(self, axis: int):
        self.axis = axis

    def forward(self, x):
        xp = _xp(x)
        shifted = x - x.max(axis=self.axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=self.axis, keepdims=True))
        return self.y

    def backward(self, gy):
        xp = _xp(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def relu(x): return ReLU()(x)
def leaky_relu(x, slope: float = 0.01): return LeakyReLU(slope)(x)
def sigmoid(x): return Sigmoid()(x)
def hard_sigmoid(x): return HardSigmoid()(x)
def tanh(x): return Tanh()(x)
def softplus(x): return Softplus()(x)
def softmax(x, axis: int = -1): return Softmax(axis)(x)
def log_softmax(x, axis: int = -1): return LogSoftmax(axis)(x)


# -- losses ----------------------------------------------------------------------------------
def _reduce(loss_per_item, reduction):
    if reduction == "mean":
        return mean(loss_per_item)
    if reduction == "sum":
        return sum(loss_per_item)
    if reduction == "none":
        return loss_per_item
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


class SoftmaxCrossEntropy(Function):
    """Mean over rows of -log softmax(logits)[label], fused and stable.

    logits (n, classes), labels (n,) ints; rows whose weight is 0 (masked) are left out and the
    mean is over the rest.
    """

    def __init__(self, labels, weights=None):
        self.labels, self.weights = labels, weights

    def forward(self, logits):
        xp = _xp(logits)
        n = logits.shape[0]
        if xp is np:
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = xp.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            self.probs = e / total
            nll = xp.log(total[:, 0]) - shifted[xp.arange(n), self.labels]
        else:
            self.probs, nll = softmax_gpu.forward(logits, self.labels)
        if self.weights is None:
            self.scale = xp.full(n, 1.0 / n, dtype=logits.dtype)
        else:
            self.scale = (self.weights / xp.maximum(self.weights.sum(), 1e-12)).astype(logits.dtype)
        # on the GPU through blas_gpu: CuPy's own product (its cuBLAS wrapper) refuses a CUDA graph capture
        loss = nll @ self.scale if xp is np else dense_kernels.matmul(nll[None], self.scale[:, None])
        return xp.asarray(loss, dtype=logits.dtype).reshape(())

    def backward(self, gy):
        xp = _xp(gy)
        if xp is not np:
            return softmax_gpu.backward(self.probs, self.labels, self.scale, gy)
        g = self.probs.copy()
        g[xp.arange(g.shape[0]), self.labels] -= 1
        g *= (self.scale * gy)[:, None]
        return g


def softmax_cross_entropy(logits, labels, weights=None):
    """Mean cross-entropy of integer `labels` under softmax(`logits`) over the last axis.

    Any leading shape works ((batch, time, classes) for sequences); `weights` (same leading shape)
    masks padded positions with 0.
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    weights = weights.data if isinstance(weights, Tensor) else weights
    classes = logits.shape[-1]
    flat = logits if logits.ndim == 2 else reshape(logits, (-1, classes))
    xp = _xp(flat.data if isinstance(flat, Tensor) else flat)
    labels = xp.asarray(labels).reshape(-1)
    if weights is not None:
        weights = xp.asarray(weights, dtype=flat.dtype).reshape(-1)
    return SoftmaxCrossEntropy(labels, weights)(flat)


def nll_loss(log_probs, labels, reduction: str = "mean"):
    """Negative log-likelihood of integer labels given log-probabilities (n, classes)."""
    labels = labels.data if isinstance(labels, Tensor) else labels
    picked = getitem(log_probs, (_xp(labels).arange(len(labels)), labels))
    return _reduce(neg(picked), reduction)


def mse_loss(prediction, target, reduction: str = "mean"):
    diff = sub(prediction, target)
    return _reduce(mul(diff, diff), reduction)


class Huber(Function):
    """0.5 d^2 where |d| <= delta, else delta (|d| - 0.5 delta); elementwise."""

    def __init__(self, delta: float):
        self.delta = delta

    def forward(self, prediction, target):
        xp = _xp(prediction)
        self.d = prediction - target
        small = xp.abs(self.d) <= self.delta
        return xp.where(small, 0.5 * self.d * self.d,
                        self.delta * (xp.abs(self.d) - 0.5 * self.delta)).astype(prediction.dtype)

    def backward(self, gy):
        g = gy * _xp(gy).clip(self.d, -self.delta, self.delta)
        return g, -g


def huber_loss(prediction, target, delta: float = 1.0, reduction: str = "mean"):
    return _reduce(Huber(delta)(prediction, target), reduction)


def binary_cross_entropy_with_logits(logits, targets, reduction: str = "mean"):
    """-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)) = softplus(x) - t x, stable for any x;
    targets in [0, 1] (soft labels allowed)."""
    return _reduce(sub(softplus(logits), mul(logits, targets)), reduction)


# -- layer ops (convolution, pooling, dropout, embedding, batch norm) live in their own modules --
from .functional_conv import conv2d  # noqa: E402
from .functional_layers import avg_pool2d, batch_norm, dropout, embedding, max_pool2d  # noqa: E402
from .functional_image import (affine_grid, conv_transpose2d, grid_sample, resize_bilinear,  # noqa: E402
                              upsample_bilinear, upsample_nearest)
