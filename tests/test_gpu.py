"""The GPU path held against the CPU in float32: every layer's forward and backward, the fused
optimizer, recurrent, softmax cross-entropy and embedding kernels, and a GPU learner.

Each layer case builds the same model twice from one seed, runs the same inputs forward on each
device, backpropagates the same random output weighting and compares outputs, parameter gradients
and input gradients, after asserting that every one of them was computed on the device asked for
(a layer that fell back to the host would otherwise compare the CPU with itself). The harness
also runs CPU against CPU (no `gpu` mark), so that a broken case shows up on a machine without a
GPU instead of only on one with a GPU; it proves the harness, not the GPU path.
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import nets
from nets import F, backend
from nets.kernels import optim as K

TOLERANCE = dict(rtol=2e-4, atol=2e-5)  # float32; the GPU contracts to FMAs, sums in another order


def _floats(*shape):
    return ("float", shape)


def _ints(high, *shape):
    return ("int", shape, high)


def _mask(batch, time):
    mask = np.ones((batch, time), np.float32)
    mask[0, time - 2:] = 0  # padding at the end of one row
    return mask


def _localised_transformer():
    localisation = nets.Sequential(nets.Flatten(), nets.Linear(3 * 6 * 6, 8), F.tanh)
    return nets.SpatialTransformer(localisation, 8, output_size=4)


# name -> (model factory, inputs, call(model, *inputs) or None for model(*inputs))
LAYERS = {
    "linear": (lambda: nets.Linear(6, 5), [_floats(4, 6)], None),
    "linear-tanh": (lambda: nets.Linear(6, 5, activation="tanh"), [_floats(4, 6)], None),
    "linear-relu": (lambda: nets.Linear(6, 5, activation="relu"), [_floats(4, 6)], None),
    "conv-relu-padded": (lambda: nets.Conv2D(3, 4, 3, padding=1, activation="relu"), [_floats(2, 3, 8, 8)], None),
    "conv-a3c-first": (lambda: nets.Conv2D(4, 16, 8, stride=4), [_floats(2, 4, 36, 36)], None),
    "max-pool": (lambda: nets.MaxPool2D(2), [_floats(2, 3, 8, 8)], None),
    "avg-pool": (lambda: nets.AvgPool2D(3, stride=2), [_floats(2, 3, 9, 9)], None),
    "global-avg-pool": (lambda: nets.GlobalAvgPool(), [_floats(2, 3, 5, 5)], None),
    "batch-norm": (lambda: nets.BatchNorm(3), [_floats(4, 3, 5, 5)], None),
    "embedding": (lambda: nets.Embedding(10, 4), [_ints(10, 3, 5)], None),
    "lstm": (lambda: nets.LSTM(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x)[0]),
    "lstm-masked-reverse": (lambda: nets.LSTM(5, 6), [_floats(3, 7, 5)],
                            lambda m, x: m(x, mask=_mask(3, 7), reverse=True)[0]),
    "lstm-2-layers": (lambda: nets.LSTM(5, 6, num_layers=2), [_floats(3, 4, 5)], lambda m, x: m(x)[0]),
    "lstm-cell-peepholes": (lambda: nets.LSTMCell(5, 6, peepholes=True), [_floats(3, 5)],
                            lambda m, x: m(x)[0]),
    "gru": (lambda: nets.GRU(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x)[0]),
    "gru-masked": (lambda: nets.GRU(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x, mask=_mask(3, 7))[0]),
    "gru-cell": (lambda: nets.GRUCell(5, 6), [_floats(3, 5)], lambda m, x: m(x)[0]),
    "rnn": (lambda: nets.RNN(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x)[0]),
    "bidirectional-lstm": (lambda: nets.LSTM(5, 6, bidirectional=True), [_floats(3, 7, 5)],
                           lambda m, x: m(x)[0]),
    "deep-transition": (lambda: nets.DeepTransitionRNN(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x)[0]),
    "rhn": (lambda: nets.RHN(5, 6), [_floats(3, 7, 5)], lambda m, x: m(x)[0]),
    "highway": (lambda: nets.Highway(6), [_floats(4, 6)], None),
    "dot-attention": (lambda: nets.DotAttention(4, 6, scaled=True), [_floats(2, 3, 4), _floats(2, 5, 6)],
                      lambda m, q, k: m(q, k)[0]),
    "additive-attention": (lambda: nets.AdditiveAttention(4, 6, 5), [_floats(2, 3, 4), _floats(2, 5, 6)],
                           lambda m, q, k: m(q, k)[0]),
    "conv-transpose": (lambda: nets.ConvTranspose2D(3, 2, 3, stride=2), [_floats(2, 3, 5, 5)], None),
    "upsample": (lambda: nets.Upsample(2), [_floats(2, 3, 4, 4)], None),
    "spatial-transformer": (_localised_transformer, [_floats(2, 3, 6, 6)], None),
    "residual-block": (lambda: nets.ResidualBlock(3, 4, stride=2), [_floats(2, 3, 8, 8)], None),
    "dense-block": (lambda: nets.DenseBlock(3, 2, 2), [_floats(2, 3, 6, 6)], None),
    "ntm": (lambda: nets.NTM(4, 3, controller_size=8, memory_size=6, memory_width=5),
            [_floats(2, 3, 4)], lambda m, x: m(x)[0]),
    "memory-network": (lambda: nets.MemoryNetwork(12, dim=6, hops=2, memories=4, words=3),
                       [_ints(12, 2, 4, 3), _ints(12, 2, 3)], None),
    "seq2seq": (lambda: nets.Seq2Seq(9, 8, embed=5, hidden=6), [_ints(9, 2, 4), _ints(8, 2, 3)], None),
}


def _inputs(specs, rng):
    arrays = []
    for spec in specs:
        if spec[0] == "float":
            arrays.append(rng.standard_normal(spec[1]).astype(np.float32))
        else:
            arrays.append(rng.integers(0, spec[2], spec[1]))
    return arrays


def _run_layer(name: str, device: str):
    """(output, {parameter: gradient}, [input gradients]) as host arrays."""
    factory, specs, call = LAYERS[name]
    nets.seed(3)
    model = factory().to(device)
    model.train()
    rng = np.random.default_rng(5)
    arrays = _inputs(specs, rng)
    tensors = [nets.Tensor(backend.to_device(a, device), requires_grad=a.dtype.kind == "f") for a in arrays]
    out = call(model, *tensors) if call else model(*tensors)
    if isinstance(out, tuple):
        out = out[0]
    weighting = np.random.default_rng(7).standard_normal(out.shape).astype(np.float32)
    F.sum(out * backend.to_device(weighting, device)).backward()
    parameters = dict(model.named_parameters())
    computed = [out.data, *(p.data for p in parameters.values()), *(p.grad for p in parameters.values()),
                *(t.grad for t in tensors if t.requires_grad)]
    assert {backend.device_of(a) for a in computed} == {device}, f"{name}: not all on the {device}"
    grads = {n: backend.to_host(p.grad) for n, p in parameters.items()}
    inputs = [backend.to_host(t.grad) for t in tensors if t.requires_grad]
    return backend.to_host(out.data), grads, inputs


def _compare_layer(name: str, device: str) -> None:
    out, grads, inputs = _run_layer(name, "cpu")
    other_out, other_grads, other_inputs = _run_layer(name, device)
    np.testing.assert_allclose(other_out, out, **TOLERANCE, err_msg=f"{name}: output")
    for parameter, grad in grads.items():
        np.testing.assert_allclose(other_grads[parameter], grad, **TOLERANCE,
                                   err_msg=f"{name}: gradient of {parameter}")
    for i, (a, b) in enumerate(zip(other_inputs, inputs)):
        np.testing.assert_allclose(a, b, **TOLERANCE, err_msg=f"{name}: gradient of input {i}")


@pytest.mark.parametrize("name", LAYERS)
def test_layer_harness_is_deterministic_on_the_cpu(name):
    _compare_layer(name, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("name", LAYERS)
def test_layer_on_gpu_matches_cpu(name):
    _compare_layer(name, "gpu")


# -- the fused kernels, against the CPU kernels ---------------------------------------------------
RULES = {  # optimizer class and settings; each configuration reaches a different kernel branch
    "sgd": (nets.optim.SGD, dict(lr=0.1, weight_decay=0.01)),
    "nesterov": (nets.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, l1=0.001)),
    "adagrad": (nets.optim.Adagrad, dict(lr=0.1)),
    "adadelta": (nets.optim.AdaDelta, dict(lr=1.0)),
    "rmsprop-centered": (nets.optim.RMSProp, dict(lr=0.01, centered=True)),
    "rmsprop-a3c": (nets.optim.RMSProp, dict(lr=0.01, alpha=0.99, eps=0.1, eps_inside_sqrt=True)),
    "adam": (nets.optim.Adam, dict(lr=0.01, weight_decay=0.001)),
    "sign-adaptive": (nets.optim.SignAdaptive, dict(lr=0.01)),
}


def _optimized(rule: str, device: str, steps: int = 4, out_of_place: bool = False):
    """Parameters and state after `steps` steps; out of place, each step writes into the vector
    the step before left (as the learner steps into a free weight slot), which must not change."""
    cls, settings = RULES[rule]
    nets.seed(0)
    model = nets.Linear(300, 40).to(device)
    optimizer = cls(model, **settings)
    rng = np.random.default_rng(11)
    spare = model.flat().data.copy()
    for _ in range(steps):
        model.flat().grad[...] = backend.to_device(rng.standard_normal(len(model.flat())).astype(np.float32), device)
        if out_of_place:
            old, before = model.flat().data, backend.to_host(model.flat().data)
            optimizer.step(into=spare)
            np.testing.assert_array_equal(backend.to_host(old), before)
            assert model.flat().data is spare
            spare = old
        else:
            optimizer.step()
    return backend.to_host(model.flat().data), {n: backend.to_host(v) for n, v in optimizer.state.items()}


@pytest.mark.gpu
@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("out_of_place", [False, True], ids=["in-place", "out-of-place"])
def test_gpu_optimizer_kernel_matches_cpu(rule, out_of_place):
    params, state = _optimized(rule, "cpu")
    gpu_params, gpu_state = _optimized(rule, "gpu", out_of_place=out_of_place)
    np.testing.assert_allclose(gpu_params, params, rtol=1e-5, atol=1e-6)
    for name, vector in state.items():
        np.testing.assert_allclose(gpu_state[name], vector, rtol=1e-5, atol=1e-6, err_msg=name)


def _column_major(x, rows, cols, ld):
    """The (rows, cols) column-major matrix with leading dimension ld that cuBLAS reads at x's
    first element."""
    return np.lib.stride_tricks.as_strided(x, shape=(rows, cols), strides=(4, 4 * ld))


def _sgemm_as_cublas_would(a, b, out, add):
    """out (+)= a @ b as sgemm computes it from blas_gpu.gemm_arguments, on host memory."""
    from nets.kernels import blas_gpu
    op_b, op_a, n, m, k, ldb, lda, ldo = blas_gpu.gemm_arguments(a, b, out)
    b_op = _column_major(b, k, n, ldb).T if op_b else _column_major(b, n, k, ldb)  # (n, k)
    a_op = _column_major(a, m, k, lda).T if op_a else _column_major(a, k, m, lda)  # (k, m)
    c = _column_major(out, n, m, ldo)
    c[...] = b_op @ a_op + (c if add else 0)


def _same(x):
    return x


def _transposed(x):
    return x.T


# name -> (a's base shape, a = view(base), b's base shape, b = view(base)): a (6, 4) or (6, 1)
PRODUCT_OPERANDS = {
    "row-major": ((6, 4), _same, (4, 5), _same),
    "a transposed": ((4, 6), _transposed, (4, 5), _same),
    "b transposed": ((6, 4), _same, (5, 4), _transposed),
    "both transposed, rows apart": ((4, 6), _transposed, (6, 9), lambda x: x[:4, :5]),
    "a's rows apart": ((6, 9), lambda x: x[:, 2:6], (4, 5), _same),
    "one row": ((1, 4), _same, (4, 5), _same),
    "inner dimension 1": ((1, 6), _transposed, (1, 5), _same),
}


def _product_cases(rng, xp):
    """(name, add, a, b, out) for every PRODUCT_OPERANDS entry, writing and adding, into a
    row-major output with and without rows apart; the same values on either array module."""
    def floats(*shape):
        return xp.asarray(rng.standard_normal(shape).astype(np.float32))

    for name, (a_shape, a_view, b_shape, b_view) in PRODUCT_OPERANDS.items():
        for add, apart in ((False, False), (True, False), (False, True), (True, True)):
            a, b = a_view(floats(*a_shape)), b_view(floats(*b_shape))
            out = floats(a.shape[0], b.shape[1] + 3 * apart)[:, :b.shape[1]]
            yield f"{name}, add={add}, out rows apart={apart}", add, a, b, out


def test_gemm_arguments_describe_each_operand_as_cublas_reads_it(rng):
    """The GPU product's arguments, checked on the CPU by reading host memory the way sgemm
    reads device memory: row-major operands, transposed views (a weight gradient's x^T), rows
    further apart than their length, and a row-major output, written or added into."""
    from nets.kernels import blas_gpu

    for name, add, a, b, out in _product_cases(rng, np):
        want = a @ b + (out if add else 0)
        _sgemm_as_cublas_would(a, b, out, add)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5, err_msg=name)
    a, b = np.ones((3, 4), np.float32), np.ones((4, 2), np.float32)
    out = np.empty((3, 2), np.float32)
    assert blas_gpu.gemm_arguments(np.broadcast_to(a[:1], (3, 4)), b, out) is None
    assert blas_gpu.gemm_arguments(a, b, out.T.copy().T) is None  # cuBLAS writes a row-major output here
    assert blas_gpu.gemm_arguments(a.astype(np.float64), b, out) is None
    assert blas_gpu.gemm_arguments(np.ones((3, 8), np.float32)[:, ::2], b, out) is None


def test_the_cublas_library_is_the_one_libcublas_file_mapped():
    """blas_gpu calls sgemm through ctypes on the libcublas this process has loaded (CuPy's):
    found in /proc/self/maps, cuBLASLt told apart, and none chosen where two files are mapped."""
    from nets.kernels import blas_gpu

    def mapped(*paths):
        return "".join(f"7f00-7f10 r-xp 00000000 fd:01 {i} {path}\n" for i, path in enumerate(paths))

    cublas = "/opt/cuda/lib64/libcublas.so.12.8.4.1"
    lt = "/opt/cuda/lib64/libcublasLt.so.12.8.4.1"
    assert blas_gpu.cublas_path(mapped(lt, cublas, cublas, "/usr/lib/libc.so.6")) == cublas
    from_pip = "/site/nvidia/cublas/lib/libcublas.so.13"
    assert blas_gpu.cublas_path(mapped(from_pip)) == from_pip
    assert blas_gpu.cublas_path(mapped(lt)) is None
    assert blas_gpu.cublas_path(mapped(cublas, "/site/torch/lib/libcublas.so.12")) is None


@pytest.mark.gpu
def test_gpu_products_match_numpy(rng):
    """blas_gpu.matmul, writing and adding, on every operand layout of the CPU check above, a
    broadcast operand and a column-major output (both through a copy)."""
    from nets.kernels import blas_gpu

    cp = backend.cupy_module()
    for name, add, a, b, out in _product_cases(rng, cp):
        want = backend.to_host(a) @ backend.to_host(b) + (backend.to_host(out) if add else 0)
        blas_gpu.matmul(a, b, out, add=add)
        np.testing.assert_allclose(backend.to_host(out), want, **TOLERANCE, err_msg=name)
    a, b = cp.broadcast_to(cp.arange(4, dtype=cp.float32), (3, 4)), cp.ones((4, 2), cp.float32)
    out = cp.ones((2, 3), cp.float32).T
    blas_gpu.matmul(a, b, out, add=True)
    np.testing.assert_allclose(backend.to_host(out), np.full((3, 2), 7, np.float32))


@pytest.mark.gpu
def test_gpu_products_are_recorded_into_a_cuda_graph(rng):
    """CuPy refuses its own cuBLAS calls while a stream is captured; blas_gpu's sgemm (ctypes on
    CuPy's libcublas) is recorded: a graph of two products replays on new operand values."""
    from nets.kernels import blas_gpu

    cp = backend.cupy_module()
    a, b = (cp.asarray(rng.standard_normal(shape).astype(np.float32)) for shape in ((6, 4), (4, 5)))
    out, total = cp.empty((6, 5), cp.float32), cp.zeros((4, 4), cp.float32)
    blas_gpu.matmul(a, b, out)  # the handle and the library, before the capture
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        blas_gpu.matmul(a, b, out)
        blas_gpu.matmul(a.T, a, total, add=True)
        graph = stream.end_capture()
    for _ in range(2):
        a[...] = cp.asarray(rng.standard_normal((6, 4)).astype(np.float32))
        want_total = backend.to_host(total) + backend.to_host(a).T @ backend.to_host(a)
        graph.launch()
        cp.cuda.Device().synchronize()
        np.testing.assert_allclose(backend.to_host(out), backend.to_host(a) @ backend.to_host(b), **TOLERANCE)
        np.testing.assert_allclose(backend.to_host(total), want_total, **TOLERANCE)


@pytest.mark.gpu
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
def test_gpu_bias_activation_and_its_gradient_match_the_cpu(rng, activation):
    from nets.kernels import dense as dense_kernels

    y, b, gy = (rng.standard_normal(shape).astype(np.float32) for shape in ((5, 7), (7,), (5, 7)))
    for bias in (b, None):
        want = dense_kernels.bias_activation(y.copy(), bias, activation)
        got = dense_kernels.bias_activation(backend.to_device(y, "gpu"), backend.to_device(bias, "gpu")
                                            if bias is not None else None, activation)
        np.testing.assert_allclose(backend.to_host(got), want, **TOLERANCE)
        grad = dense_kernels.activation_gradient(backend.to_device(gy, "gpu"), got, activation)
        np.testing.assert_allclose(backend.to_host(grad), dense_kernels.activation_gradient(gy, want, activation),
                                   **TOLERANCE)


@pytest.mark.gpu
def test_gpu_sum_of_squares_and_clipping_match_cpu(rng):
    x = rng.standard_normal(100_003).astype(np.float32)
    gpu = backend.to_device(x, "gpu")
    assert K.for_array("sum_of_squares", gpu)(gpu) == pytest.approx(K.sum_of_squares(x), rel=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("weighted", [False, True])
def test_gpu_softmax_cross_entropy_matches_cpu(rng, weighted):
    logits = rng.standard_normal((37, 65)).astype(np.float32) * 3
    labels = rng.integers(0, 65, 37)
    weights = (rng.random(37) > 0.3).astype(np.float32) if weighted else None
    results = []
    for device in ("cpu", "gpu"):
        x = nets.Tensor(backend.to_device(logits, device), requires_grad=True)
        loss = F.softmax_cross_entropy(x, labels, weights)
        loss.backward()
        results.append((float(loss.data), backend.to_host(x.grad)))
    assert results[1][0] == pytest.approx(results[0][0], rel=1e-5)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)


@pytest.mark.gpu
def test_gpu_embedding_scatter_add_accumulates_repeats(rng):
    from nets.kernels.embedding import scatter_add
    table = rng.standard_normal((50, 7)).astype(np.float32)
    indices = rng.integers(0, 50, 400)  # many repeats: the atomic adds must all land
    rows = rng.standard_normal((400, 7)).astype(np.float32)
    on_gpu = backend.to_device(table, "gpu")
    scatter_add(on_gpu, backend.to_device(indices, "gpu"), backend.to_device(rows, "gpu"))
    scatter_add(table, indices, rows)
    np.testing.assert_allclose(backend.to_host(on_gpu), table, rtol=1e-5, atol=1e-5)


# -- the GPU learner ----------------------------------------------------------------------------
class _CharLSTM(nets.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nets.LSTM(7, 16)
        self.head = nets.Linear(16, 7)

    def forward(self, x):
        return self.head(self.rnn(x)[0])


def _images(rng):
    return rng.random((8, 1, 12, 12), dtype=np.float32), rng.integers(0, 5, 8)


# name -> (model factory, batch(rng) -> (inputs, labels) as host arrays)
CAPTURED = {
    "mlp": (lambda: nets.Sequential(nets.Linear(20, 32, activation="relu"), nets.Linear(32, 5)),
            lambda rng: (rng.standard_normal((16, 20), dtype=np.float32), rng.integers(0, 5, 16))),
    "cnn-batch-norm": (lambda: nets.Sequential(nets.Conv2D(1, 4, 3, activation="relu"), nets.BatchNorm(4),
                                               nets.MaxPool2D(2), nets.Flatten(), nets.Linear(100, 5)),
                       _images),
    "lstm": (_CharLSTM, lambda rng: (np.eye(7, dtype=np.float32)[rng.integers(0, 7, (4, 6))],
                                     rng.integers(0, 7, (4, 6)))),
}


def _cross_entropy(model, x, y):
    return F.softmax_cross_entropy(model(x), y)


def _classifier_gradients(name, capture, loss_fn=_cross_entropy, device="gpu"):
    nets.seed(0)
    model = CAPTURED[name][0]().to(device)
    return model, nets.CapturedGradients(model, lambda x, y: loss_fn(model, x, y), capture=capture)


def _compare_captured(name, device):
    """Five calls on new batches, an SGD step after each: the captured gradients (replayed from
    the fourth call on, on a GPU) are the eager ones, and nothing fell back (a fall-back warns)."""
    import warnings

    (model, captured), (reference, eager) = (_classifier_gradients(name, capture, device=device)
                                             for capture in (True, False))
    optimizers = [nets.optim.SGD(m, lr=0.1) for m in (model, reference)]
    rng = np.random.default_rng(1)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="CapturedGradients")  # a fall-back warns
        for call in range(5):
            x, y = CAPTURED[name][1](rng)
            got, want = captured(x, y)[0], eager(x, y)[0]
            np.testing.assert_allclose(backend.to_host(got), backend.to_host(want), **TOLERANCE)
            np.testing.assert_allclose(backend.to_host(model.flat().grad), backend.to_host(reference.flat().grad),
                                       **TOLERANCE, err_msg=f"call {call}")
            for optimizer in optimizers:
                optimizer.step()
    return captured


@pytest.mark.parametrize("name", CAPTURED)
def test_captured_gradients_harness_runs_on_the_cpu(name):
    assert _compare_captured(name, "cpu").eager_reason == "no GPU"


@pytest.mark.gpu
@pytest.mark.parametrize("name", CAPTURED)
def test_captured_gradients_on_the_gpu_are_the_eager_ones_call_after_call(name):
    captured = _compare_captured(name, "gpu")
    assert captured.replaying and captured.eager_reason is None


@pytest.mark.gpu
def test_a_host_read_inside_the_loss_falls_back_to_eager_calls_on_the_gpu():
    def loss_with_a_host_read(model, x, y):
        loss = F.softmax_cross_entropy(model(x), y)
        assert float(loss.data) > 0  # a device-to-host copy: stream capture refuses it
        return loss

    model, captured = _classifier_gradients("mlp", True, loss_with_a_host_read)
    reference, eager = _classifier_gradients("mlp", False)
    rng = np.random.default_rng(1)
    with pytest.warns(RuntimeWarning, match="capture failed"):
        for _ in range(3):
            x, y = CAPTURED["mlp"][1](rng)
            np.testing.assert_allclose(backend.to_host(captured(x, y)[0]), backend.to_host(eager(x, y)[0]),
                                       **TOLERANCE)
    assert captured.eager_reason.startswith("capture failed") and not captured.replaying


@pytest.mark.gpu
@pytest.mark.parametrize("given_advantages", [False, True], ids=["R-V", "V-trace's"])
def test_gpu_actor_critic_loss_kernels_match_the_cpu(rng, given_advantages):
    """The fused loss (agents/losses_gpu.py): loss, statistics and gradients of 6 steps of 4
    actions, with 2 bootstrap rows after them that get no gradient."""
    from agents.losses import ActorCriticLoss, floats

    logits, values = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 1)).astype(np.float32)
    actions, returns = rng.integers(0, 4, 6), rng.standard_normal(6).astype(np.float32)
    advantages = rng.standard_normal(6).astype(np.float32) if given_advantages else None
    results = []
    for device in ("cpu", "gpu"):
        tensors = [nets.Tensor(backend.to_device(a, device), requires_grad=True) for a in (logits, values)]
        op = ActorCriticLoss(actions, returns, 0.01, 0.5, advantages)
        loss = op(*tensors)
        assert op.fused == (device == "gpu")
        stats = dict(op.stats)
        (loss * 3.0).backward()
        results.append((float(loss.data), floats(stats), *(backend.to_host(t.grad) for t in tensors)))
    (cpu_loss, cpu_stats, *cpu_grads), (gpu_loss, gpu_stats, *gpu_grads) = results
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-5)
    assert gpu_stats == pytest.approx(cpu_stats, rel=1e-5)
    for name, got, want in zip(("logits", "values"), gpu_grads, cpu_grads):
        np.testing.assert_allclose(got, want, **TOLERANCE, err_msg=name)
        assert not got[6:].any(), f"{name}: a bootstrap row got a gradient"


@pytest.mark.gpu
@pytest.mark.parametrize("agent", ["a3c", "a3c-lstm", "nstep-q", "reinforce"])
def test_gpu_learner_update_matches_cpu(agent):
    """One update from the same batch on each device: the same statistics and weights."""
    import gymnasium as gym

    from agents import make_agent
    from actors import InlineActors
    from actors.transport import ActorSpec

    env = gym.make("CartPole-v1")
    spec = ActorSpec(env_id="CartPole-v1", agent=agent, agent_config=make_agent(
        agent, env.observation_space, env.action_space, learner=False).config,
        envs_per_actor=1 if agent == "reinforce" else 2)
    actors = InlineActors(spec, 1)
    actors.start()
    results = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        learner = make_agent(agent, env.observation_space, env.action_space, device=device)
        if not results:
            actors.publish(learner.network.flat().data, 0)
            batch = actors.receive(timeout=1.0)[0]
            from agents import join
            batch = join([batch])
        stats = learner.update(batch, 0.0)
        assert backend.device_of(learner.network.flat().data) == device
        results.append((stats, backend.to_host(learner.network.flat().data)))
    actors.stop()
    (cpu_stats, cpu_weights), (gpu_stats, gpu_weights) = results
    for name, value in cpu_stats.items():
        assert gpu_stats[name] == pytest.approx(value, rel=1e-3, abs=1e-5), name
    np.testing.assert_allclose(gpu_weights, cpu_weights, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
def test_a_gpu_learner_publishes_one_host_copy_into_a_free_weight_slot():
    from actors.shared import Layout, SharedState

    layout = Layout(1000, 2, targets=True)
    state = SharedState(memoryview(bytearray(layout.nbytes)), layout)
    state.initialize()
    weights = backend.to_device(np.arange(1000, dtype=np.float32), "gpu")
    target = weights.copy()
    state.publish(weights, 5, target)
    version, held, held_target = state.acquire(0)
    weights += 1  # the learner's next in-place step on the device
    state.publish(weights, 6, target)
    np.testing.assert_array_equal(held, np.arange(1000))  # what actor 0 holds is never written
    _, newest, newest_target = state.acquire(1)
    np.testing.assert_array_equal(newest, np.arange(1, 1001))
    assert state.slot_of(newest_target) == state.slot_of(held_target)  # an unchanged target stays put


@pytest.mark.gpu
@pytest.mark.parametrize("agent", ["a3c", "nstep-q"])
def test_a_gpu_learner_steps_on_gradients_from_actors_as_a_cpu_one(agent):
    """--gradients-on actors --device gpu: the actors' host gradients, summed, reach the device
    in one copy; a few updates end where a CPU learner's do."""
    from actors import InlineActors, Learner
    from actors.transport import ActorSpec
    from agents import make_config, make_agent
    from envs import make_env

    finals = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        env = make_env("CartPole-v1")
        config = make_config(agent, {"target_update_interval": 2} if agent == "nstep-q" else {})
        learner_agent = make_agent(agent, env.observation_space, env.action_space, config, device=device)
        spec = ActorSpec("CartPole-v1", agent, config, envs_per_actor=2, seed=3, compute_gradients=True)
        learner = Learner(learner_agent, InlineActors(spec, 2), 60, console=lambda line: None)
        learner.run()
        finals.append(backend.to_host(learner_agent.network.flat().data))
    assert learner.progress.updates == 6
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.parametrize("agent", ["a3c", "impala"])
def test_gpu_actor_critic_learner_replays_its_batch_graph_and_ends_where_a_cpu_one_does(agent):
    """--gradients-on learner --device gpu: eight updates, a rollout each; from the fourth on the
    batch's loss and backward pass replay one CUDA graph (A3C.gradients; a fall-back to eager
    calls would warn), and the weights end where a CPU learner's do."""
    import warnings

    from actors import InlineActors, Learner
    from actors.transport import ActorSpec
    from agents import make_config, make_agent
    from envs import make_env

    finals = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        env = make_env("CartPole-v1")
        config = make_config(agent, {})
        learner_agent = make_agent(agent, env.observation_space, env.action_space, config, device=device)
        spec = ActorSpec("CartPole-v1", agent, config, envs_per_actor=2, seed=3)
        learner = Learner(learner_agent, InlineActors(spec, 2), 80, console=lambda line: None)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="CapturedGradients")
            learner.run()
        assert learner.progress.updates == 8
        assert learner_agent._batch_gradients.replaying == (device == "gpu")
        finals.append(backend.to_host(learner_agent.network.flat().data))
    np.testing.assert_allclose(finals[1], finals[0], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
@pytest.mark.slow
def test_train_with_a_gpu_learner_runs_to_done(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "workbench.cli", "train", "--env", "CartPole-v1", "--actors", "2",
         "--steps", "4000", "--device", "gpu", "--logdir", str(tmp_path), "--name", "gpu"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "learner on the GPU" in done.stdout and "done: " in done.stdout
    assert (tmp_path / "gpu" / "checkpoints").exists()


# -- every recipe, one short epoch with --device gpu ---------------------------------------------
def _recipe_flags(tmp_path) -> dict[str, list[str]]:
    from test_recipes import TEXT, write_mnist

    digits = write_mnist(tmp_path / "mnist", n_train=140, n_test=20)
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    book = tmp_path / "book.txt"
    book.write_text("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + TEXT * 2
                    + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\n")
    mnist = ["--data", str(digits), "--validation", "40", "--batch-size", "20"]
    return {
        "caesar": ["--samples", "104"],
        "mnist-mlp": [*mnist, "--hidden", "32"],
        "mnist-cnn": [*mnist, "--filters", "4,8", "--hidden", "16"],
        "char-rnn": ["--text", str(text), "--hidden", "24", "--layers", "1", "--embed", "8",
                     "--seq-len", "16", "--batch-size", "8", "--sample-length", "20"],
        "cbow": ["--text", str(book), "--dim", "8", "--min-count", "1"],
        "mnist-rbm": [*mnist, "--hidden", "16", "--k", "2", "--sample-steps", "5"],
        "mnist-dbn": [*mnist, "--hidden", "24,12", "--pretrain-epochs", "1", "--pretrain-batch-size", "10"],
        "mnist-gan": [*mnist, "--width", "4", "--noise", "8"],
        "mnist-stn": [*mnist, "--canvas", "32", "--filters", "4,8", "--hidden", "16"],
        "resnet": [*mnist, "--width", "4"],
        "sentiment": ["--synthetic", "200", "--embed", "8", "--hidden", "8", "--batch-size", "10"],
        "seq2seq": ["--synthetic", "200", "--embed", "8", "--hidden", "16", "--layers", "1",
                    "--batch-size", "16", "--beam", "2"],
        "dmn": ["--synthetic", "200", "--dim", "12", "--hops", "2", "--batch-size", "16"],
        "mnist-sequence": ["--data", str(digits), "--validation", "40", "--train-size", "60",
                           "--eval-size", "20", "--locator", "4,4", "--hidden", "8", "--filters", "4,4",
                           "--dense", "16", "--batch-size", "20"],
    }


RECIPES = ["caesar", "mnist-mlp", "mnist-cnn", "char-rnn", "cbow", "mnist-rbm", "mnist-dbn",
           "mnist-gan", "mnist-stn", "resnet", "sentiment", "seq2seq", "dmn", "mnist-sequence"]


def test_the_gpu_recipe_list_names_every_recipe():
    from workbench.recipes import recipes
    assert sorted(RECIPES) == sorted(recipes())


@pytest.mark.gpu
@pytest.mark.parametrize("name", RECIPES)
def test_recipe_trains_on_the_gpu(tmp_path, name):
    from test_recipes import history, run_recipe

    run_dir = run_recipe(tmp_path, name, *_recipe_flags(tmp_path)[name], "--epochs", "1",
                         "--device", "gpu")
    assert np.isfinite(history(run_dir)[-1]["train_loss"])
