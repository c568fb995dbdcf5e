"""CapturedGradients (nets/capture.py): what a call computes, when it captures, replays and checks,
and when it falls back to eager calls, held on the CPU with stand-in graphs. The CUDA graph itself
is checked in tests/test_gpu.py (gpu mark)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import nets
from nets import F, capture
from nets.kernels import workspace


def _mlp():
    nets.seed(0)
    return nets.Sequential(nets.Linear(5, 6, activation="tanh"), nets.Linear(6, 3))


def _batch(seed, n=4):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 5)).astype(np.float32), rng.integers(0, 3, n)


def _classifier_loss(model):
    def loss_fn(x, y):
        logits = model(x)
        return F.softmax_cross_entropy(logits, y), logits
    return loss_fn


def _eager(model, x, y):
    """The loss, logits and gradient of a plain call, on a copy of the model's weights."""
    reference = _mlp()
    reference.flat().data[...] = model.flat().data
    reference.zero_grad()
    logits = reference(x)
    loss = F.softmax_cross_entropy(logits, y)
    loss.backward()
    return loss.data, logits.data, reference.flat().grad.copy()


class ReplayingGraph:
    """Stands in for a CUDA graph that replays faithfully: each launch reruns the captured call
    and writes its results into the outputs the capture returned (the same arrays every time).
    As in a capture, which launches nothing, the model's gradient and buffers are left as they were."""

    def __init__(self, run, model):
        state = [model.flat().grad, *(b for _, b in model.named_buffers())]
        before = [a.copy() for a in state]
        self.run, self.outputs = run, run()
        for a, value in zip(state, before):
            a[...] = value

    def launch(self):
        for out, value in zip(self.outputs, self.run()):
            out[...] = value


class FrozenGraph(ReplayingGraph):
    """Stands in for a graph that baked in what it should read at each call (a host number, the
    inputs): every launch gives the captured call's results again."""

    def __init__(self, run, model):
        self.grad = model.flat().grad

        def run_and_keep_the_gradient():
            outputs = run()
            self.captured_grad = self.grad.copy()
            return outputs
        super().__init__(run_and_keep_the_gradient, model)

    def launch(self):
        self.grad[...] = self.captured_grad


class Graphs:
    def __init__(self, model, graph=ReplayingGraph, error=None):
        self.model, self.graph, self.error, self.captures = model, graph, error, 0

    def capture(self, run):
        self.captures += 1
        if self.error is not None:
            raise self.error
        return self.graph(run, self.model)


def _captured(model, loss_fn=None, max_graphs=capture.MAX_GRAPHS, **graphs):
    gradients = nets.CapturedGradients(model, loss_fn or _classifier_loss(model), max_graphs=max_graphs)
    gradients._graphs = Graphs(model, **graphs)  # as on a GPU, with a stand-in graph
    gradients.eager_reason = None
    return gradients


def test_on_the_cpu_a_call_is_the_eager_loss_its_outputs_and_the_gradient():
    model = _mlp()
    gradients = nets.CapturedGradients(model, _classifier_loss(model))
    x, y = _batch(1)
    loss, logits = gradients(x, y)
    want_loss, want_logits, want_grad = _eager(model, x, y)
    assert gradients.eager_reason == "no GPU" and not gradients.replaying
    np.testing.assert_array_equal(loss, want_loss)
    np.testing.assert_array_equal(logits, want_logits)
    np.testing.assert_array_equal(model.flat().grad, want_grad)
    gradients(x, y)  # the gradient is zeroed first, not accumulated
    np.testing.assert_array_equal(model.flat().grad, want_grad)


def test_a_graph_is_captured_on_the_second_call_checked_twice_then_replayed():
    model = _mlp()
    gradients = _captured(model)
    optimizer = nets.optim.SGD(model, lr=0.1)
    outputs = []
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="CapturedGradients")  # a fall-back warns
        for call in range(6):
            x, y = _batch(call)
            want_loss, want_logits, want_grad = _eager(model, x, y)
            loss, logits = gradients(x, y)
            np.testing.assert_allclose(loss, want_loss, rtol=1e-6)
            np.testing.assert_allclose(logits, want_logits, rtol=1e-6)
            np.testing.assert_allclose(model.flat().grad, want_grad, rtol=1e-6, atol=1e-7)
            outputs.append(loss)
            assert gradients._graphs.captures == (0 if call == 0 else 1)
            assert gradients.replaying == (call >= 2)  # the second check passed
            optimizer.step()  # the weights change between calls; the graph reads them in place
    assert gradients.eager_reason is None
    assert outputs[3] is outputs[4] is outputs[5]  # a replay's outputs are the graph's own arrays


def test_a_replay_that_differs_from_the_eager_run_falls_back_with_a_warning():
    model = _mlp()
    gradients = _captured(model, graph=FrozenGraph)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for call in range(5):
            x, y = _batch(call)
            want_loss, _, want_grad = _eager(model, x, y)
            loss, _ = gradients(x, y)
            np.testing.assert_allclose(loss, want_loss, rtol=1e-6)  # the eager run's results are kept
            np.testing.assert_allclose(model.flat().grad, want_grad, rtol=1e-6, atol=1e-7)
    assert [str(w.message) for w in caught] == [f"CapturedGradients: {gradients.eager_reason}; running eagerly"]
    assert "differs from an eager run's" in gradients.eager_reason and not gradients.replaying
    assert gradients._graphs.captures == 1


def test_a_capture_that_fails_falls_back_with_a_warning_naming_the_error():
    model = _mlp()
    gradients = _captured(model, error=RuntimeError("operation not permitted when stream is capturing"))
    gradients(*_batch(0))
    x, y = _batch(1)
    with pytest.warns(RuntimeWarning, match="capture failed .RuntimeError: operation not permitted"):
        loss, _ = gradients(x, y)
    np.testing.assert_allclose(loss, _eager(model, x, y)[0], rtol=1e-6)
    gradients(*_batch(2))
    assert gradients._graphs.captures == 1


def test_moved_parameters_and_new_shapes_get_their_own_graphs_up_to_a_limit():
    model = _mlp()
    gradients = _captured(model)
    graphs = gradients._graphs
    for call in range(4):
        gradients(*_batch(call))
    model.flat().rebind(data=model.flat().data.copy())  # e.g. another weight slot: stale addresses
    for call in range(4):
        x, y = _batch(call)
        np.testing.assert_allclose(gradients(x, y)[0], _eager(model, x, y)[0], rtol=1e-6)
    assert graphs.captures == 2
    for n in range(5, 5 + capture.MAX_GRAPHS):  # each batch size is a signature of its own
        for call in range(2):
            x, y = _batch(call, n)
            np.testing.assert_allclose(gradients(x, y)[0], _eager(model, x, y)[0], rtol=1e-6)
    assert graphs.captures == capture.MAX_GRAPHS  # signatures beyond the limit run eagerly


def test_a_caller_may_allow_more_graphs():
    model = _mlp()
    gradients = _captured(model, max_graphs=capture.MAX_GRAPHS + 2)
    for n in range(2, 2 + capture.MAX_GRAPHS + 3):
        for call in range(2):
            x, y = _batch(call, n)
            np.testing.assert_allclose(gradients(x, y)[0], _eager(model, x, y)[0], rtol=1e-6)
    assert gradients._graphs.captures == capture.MAX_GRAPHS + 2


def test_a_checked_replay_updates_running_statistics_once_per_call():
    def net():
        nets.seed(0)
        return nets.Sequential(nets.Conv2D(2, 3, 3), nets.BatchNorm(3), nets.Flatten(), nets.Linear(12, 2))

    model, reference = net(), net()
    gradients = _captured(model, lambda x: model(x).sum())
    for call in range(4):
        x = np.random.default_rng(call).standard_normal((3, 2, 4, 4)).astype(np.float32)
        gradients(x)
        reference(x).sum().backward()
    for (name, got), (_, want) in zip(model.named_buffers(), reference.named_buffers()):
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=name)


def test_inputs_must_be_arrays_on_either_device():
    model = _mlp()
    x, y = _batch(0)
    for gradients in (_captured(model), nets.CapturedGradients(model, _classifier_loss(model))):
        with pytest.raises(TypeError, match="takes arrays, not float: pass a number that changes"):
            gradients(x, 0.5)


def test_unpooled_scratch_is_neither_taken_from_nor_kept_by_the_pool():
    shape = (7, 3, 5)
    pooled = workspace.take(np, shape, np.float32)
    pooled_id = id(pooled)
    del pooled  # free again, kept by the pool
    with workspace.unpooled():
        scratch = workspace.take(np, shape, np.float32)
        assert id(scratch) != pooled_id
    again = workspace.take(np, shape, np.float32)
    assert id(again) == pooled_id
    assert len(workspace._pool[(shape, np.dtype(np.float32).str, "numpy")]) == 1
