"""The autodiff core: graph order, broadcasting, no_grad, freeing, multi-output ops, check mode."""
import gc
import weakref

import numpy as np
import pytest

import nets
from nets import F
from nets.gradcheck import gradcheck


def t64(rng, *shape, name=None):
    return nets.Tensor(rng.standard_normal(shape), requires_grad=True, name=name)


def test_shared_subexpression_gets_both_paths(rng):
    a, b = t64(rng, 3, 4), t64(rng, 4)
    gradcheck(lambda: F.tanh(a * b + a) / (F.exp(b) + 1.0), [a, b])
    gradcheck(lambda: F.softmax(a @ F.reshape(b, (4, 1)) * a, axis=0).sum(axis=1), [a, b])


def test_diamond_graph_hand_computed():
    x = nets.Tensor(np.array([2.0]), requires_grad=True)
    y = x * x
    z = y * x + y  # z = x^3 + x^2, dz/dx = 3x^2 + 2x = 16
    z.backward()
    assert x.grad[0] == pytest.approx(16.0)


@pytest.mark.parametrize("shape_a,shape_b", [((3, 4), (4,)), ((3, 1), (1, 5)), ((2, 3, 4), (3, 1)),
                                             ((1,), (2, 2)), ((1, 4), (1, 4))])
def test_broadcasting_gradients(rng, shape_a, shape_b):
    a, b = t64(rng, *shape_a), t64(rng, *shape_b)
    gradcheck(lambda: (a + b) * (a - b) / (b * b + 1.0), [a, b])


def test_no_grad_records_nothing(rng):
    a = t64(rng, 2, 2)
    with nets.no_grad():
        y = a * 2.0
    assert y.creator is None and not y.requires_grad
    assert nets.is_grad_enabled()


def test_graph_is_freed_after_backward(rng):
    a = t64(rng, 3)
    h = F.tanh(a)
    y = (h * 2.0).sum()
    fn_ref = weakref.ref(h.creator)
    del h
    y.backward()
    gc.collect()
    assert fn_ref() is None or not fn_ref().__dict__


def test_intermediate_gradients_are_not_kept(rng):
    a = t64(rng, 3)
    h = F.tanh(a)
    (h * 3.0).sum().backward()
    assert h.grad is None and a.grad is not None


def test_gradients_accumulate_across_backward_calls(rng):
    a = t64(rng, 3)
    (a * 2.0).sum().backward()
    (a * 3.0).sum().backward()
    np.testing.assert_allclose(a.grad, np.full(3, 5.0))


class _SplitHalves(nets.Function):
    """A two-output op, to test multi-output backward with one output unused."""

    def forward(self, x):
        n = x.shape[0] // 2
        return x[:n] * 2, x[n:] * 3

    def backward(self, g_first, g_second):
        return np.concatenate([g_first * 2, g_second * 3])


def test_multi_output_function_with_unused_output(rng):
    x = t64(rng, 4)
    first, second = _SplitHalves()(x)
    gradcheck(lambda: _SplitHalves()(x)[0], [x])
    x.grad = None
    first.sum().backward()
    np.testing.assert_allclose(x.grad, [2, 2, 0, 0])


def test_check_mode_names_op_and_layer():
    model = nets.Sequential(nets.Linear(4, 3), F.relu, nets.Linear(3, 2))
    bad = nets.Tensor(np.full((1, 4), np.inf, dtype=np.float32))
    with nets.check_mode(), pytest.raises(nets.NonFiniteError, match=r"NaN .* Linear, in layer 0 \(Linear\)"):
        model(bad)


def test_check_mode_catches_planted_log_zero():
    x = nets.Tensor(np.array([1.0, 0.0], dtype=np.float32), requires_grad=True)
    with nets.check_mode(), pytest.raises(nets.NonFiniteError, match="Inf first appeared in the output of Log"):
        F.log(x)
    with np.errstate(divide="ignore"):
        F.log(x)  # outside check mode the -inf passes silently


def test_check_mode_catches_nonfinite_gradient():
    x = nets.Tensor(np.array([0.0, 1.0], dtype=np.float32), requires_grad=True)
    y = F.sqrt(x).sum()  # finite output, infinite gradient at 0
    with nets.check_mode(), np.errstate(divide="ignore"), \
            pytest.raises(nets.NonFiniteError, match="gradient of Sqrt"):
        y.backward()


def test_float32_by_default():
    model = nets.Linear(3, 2)
    assert model.weight.dtype == np.float32
    y = model(np.ones((1, 3), dtype=np.float32))
    assert y.dtype == np.float32


def test_linear_is_time_distributed_over_leading_axes(rng):
    from nets.gradcheck import to_float64
    layer = to_float64(nets.Linear(4, 3))
    x = t64(rng, 2, 5, 4)
    assert layer(x).shape == (2, 5, 3)
    gradcheck(lambda: layer(x), [x] + layer.parameters())
