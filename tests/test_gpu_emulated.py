"""The GPU kernels' arithmetic, checked on the CPU: each CuPy kernel module runs on
tests/cuda_emulator.py (its CUDA C bodies compiled by g++ into loops over NumPy arrays) and is
compared with the CPU code it stands for.

Kernels that have run on a GPU (softmax cross-entropy, the optimizer rules, the embedding's
scatter-add) hold the emulator to account; the ones a GPU has not run yet (the dense epilogues,
the fused actor-critic loss) are held by it until one does (tests/test_gpu.py, gpu mark). The
emulator runs a kernel's threads one after another: races are not caught here. The products'
ctypes calls into cuBLAS run against a stand-in library of the same four functions.
"""
from __future__ import annotations

import shutil
import subprocess
import types

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


# cuBLAS's four entry points that blas_gpu calls through ctypes, on host memory: sgemm as its
# reference (column-major, op N or T, alpha and beta read through host pointers). As in cuBLAS,
# setting the stream drops the workspace: a product without one set after it fails here.
FAKE_CUBLAS = r"""
#include <cstddef>
static bool workspace_set = false;
extern "C" {
int cublasSetStream_v2(void*, void*) { workspace_set = false; return 0; }
int cublasSetWorkspace_v2(void*, void* workspace, size_t bytes) {
  workspace_set = workspace && bytes;
  return workspace_set ? 0 : 7;
}
int cublasSetPointerMode_v2(void*, int mode) { return mode == 0 ? 0 : 7; }
int cublasSgemm_v2(void*, int ta, int tb, int m, int n, int k, const float* alpha, const float* A, int lda,
                   const float* B, int ldb, const float* beta, float* C, int ldc) {
  if (!workspace_set) return 7;
  for (int j = 0; j < n; ++j)
    for (int i = 0; i < m; ++i) {
      float sum = 0;
      for (int p = 0; p < k; ++p)
        sum += (ta ? A[p + i * lda] : A[i + p * lda]) * (tb ? B[j + p * ldb] : B[p + j * ldb]);
      C[i + j * ldc] = *alpha * sum + (*beta == 0 ? 0 : *beta * C[i + j * ldc]);
    }
  return 0;
}
}
"""


class _HostArray(np.ndarray):
    """A NumPy array that answers `.data.ptr` as a CuPy array does (its address)."""

    @property
    def data(self):
        return type("Pointer", (), {"ptr": self.ctypes.data})()


def test_products_call_cublas_through_ctypes_with_its_arguments_in_order(monkeypatch, tmp_path, rng):
    """blas_gpu's ctypes path end to end against a stand-in libcublas (sgemm's reference on host
    memory): argument types and order, ops, leading dimensions, alpha/beta, the workspace; on
    every operand layout test_gpu.py checks, a broadcast operand and a column-major output."""
    if shutil.which("g++") is None:
        pytest.skip("needs a C++ compiler (g++)")
    from test_gpu import _product_cases

    from nets.kernels import blas_gpu

    source, library = tmp_path / "cublas.cpp", tmp_path / "libcublas.so.12"
    source.write_text(FAKE_CUBLAS)
    subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(library), str(source)], check=True)

    def host(x):
        return np.asarray(x, dtype=np.float32).view(_HostArray)

    workspaces = []  # alive for the test, as the Memory it stands for lives for the process

    def memory(size):
        workspaces.append(np.empty(size, np.uint8))
        return types.SimpleNamespace(ptr=workspaces[-1].ctypes.data)

    fake = types.SimpleNamespace(
        asarray=host, empty=lambda shape, dtype: np.empty(shape, dtype).view(_HostArray),
        ascontiguousarray=lambda x: np.ascontiguousarray(x).view(_HostArray),
        cuda=types.SimpleNamespace(device=types.SimpleNamespace(get_cublas_handle=lambda: 1),
                                   get_current_stream=lambda: types.SimpleNamespace(ptr=0),
                                   memory=types.SimpleNamespace(Memory=memory)))
    monkeypatch.setattr(backend, "cupy_module", lambda: fake)
    monkeypatch.setattr(blas_gpu, "cublas_path", lambda maps: str(library))
    blas_gpu._sgemm.cache_clear()
    try:
        for name, add, a, b, out in _product_cases(rng, fake):
            want = np.asarray(a) @ np.asarray(b) + (np.asarray(out) if add else 0)
            blas_gpu.matmul(a, b, out, add=add)
            np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5, err_msg=name)
        a = np.broadcast_to(np.arange(4, dtype=np.float32), (3, 4)).view(_HostArray)
        out = host(np.ones((2, 3))).T
        blas_gpu.matmul(a, host(np.ones((4, 2))), out, add=True)
        np.testing.assert_array_equal(out, np.full((3, 2), 7, np.float32))
    finally:
        blas_gpu._sgemm.cache_clear()  # a GPU machine's next use finds the real library
