"""The GPU kernels' arithmetic, checked on the CPU: each CuPy kernel module runs on
tests/cuda_emulator.py (its CUDA C bodies compiled by g++ into loops over NumPy arrays) and is
compared with the CPU code it stands for.

Kernels that have run on a GPU (softmax cross-entropy, the optimizer rules, the embedding's
scatter-add) hold the emulator to account; the ones a GPU has not run yet (the dense epilogues,
the fused actor-critic loss) are held by it until one does (tests/test_gpu.py, gpu mark). The
emulator runs a kernel's threads one after another: races are not caught here.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import nets
from agents import losses_gpu
from agents.losses import ActorCriticLoss, floats
from nets import F, backend
from nets.kernels import dense, dense_gpu, embedding, optim as optim_kernels, optim_gpu, softmax_gpu

BUILDERS = [dense_gpu._kernels, losses_gpu._kernels, softmax_gpu._kernels, optim_gpu._kernels,
            embedding._scatter_add_gpu]  # each module's cached kernels


@pytest.fixture
def emulated(monkeypatch):
    """The GPU kernel modules built on the emulator, for this test only."""
    if shutil.which("g++") is None:
        pytest.skip("needs a C++ compiler (g++)")
    from cuda_emulator import EmulatedCuPy
    monkeypatch.setattr(backend, "cupy_module", EmulatedCuPy)
    for build in BUILDERS:
        build.cache_clear()
    yield
    for build in BUILDERS:  # a GPU machine's next use builds the real ones again
        build.cache_clear()


@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_dense_epilogue_kernels_compute_what_the_cpu_does(emulated, rng, activation):
    y, b, gy = (rng.standard_normal(shape).astype(np.float32) for shape in ((6, 5), (5,), (6, 5)))
    for bias in (b, None):
        got = y.copy()
        dense_gpu.bias_activation(got, bias, activation)
        want = dense.bias_activation(y.copy(), bias, activation)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
        if activation:
            np.testing.assert_allclose(dense_gpu.activation_gradient(gy, want, activation),
                                       dense.activation_gradient(gy, want, activation), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("given_advantages", [False, True], ids=["R-V", "V-trace's"])
def test_fused_actor_critic_loss_computes_what_the_cpu_op_does(emulated, rng, given_advantages):
    """Loss, statistics and gradients of 6 steps of 4 actions and 2 bootstrap rows after them."""
    logits, values = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    actions, returns = rng.integers(0, 4, 6), rng.standard_normal(6).astype(np.float32)
    advantages = rng.standard_normal(6).astype(np.float32) if given_advantages else None
    beta, value_coef = np.float32(0.01), np.float32(0.5)
    op = ActorCriticLoss(actions, returns, beta, value_coef, advantages)
    tensors = [nets.Tensor(a, requires_grad=True) for a in (logits, values)]
    loss = op(*tensors)
    stats = floats(op.stats)
    (loss * 3.0).backward()
    fused_loss, fused_stats, saved = losses_gpu.forward(logits, values, returns, actions, advantages, beta, value_coef)
    gradients = losses_gpu.backward(saved, np.array(3.0, np.float32), logits.shape, values.shape, beta, value_coef)
    assert float(fused_loss) == pytest.approx(float(loss.data), rel=1e-5)
    assert floats(fused_stats) == pytest.approx(stats, rel=1e-5)
    for name, got, tensor in zip(("logits", "values"), gradients, tensors):
        np.testing.assert_allclose(got, tensor.grad, rtol=1e-5, atol=1e-6, err_msg=name)
        assert not got[6:].any(), f"{name}: a bootstrap row got a gradient"


@pytest.mark.parametrize("weighted", [False, True])
def test_softmax_cross_entropy_kernels_compute_what_the_cpu_does(emulated, rng, weighted):
    logits, labels = rng.standard_normal((9, 13)).astype(np.float32) * 3, rng.integers(0, 13, 9)
    weights = (rng.random(9) > 0.3).astype(np.float32) if weighted else np.ones(9, np.float32)
    scale = weights / weights.sum()  # as SoftmaxCrossEntropy weighs the rows
    x = nets.Tensor(logits, requires_grad=True)
    loss = F.softmax_cross_entropy(x, labels, weights if weighted else None)
    loss.backward()
    probs, nll = softmax_gpu.forward(logits, labels)
    assert float(nll @ scale) == pytest.approx(float(loss.data), rel=1e-5)
    gy = np.ones((), np.float32)
    np.testing.assert_allclose(softmax_gpu.backward(probs, labels, scale, gy), x.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("out_of_place", [False, True], ids=["in-place", "out-of-place"])
def test_optimizer_kernels_compute_what_the_cpu_ones_do(emulated, monkeypatch, out_of_place):
    from test_gpu import RULES, _optimized  # the GPU test's cases: one per kernel branch

    for rule in RULES:
        want, want_state = _optimized(rule, "cpu")
        with monkeypatch.context() as patched:
            patched.setattr(optim_kernels, "for_array", lambda name, x: getattr(optim_gpu, name))
            got, got_state = _optimized(rule, "cpu", out_of_place=out_of_place)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=rule)
        for name, vector in want_state.items():
            np.testing.assert_allclose(got_state[name], vector, rtol=1e-5, atol=1e-6, err_msg=f"{rule}: {name}")
    grad = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    assert optim_gpu.sum_of_squares(grad) == pytest.approx(float((grad.astype(np.float64) ** 2).sum()))


def test_embedding_scatter_add_kernel_accumulates_repeats_as_the_cpu_does(emulated, rng):
    table = rng.standard_normal((20, 3)).astype(np.float32)
    indices, rows = rng.integers(0, 20, 100), rng.standard_normal((100, 3)).astype(np.float32)
    emulated_table = table.copy()
    embedding._scatter_add_gpu()(rows, indices, table.shape[1], emulated_table)
    embedding.scatter_add(table, indices, rows)
    np.testing.assert_allclose(emulated_table, table, rtol=1e-5, atol=1e-5)
