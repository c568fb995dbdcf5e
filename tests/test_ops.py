"""Every op in nets.functional: backward against float64 central differences, and the forward
values of the ops whose formula is easy to get subtly wrong against a plain NumPy version.

Inputs keep away from points where an op is not differentiable (0 for relu/abs, window ties for
max, the clip and hard-sigmoid corners, |d| = delta for Huber), where a finite difference would
straddle the kink.
"""
import numpy as np
import pytest

import nets
from nets import F
from nets.gradcheck import gradcheck


def t64(rng, *shape, low=None, name=None):
    """A float64 leaf; with `low`, every entry has magnitude at least `low` (kinks stay far)."""
    data = rng.standard_normal(shape)
    if low is not None:
        data = np.sign(data) * (low + np.abs(data))
    return nets.Tensor(data, requires_grad=True, name=name)


def spaced(rng, *shape):
    """Distinct multiples of 0.1 around 0 in random order (no ties for max)."""
    n = int(np.prod(shape))
    return nets.Tensor((rng.permutation(n) - n // 2).reshape(shape) * 0.1, requires_grad=True)


# -- elementwise arithmetic, with broadcasting ---------------------------------------------------
BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)),
                    ((1, 4), (1, 4))]


@pytest.mark.parametrize("shape_a,shape_b", BROADCAST_SHAPES)
@pytest.mark.parametrize("op", [F.add, F.sub, F.mul])
def test_binary_arithmetic(rng, op, shape_a, shape_b):
    a, b = t64(rng, *shape_a), t64(rng, *shape_b)
    gradcheck(lambda: op(a, b), [a, b])


@pytest.mark.parametrize("shape_a,shape_b", BROADCAST_SHAPES)
def test_div(rng, shape_a, shape_b):
    a, b = t64(rng, *shape_a), t64(rng, *shape_b, low=0.5)
    gradcheck(lambda: F.div(a, b), [a, b])


def test_arithmetic_with_plain_numbers_and_arrays(rng):
    a = t64(rng, 3, 2)
    plain = rng.standard_normal((3, 2))
    gradcheck(lambda: 2.0 - a * 3.0 + plain / (a * a + 1.0) - a / 4.0 + 1.0 / (a * a + 2.0), [a])


def test_neg(rng):
    a = t64(rng, 2, 5)
    gradcheck(lambda: F.neg(a), [a])
    gradcheck(lambda: -a, [a])


@pytest.mark.parametrize("exponent", [2, 3, -1.5, 0.5])
def test_pow(rng, exponent):
    positive_only = exponent != int(exponent)
    a = t64(rng, 3, 3, low=0.5)
    if positive_only:
        a.data = np.abs(a.data)
    gradcheck(lambda: F.pow(a, exponent), [a])
    np.testing.assert_allclose(F.pow(a, exponent).data, a.data ** exponent)


@pytest.mark.parametrize("shape_a,shape_b", [((3, 4), (3, 4)), ((3, 4), (4,)), ((2, 1, 4), (3, 1))])
def test_maximum(rng, shape_a, shape_b):
    a = spaced(rng, *shape_a)
    b = spaced(rng, *shape_b)
    b.data += 0.05  # off a's lattice: every pair differs by at least 0.05, no ties
    gradcheck(lambda: F.maximum(a, b), [a, b])
    np.testing.assert_array_equal(F.maximum(a, b).data, np.maximum(a.data, b.data))


# -- matrix products -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape_a,shape_b", [
    ((3, 4), (4, 5)), ((1, 4), (4, 2)),  # 2-D, batch 1
    ((2, 3, 4), (2, 4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (3, 4, 2)),  # batched, broadcast
    ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),  # vectors
])
def test_matmul(rng, shape_a, shape_b):
    a, b = t64(rng, *shape_a), t64(rng, *shape_b)
    gradcheck(lambda: F.matmul(a, b), [a, b])
    np.testing.assert_allclose(F.matmul(a, b).data, a.data @ b.data)


@pytest.mark.parametrize("x_shape", [(5, 4), (1, 4), (2, 3, 4)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation,separate", [(None, lambda y: y), ("relu", F.relu), ("tanh", F.tanh)])
def test_linear(rng, x_shape, bias, activation, separate):
    """The fused activation gives the separate op's values and gradients."""
    x, w = t64(rng, *x_shape), t64(rng, 4, 3)
    b = t64(rng, 3) if bias else None
    tensors = [x, w] + ([b] if bias else [])
    gradcheck(lambda: F.linear(x, w, b, activation), tensors)
    expected = separate(nets.Tensor(x.data @ w.data + (b.data if bias else 0)))
    np.testing.assert_allclose(F.linear(x, w, b, activation).data, expected.data)
    with pytest.raises(ValueError, match=r"activation must be one of \(None, 'relu', 'tanh'\), got 'gelu'"):
        F.linear(x, w, b, "gelu")


def test_linear_products_with_an_inner_dimension_of_one_are_outer_products(rng):
    """A batch of one's weight gradient, a one-output layer's input gradient and a one-input
    layer's output take the outer-product kernel (OpenBLAS is slow there): float32 values equal to
    the exact products rounded once, from strided views too."""
    from nets.kernels.dense import matmul

    def exact(a, b):  # each element one product of two float32s, rounded once
        return (a.astype(np.float64) @ b).astype(np.float32)

    x = rng.standard_normal((3, 300)).astype(np.float32)[1:2, ::2]  # (1, 150), not contiguous
    gy = rng.standard_normal((1, 40)).astype(np.float32)
    np.testing.assert_array_equal(matmul(x.T, gy), exact(x.T, gy))
    w = nets.Parameter(rng.standard_normal((150, 40)).astype(np.float32))
    F.linear(nets.Tensor(np.ascontiguousarray(x)), w).backward(gy)
    np.testing.assert_array_equal(w.grad, exact(x.T, gy))

    head = nets.Parameter(rng.standard_normal((40, 1)).astype(np.float32))  # a value head
    h = nets.Tensor(rng.standard_normal((16, 40)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((16, 1)).astype(np.float32)
    F.linear(h, head).backward(g)
    np.testing.assert_array_equal(h.grad, exact(g, head.data.T))

    scalar_in = nets.Parameter(rng.standard_normal((1, 8)).astype(np.float32))
    inputs = rng.standard_normal((16, 1)).astype(np.float32)
    np.testing.assert_array_equal(F.linear(nets.Tensor(inputs), scalar_in).data, exact(inputs, scalar_in.data))


def test_a_weight_gradient_is_added_into_the_parameters_gradient_by_the_product(rng):
    """Linear's weight gradient is added into the parameter's gradient by BLAS as it is made
    (sgemm with beta = 1): what the gradient held is kept and each backward pass adds its
    product, from every operand layout, as check mode's separate product and add give it."""
    from nets.kernels import dense

    assert dense._sgemm() is not None  # NumPy's wheels ship OpenBLAS: the fast path is taken here
    x = rng.standard_normal((24, 300)).astype(np.float32)
    gy = rng.standard_normal((24, 200)).astype(np.float32)
    w = nets.Parameter(rng.standard_normal((300, 200)).astype(np.float32))
    w.grad[...] = 1.5
    for _ in range(2):
        F.linear(nets.Tensor(x), w).backward(gy)
    expected = 1.5 + 2 * (x.astype(np.float64).T @ gy)
    np.testing.assert_allclose(w.grad, expected, rtol=1e-5, atol=1e-4)
    checked = nets.Parameter(w.data.copy())
    checked.grad[...] = 1.5
    with nets.check_mode():
        for _ in range(2):
            F.linear(nets.Tensor(x), checked).backward(gy)
    np.testing.assert_allclose(w.grad, checked.grad, rtol=1e-5, atol=1e-4)

    start = rng.standard_normal((300, 200)).astype(np.float32)
    wide = rng.standard_normal((24, 600)).astype(np.float32)
    operands = {"rows": (np.ascontiguousarray(x.T), gy), "transposed": (x.T, np.ascontiguousarray(gy.T).T),
                "strided": (wide[:, ::2].T, gy[::-1]), "one inner": (x.T[:, :1], gy[:1]),
                "float64": (x.T.astype(np.float64), gy.astype(np.float64))}
    for name, (a, b) in operands.items():
        into = start.copy()
        dense.add_matmul(a, b, into)
        np.testing.assert_allclose(into, start + a.astype(np.float64) @ b, rtol=1e-5, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("layer", ["linear", "conv"])
def test_a_bias_gradient_is_added_into_the_parameters_gradient(rng, layer):
    """A bias's gradient, the sum of the output gradient's rows, is added into the parameter's
    gradient by the op (nets.functional.bias_gradient; one cuBLAS product on a GPU): what it held
    is kept and each backward pass adds its sum, as check mode's returned sum gives it."""
    if layer == "linear":
        x, shape = rng.standard_normal((6, 5)).astype(np.float32), (6, 4)
        weight = rng.standard_normal((5, 4)).astype(np.float32)
        forward = lambda b: F.linear(nets.Tensor(x), nets.Tensor(weight), b)  # noqa: E731
        sums = (0,)
    else:
        x, shape = rng.standard_normal((2, 3, 5, 5)).astype(np.float32), (2, 4, 3, 3)
        weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
        forward = lambda b: F.conv2d(nets.Tensor(x), nets.Tensor(weight), b)  # noqa: E731
        sums = (0, 2, 3)
    gy = rng.standard_normal(shape).astype(np.float32)
    grads = []
    for check in (False, True):
        b = nets.Parameter(np.zeros(4, np.float32))
        b.grad[...] = 1.5
        with nets.check_mode(check):
            for _ in range(2):
                forward(b).backward(gy)
        grads.append(b.grad)
    np.testing.assert_allclose(grads[0], 1.5 + 2 * gy.sum(axis=sums), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-6, atol=1e-6)

# -- shape ops -----------------------------------------------------------------------------------
def test_reshape_and_flatten(rng):
    x = t64(rng, 2, 3, 4)
    gradcheck(lambda: F.reshape(x, (4, 6)) * np.arange(24.0).reshape(4, 6), [x])
    gradcheck(lambda: F.reshape(x, -1), [x])
    gradcheck(lambda: x.reshape(6, 4), [x])
    assert F.flatten(x).shape == (2, 12)
    gradcheck(lambda: F.flatten(x), [x])


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1)])
def test_transpose(rng, axes):
    x = t64(rng, 2, 3, 4)
    gradcheck(lambda: F.transpose(x, axes), [x])
    np.testing.assert_array_equal(F.transpose(x, axes).data, x.data.transpose(axes))


def test_transpose_property(rng):
    x = t64(rng, 2, 3)
    gradcheck(lambda: x.T, [x])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concat(rng, axis):
    a, b, c = t64(rng, 2, 3), t64(rng, 2, 3), t64(rng, 2, 3)
    gradcheck(lambda: F.concat([a, b * 2.0, c], axis=axis), [a, b, c])


def test_concat_of_unequal_parts(rng):
    a, b = t64(rng, 2, 1), t64(rng, 2, 4)
    gradcheck(lambda: F.concat([a, b], axis=1), [a, b])


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_stack(rng, axis):
    a, b = t64(rng, 2, 3), t64(rng, 2, 3)
    gradcheck(lambda: F.stack([a, b, a * b], axis=axis), [a, b])


@pytest.mark.parametrize("index", [
    (slice(1, 3),), (slice(None), slice(None, None, 2)), 2, (1, -1),
    np.array([0, 2, 0, 0, 3]),  # integer array with repeats: gradients accumulate
    (np.array([0, 1, 1]), np.array([2, 0, 0])),  # paired integer arrays (what nll uses)
])
def test_getitem(rng, index):
    x = t64(rng, 4, 3)
    gradcheck(lambda: F.getitem(x, index), [x])
    np.testing.assert_array_equal(F.getitem(x, index).data, x.data[index])


def test_getitem_with_boolean_mask(rng):
    x = t64(rng, 4, 3)
    mask = x.data > 0.2
    gradcheck(lambda: x[mask], [x])


def test_getitem_repeated_indices_accumulate(rng):
    x = t64(rng, 3)
    x[np.array([1, 1, 1, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 3, 1])


# -- reductions ----------------------------------------------------------------------------------
AXES = [None, 0, 1, -1, (0, 2), (0, 1, 2)]


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", [F.sum, F.mean])
def test_sum_and_mean(rng, op, axis, keepdims):
    x = t64(rng, 2, 3, 4)
    gradcheck(lambda: op(x, axis=axis, keepdims=keepdims), [x])
    expected = (np.sum if op is F.sum else np.mean)(x.data, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(op(x, axis=axis, keepdims=keepdims).data, expected)


@pytest.mark.parametrize("axis", AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_max(rng, axis, keepdims):
    x = spaced(rng, 2, 3, 4)
    gradcheck(lambda: F.max(x, axis=axis, keepdims=keepdims), [x])
    np.testing.assert_array_equal(F.max(x, axis=axis, keepdims=keepdims).data,
                                  np.max(x.data, axis=axis, keepdims=keepdims))


def test_max_shares_gradient_among_ties():
    x = nets.Tensor(np.array([1.0, 3.0, 3.0, 2.0]), requires_grad=True)
    F.max(x).backward()
    np.testing.assert_array_equal(x.grad, [0, 0.5, 0.5, 0])


def test_tensor_method_reductions(rng):
    x = spaced(rng, 3, 4)
    gradcheck(lambda: x.sum(axis=1) + x.mean(axis=0).sum() + x.max(axis=1), [x])


# -- elementwise math and activations ------------------------------------------------------------
def _clip_safe(rng, low, high):
    """Values inside (low, high) and outside it, at least 0.1 from either bound."""
    data = rng.uniform(low - 2, high + 2, size=(4, 5))
    for bound in (low, high):
        near = np.abs(data - bound) < 0.1
        data[near] += 0.2 * np.sign(data[near] - bound + 1e-12)
    return nets.Tensor(data, requires_grad=True)


UNARY = {  # name: (op, input maker, NumPy reference or None)
    "exp": (F.exp, lambda r: t64(r, 3, 4), np.exp),
    "log": (F.log, lambda r: nets.Tensor(r.uniform(0.2, 3, (3, 4)), requires_grad=True), np.log),
    "sqrt": (F.sqrt, lambda r: nets.Tensor(r.uniform(0.2, 3, (3, 4)), requires_grad=True), np.sqrt),
    "abs": (F.abs, lambda r: t64(r, 3, 4, low=0.1), np.abs),
    "clip": (lambda x: F.clip(x, -0.5, 0.7), lambda r: _clip_safe(r, -0.5, 0.7),
             lambda x: np.clip(x, -0.5, 0.7)),
    "relu": (F.relu, lambda r: t64(r, 3, 4, low=0.1), lambda x: np.maximum(x, 0)),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.1), lambda r: t64(r, 3, 4, low=0.1),
                   lambda x: np.where(x > 0, x, 0.1 * x)),
    "sigmoid": (F.sigmoid, lambda r: t64(r, 3, 4), lambda x: 1 / (1 + np.exp(-x))),
    "hard_sigmoid": (F.hard_sigmoid, lambda r: _clip_safe(r, -2.5, 2.5),
                     lambda x: np.clip(0.2 * x + 0.5, 0, 1)),
    "tanh": (F.tanh, lambda r: t64(r, 3, 4), np.tanh),
    "softplus": (F.softplus, lambda r: t64(r, 3, 4), lambda x: np.log1p(np.exp(x))),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(rng, name):
    op, make, reference = UNARY[name]
    x = make(rng)
    gradcheck(lambda: op(x), [x])
    np.testing.assert_allclose(op(x).data, reference(x.data), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["sigmoid", "softplus", "tanh", "exp"])
def test_unary_keeps_float32(rng, name):
    op = UNARY[name][0]
    assert op(rng.standard_normal((2, 3)).astype(np.float32)).dtype == np.float32


def test_sigmoid_and_softplus_are_stable_for_large_inputs():
    x = np.array([-1000.0, 1000.0], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(F.sigmoid(x).data, [0, 1])
        np.testing.assert_allclose(F.softplus(x).data, [0, 1000])


@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("op", [F.softmax, F.log_softmax])
def test_softmax_and_log_softmax(rng, op, axis):
    x = t64(rng, 3, 4, 2)
    gradcheck(lambda: op(x, axis=axis), [x])
    e = np.exp(x.data - x.data.max(axis=axis, keepdims=True))
    probs = e / e.sum(axis=axis, keepdims=True)
    np.testing.assert_allclose(op(x, axis=axis).data, probs if op is F.softmax else np.log(probs),
                               rtol=1e-12, atol=1e-12)


def test_log_softmax_is_stable_for_large_logits():
    x = np.array([[1000.0, 0.0, -1000.0]])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        np.testing.assert_allclose(F.log_softmax(x).data, [[0, -1000, -2000]])


# -- losses --------------------------------------------------------------------------------------
def ref_cross_entropy(logits, labels, weights=None):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    picked = np.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    weights = np.ones_like(picked) if weights is None else weights
    return -(picked * weights).sum() / weights.sum()


def test_softmax_cross_entropy(rng):
    logits, labels = t64(rng, 5, 4), rng.integers(0, 4, 5)
    gradcheck(lambda: F.softmax_cross_entropy(logits, labels), [logits])
    assert F.softmax_cross_entropy(logits, labels).item() == pytest.approx(
        ref_cross_entropy(logits.data, labels))


def test_softmax_cross_entropy_batch_of_one(rng):
    logits = t64(rng, 1, 3)
    gradcheck(lambda: F.softmax_cross_entropy(logits, np.array([2])), [logits])


def test_softmax_cross_entropy_with_mask_weights_over_time(rng):
    logits, labels = t64(rng, 2, 3, 4), rng.integers(0, 4, (2, 3))
    weights = np.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # padded steps are masked out
    gradcheck(lambda: F.softmax_cross_entropy(logits, labels, weights), [logits])
    loss = F.softmax_cross_entropy(logits, labels, weights).item()
    assert loss == pytest.approx(ref_cross_entropy(logits.data, labels, weights))
    logits.grad = None
    F.softmax_cross_entropy(logits, labels, weights).backward()
    assert not logits.grad[0, 2].any() and not logits.grad[1, 1:].any()


def test_softmax_cross_entropy_is_stable_for_large_logits():
    logits = np.array([[1000.0, -1000.0]], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        assert F.softmax_cross_entropy(logits, np.array([1])).item() == pytest.approx(2000)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss(rng, reduction):
    log_probs, labels = t64(rng, 5, 3), rng.integers(0, 3, 5)
    gradcheck(lambda: F.nll_loss(log_probs, labels, reduction), [log_probs])
    per_item = -log_probs.data[np.arange(5), labels]
    expected = {"mean": per_item.mean(), "sum": per_item.sum(), "none": per_item}[reduction]
    np.testing.assert_allclose(F.nll_loss(log_probs, labels, reduction).data, expected)


def test_nll_of_log_softmax_equals_softmax_cross_entropy(rng):
    logits, labels = t64(rng, 6, 5), rng.integers(0, 5, 6)
    assert F.nll_loss(F.log_softmax(logits), labels).item() == pytest.approx(
        F.softmax_cross_entropy(logits, labels).item())


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(rng, reduction):
    prediction, target = t64(rng, 4, 3), t64(rng, 4, 3)
    gradcheck(lambda: F.mse_loss(prediction, target, reduction), [prediction, target])
    per_item = (prediction.data - target.data) ** 2
    expected = {"mean": per_item.mean(), "sum": per_item.sum(), "none": per_item}[reduction]
    np.testing.assert_allclose(F.mse_loss(prediction, target, reduction).data, expected)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("delta", [1.0, 0.3])
def test_huber_loss(rng, reduction, delta):
    target = t64(rng, 4, 5)
    d = rng.uniform(-3 * delta, 3 * delta, (4, 5))
    d[np.abs(np.abs(d) - delta) < 0.05 * delta] *= 1.2  # keep off the |d| = delta seam
    prediction = nets.Tensor(target.data + d, requires_grad=True)
    gradcheck(lambda: F.huber_loss(prediction, target, delta, reduction), [prediction, target])
    per_item = np.where(np.abs(d) <= delta, 0.5 * d * d, delta * (np.abs(d) - 0.5 * delta))
    expected = {"mean": per_item.mean(), "sum": per_item.sum(), "none": per_item}[reduction]
    np.testing.assert_allclose(F.huber_loss(prediction, target, delta, reduction).data, expected)


def test_unknown_reduction_is_named():
    with pytest.raises(ValueError, match="reduction must be"):
        F.mse_loss(np.zeros(2), np.zeros(2), reduction="avg")


# -- layer ops (their layers are checked in test_layers.py) --------------------------------------
@pytest.mark.parametrize("x_shape,w_shape,stride,padding", [
    ((2, 3, 7, 6), (4, 3, 3, 3), 1, 0),
    ((1, 2, 9, 9), (3, 2, 4, 4), 2, 1),  # batch 1, stride and padding
    ((2, 2, 8, 7), (2, 2, 3, 2), (2, 1), (0, 1)),  # rectangular kernel, per-axis stride/padding
])
def test_conv2d(rng, x_shape, w_shape, stride, padding):
    x, w, b = t64(rng, *x_shape), t64(rng, *w_shape), t64(rng, w_shape[0])
    gradcheck(lambda: F.conv2d(x, w, b, stride, padding), [x, w, b])
    gradcheck(lambda: F.conv2d(x, w, None, stride, padding), [x, w])


@pytest.mark.parametrize("op", [F.max_pool2d, F.avg_pool2d])
@pytest.mark.parametrize("kernel,stride", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_pool2d(rng, op, kernel, stride):
    x = spaced(rng, 2, 2, 7, 7)
    gradcheck(lambda: op(x, kernel, stride), [x])


def test_dropout_op(rng):
    x = t64(rng, 4, 5)

    def f():
        nets.seed(7)  # the same mask on every call
        return F.dropout(x, 0.4)
    gradcheck(f, [x])


def test_embedding_op(rng):
    weight = t64(rng, 5, 3)
    indices = np.array([[0, 4, 4], [1, 0, 0]])
    gradcheck(lambda: F.embedding(indices, weight), [weight])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_op(rng, training):
    x, gamma, beta = t64(rng, 6, 3, 2, 2), t64(rng, 3), t64(rng, 3)
    running_mean, running_var = rng.standard_normal(3), rng.uniform(0.5, 2, 3)
    gradcheck(lambda: F.batch_norm(x, gamma, beta, running_mean, running_var, training),
              [x, gamma, beta])
