"""Layers: gradient checks in float64 (random shapes, batch 1, stride/padding, overlapping windows,
channels-last input), forward values against plain loops, train/eval behaviour, initialisers, and
two learning checks (an MLP overfits 32 samples; a small CNN trains end to end)."""
import math

import numpy as np
import pytest

import nets
from nets import F, init
from nets.gradcheck import gradcheck, to_float64


def t64(rng, *shape, name="x"):
    return nets.Tensor(rng.standard_normal(shape), requires_grad=True, name=name)


def check_layer(layer, x, extra=()):
    """Gradient check of a float64 copy of `layer` with respect to its input and parameters."""
    to_float64(layer)
    gradcheck(lambda: layer(x), [x, *extra, *layer.parameters()])


def ref_conv2d(x, w, b, stride, padding):
    """Direct loops over output positions: out[n, o, y, x] = sum(window * w[o]) + b[o]."""
    (sy, sx), (py, px) = stride, padding
    x = np.pad(x, ((0, 0), (0, 0), (py, py), (px, px)))
    o, _, kh, kw = w.shape
    oh, ow = (x.shape[2] - kh) // sy + 1, (x.shape[3] - kw) // sx + 1
    out = np.empty((x.shape[0], o, oh, ow))
    for y in range(oh):
        for z in range(ow):
            window = x[:, :, y * sy:y * sy + kh, z * sx:z * sx + kw]
            out[:, :, y, z] = np.einsum("nchw,ochw->no", window, w) + b
    return out


# -- Conv2D --------------------------------------------------------------------------------------
CONV_CASES = [  # batch, in, out, size, kernel, stride, padding
    (2, 3, 4, (7, 6), 3, 1, 0),
    (1, 2, 3, (9, 9), 4, 2, 1),  # batch 1, stride and padding
    (3, 1, 2, (8, 7), (3, 2), (2, 1), (1, 0)),  # rectangular everything
    (2, 4, 2, (5, 5), 1, 1, 0),  # 1x1 kernel
    (2, 3, 2, (11, 10), 3, 4, 1),  # stride larger than the kernel
]


@pytest.fixture(params=["patches", "blocks"])
def conv_method(request, monkeypatch):
    """Run the test with each of F.conv2d's two methods (both hold for any geometry)."""
    from nets import functional_conv
    forced = request.param == "blocks"
    monkeypatch.setattr(functional_conv, "_blocks_pay", lambda x, w_shape, stride: forced)
    return request.param


@pytest.mark.parametrize("batch,cin,cout,size,kernel,stride,padding", CONV_CASES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d_gradients(rng, conv_method, batch, cin, cout, size, kernel, stride, padding, activation):
    layer = nets.Conv2D(cin, cout, kernel, stride=stride, padding=padding, activation=activation)
    layer.bias.data[:] = rng.standard_normal(cout)
    check_layer(layer, t64(rng, batch, cin, *size))


@pytest.mark.parametrize("batch,cin,cout,size,kernel,stride,padding", CONV_CASES)
def test_conv2d_forward_matches_direct_loops(rng, conv_method, batch, cin, cout, size, kernel, stride,
                                             padding):
    layer = to_float64(nets.Conv2D(cin, cout, kernel, stride=stride, padding=padding))
    layer.bias.data[:] = rng.standard_normal(cout)
    x = rng.standard_normal((batch, cin, *size))
    expected = ref_conv2d(x, layer.weight.data, layer.bias.data, layer.stride, layer.padding)
    np.testing.assert_allclose(layer(x).data, expected, rtol=1e-10, atol=1e-12)
    layer.activation = "relu"
    np.testing.assert_allclose(layer(x).data, np.maximum(expected, 0), rtol=1e-10, atol=1e-12)


def test_stacked_convs_read_channels_last_input(rng, conv_method):
    """A conv's output is channels-last memory; the next conv and pool take that path."""
    first = to_float64(nets.Conv2D(2, 5, 3))
    second = to_float64(nets.Conv2D(5, 3, 2, stride=2, padding=1))
    x = t64(rng, 2, 2, 9, 8)
    hidden = first(x)
    assert hidden.data.strides[1] == hidden.data.itemsize
    np.testing.assert_allclose(second(hidden).data, ref_conv2d(
        np.ascontiguousarray(hidden.data), second.weight.data, second.bias.data, (2, 2), (1, 1)),
        rtol=1e-10, atol=1e-12)
    gradcheck(lambda: F.max_pool2d(F.tanh(second(F.tanh(first(x)))), 2, 1),
              [x, *first.parameters(), *second.parameters()])


def test_conv2d_batch_larger_than_one_chunk(rng, conv_method, monkeypatch):
    """Large batches run in chunks of samples (and rebuild their patches for the weight gradient)."""
    from nets import functional_conv
    monkeypatch.setattr(functional_conv, "CHUNK_BYTES", 1)  # one sample per chunk
    monkeypatch.setattr(functional_conv, "KEEP_PATCHES_BYTES", 1)  # never keep the patches
    check_layer(nets.Conv2D(2, 3, 3, stride=2, padding=1, activation="relu"), t64(rng, 3, 2, 7, 7))


def test_conv2d_without_bias_and_frozen_input(rng, conv_method):
    layer = to_float64(nets.Conv2D(2, 3, 2, stride=2, bias=False))
    x = nets.Tensor(rng.standard_normal((2, 2, 5, 5)))  # no gradient wanted for the input
    assert layer.bias is None and len(layer.parameters()) == 1
    gradcheck(lambda: layer(x), layer.parameters())


def test_conv2d_under_no_grad_matches_training_forward(rng, conv_method):
    layer = nets.Conv2D(3, 4, 3, stride=2, activation="relu")
    x = rng.standard_normal((2, 3, 9, 9)).astype(np.float32)
    with nets.no_grad():
        quiet = layer(x).data.copy()
    np.testing.assert_array_equal(layer(x).data, quiet)


def test_conv2d_picks_blocks_for_strided_convs_over_many_channels():
    from nets.functional_conv import Conv2DBlocks, Conv2DPatches
    atari = nets.Conv2D(4, 16, 8, stride=4)
    assert type(atari(np.zeros((1, 4, 84, 84), dtype=np.float32)).creator) is Conv2DBlocks
    mnist = nets.Conv2D(1, 8, 5)
    assert type(mnist(np.zeros((1, 1, 28, 28), dtype=np.float32)).creator) is Conv2DPatches


def test_conv2d_rejects_unknown_activation():
    with pytest.raises(ValueError, match=r"activation must be one of \(None, 'relu'\), got 'gelu'"):
        nets.Conv2D(1, 1, 3, activation="gelu")


def test_conv2d_defaults_and_float32(rng):
    layer = nets.Conv2D(4, 16, 8, stride=4)
    assert layer.weight.shape == (16, 4, 8, 8) and layer.weight.dtype == np.float32
    assert not layer.bias.data.any()
    y = layer(rng.random((1, 4, 84, 84), dtype=np.float32))
    assert y.shape == (1, 16, 20, 20) and y.dtype == np.float32


@pytest.mark.parametrize("shape", [(4, 84, 84), (1, 3, 84, 84)])
def test_conv2d_names_the_expected_input(shape):
    with pytest.raises(ValueError, match=r"Conv2D expects \(batch, 4, height, width\) input, got shape"):
        nets.Conv2D(4, 8, 3)(np.zeros(shape, dtype=np.float32))


def test_conv2d_kernel_larger_than_input_is_named():
    with pytest.raises(ValueError, match="smaller than the kernel"):
        nets.Conv2D(1, 1, 5)(np.zeros((1, 1, 3, 3), dtype=np.float32))


def test_bad_stride_is_named():
    with pytest.raises(ValueError, match="stride must be an int or a pair of ints"):
        nets.Conv2D(1, 1, 3, stride=(1, 2, 3))


# -- pooling, flatten ----------------------------------------------------------------------------
def spaced_input(rng, *shape):
    """Distinct values (no ties inside a max window), as a float64 leaf."""
    n = math.prod(shape)
    return nets.Tensor((rng.permutation(n) * 0.01).reshape(shape), requires_grad=True)


@pytest.mark.parametrize("layer_type", [nets.MaxPool2D, nets.AvgPool2D])
@pytest.mark.parametrize("kernel,stride,shape", [
    (2, None, (2, 3, 6, 6)),  # non-overlapping
    (3, 2, (1, 2, 7, 8)),  # overlapping, batch 1, a leftover column
    ((2, 3), (1, 2), (2, 2, 5, 7)),  # rectangular, overlapping in one direction
])
def test_pool_gradients(rng, layer_type, kernel, stride, shape):
    check_layer(layer_type(kernel, stride), spaced_input(rng, *shape))


def test_pool_values(rng):
    x = rng.standard_normal((2, 3, 4, 6))
    blocks = x.reshape(2, 3, 2, 2, 3, 2)
    np.testing.assert_array_equal(nets.MaxPool2D(2)(x).data, blocks.max(axis=(3, 5)))
    np.testing.assert_allclose(nets.AvgPool2D(2)(x).data, blocks.mean(axis=(3, 5)))


def test_global_avg_pool(rng):
    x = t64(rng, 2, 3, 4, 5)
    layer = nets.GlobalAvgPool()
    assert layer(x).shape == (2, 3)
    np.testing.assert_allclose(layer(x).data, x.data.mean(axis=(2, 3)))
    check_layer(layer, x)


def test_flatten(rng):
    x = t64(rng, 2, 3, 4, 5)
    assert nets.Flatten()(x).shape == (2, 60)
    check_layer(nets.Flatten(), x)


def test_pool_names_the_expected_input():
    with pytest.raises(ValueError, match=r"max_pool2d expects \(batch, channels, height, width\)"):
        nets.MaxPool2D(2)(np.zeros((3, 4, 4)))


# -- Dropout -------------------------------------------------------------------------------------
def test_dropout_train_statistics_and_eval_identity():
    layer = nets.Dropout(0.25)
    x = np.ones((200, 100), dtype=np.float32)
    y = layer(x).data
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)  # inverted dropout keeps the expectation
    assert y.dtype == np.float32
    layer.eval()
    np.testing.assert_array_equal(layer(x).data, x)


def test_dropout_masks_come_from_the_engine_seed():
    layer = nets.Dropout(0.5)
    x = np.ones((4, 8), dtype=np.float32)
    nets.seed(11)
    first = layer(x).data
    nets.seed(11)
    np.testing.assert_array_equal(layer(x).data, first)
    assert not np.array_equal(layer(x).data, first)


def test_dropout_gradient_uses_the_forward_mask(rng):
    layer, x = nets.Dropout(0.5), t64(rng, 5, 6)
    y = layer(x)
    y.backward(np.ones(y.shape))
    np.testing.assert_array_equal(x.grad, y.data / x.data)

    def seeded():
        nets.seed(3)
        return layer(x)
    x.grad = None
    gradcheck(seeded, [x])


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError, match=r"Dropout probability must be in \[0, 1\), got 1"):
        nets.Dropout(1)


# -- Embedding -----------------------------------------------------------------------------------
def test_embedding_lookup_and_gradient(rng):
    layer = nets.Embedding(6, 3)
    indices = np.array([[1, 5, 1], [0, 1, 2]])  # (batch, time) with repeats
    y = layer(indices)
    assert y.shape == (2, 3, 3) and y.dtype == np.float32
    np.testing.assert_array_equal(y.data, layer.weight.data[indices])
    to_float64(layer)
    gradcheck(lambda: layer(indices), layer.parameters())


def test_embedding_gradient_accumulates_repeated_rows():
    layer = nets.Embedding(4, 2)
    layer(np.array([3, 1, 3, 3])).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad, [[0, 0], [1, 1], [0, 0], [3, 3]])


@pytest.mark.parametrize("bad,error", [(np.array([0, 4]), IndexError), (np.array([-1]), IndexError),
                                       (np.array([0.5]), TypeError)])
def test_embedding_rejects_bad_indices(bad, error):
    with pytest.raises(error, match="embedding indices must"):
        nets.Embedding(4, 2)(bad)


# -- BatchNorm -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(5, 4), (3, 4, 3, 2), (1, 4, 3, 3)])  # 1-D, 2-D, batch 1 of maps
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_gradients(rng, shape, training):
    layer = nets.BatchNorm(4)
    layer.gamma.data[:] = rng.uniform(0.5, 2, 4)
    layer.beta.data[:] = rng.standard_normal(4)
    layer.running_mean[:] = rng.standard_normal(4)
    layer.running_var[:] = rng.uniform(0.5, 2, 4)
    layer.train(training)
    check_layer(layer, t64(rng, *shape))


def test_batch_norm_normalises_and_tracks_running_statistics(rng):
    layer = nets.BatchNorm(3, momentum=0.2)
    x = rng.standard_normal((50, 3, 2, 2)).astype(np.float32) * 3 + 1
    y = layer(x).data
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, atol=1e-3)
    np.testing.assert_allclose(layer.running_mean, 0.2 * x.mean(axis=(0, 2, 3)), rtol=1e-5)
    unbiased = x.var(axis=(0, 2, 3)) * 200 / 199
    np.testing.assert_allclose(layer.running_var, 0.8 + 0.2 * unbiased, rtol=1e-5)


def test_batch_norm_eval_uses_running_statistics(rng):
    layer = nets.BatchNorm(2)
    layer.running_mean[:] = [1.0, -1.0]
    layer.running_var[:] = [4.0, 0.25]
    layer.eval()
    x = np.array([[3.0, 0.0]], dtype=np.float32)  # a single sample is fine in eval
    np.testing.assert_allclose(layer(x).data, [[2 / math.sqrt(4 + 1e-5), 1 / math.sqrt(0.25 + 1e-5)]],
                               rtol=1e-6)
    assert set(layer.state_dict()) == {"gamma", "beta", "running_mean", "running_var"}


def test_batch_norm_errors_name_the_problem():
    with pytest.raises(ValueError, match="more than one value per feature"):
        nets.BatchNorm(3)(np.zeros((1, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"expects \(batch, 3, \.\.\.\) input, got shape \(2, 4\)"):
        nets.BatchNorm(3)(np.zeros((2, 4), dtype=np.float32))


# -- initialisers --------------------------------------------------------------------------------
@pytest.mark.parametrize("gain", [1.0, 4.0])
def test_glorot_uniform_bound(gain):
    nets.seed(0)
    w = init.glorot_uniform((300, 200), gain=gain)
    bound = gain * math.sqrt(6 / 500)
    assert w.dtype == np.float32
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.var() - bound ** 2 / 3) < 0.03 * bound ** 2 / 3


@pytest.mark.parametrize("shape,fan_in", [((500, 400), 500), ((64, 32, 3, 3), 288)])
@pytest.mark.parametrize("draw", [init.he_normal, init.he_uniform])
def test_he_variance(shape, fan_in, draw):
    nets.seed(0)
    w = draw(shape)
    assert abs(w.var() - 2 / fan_in) < 0.03 * 2 / fan_in
    assert abs(w.mean()) < 0.05 * math.sqrt(2 / fan_in)


@pytest.mark.parametrize("shape", [(50, 30), (30, 50), (8, 2, 3, 3)])
def test_orthogonal_is_orthogonal(shape):
    nets.seed(0)
    w = init.orthogonal(shape, gain=2.0).reshape(shape[0], -1).astype(np.float64) / 2.0
    small = min(w.shape)
    gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    np.testing.assert_allclose(gram, np.eye(small), atol=1e-5)


# -- learning ------------------------------------------------------------------------------------
def test_mlp_overfits_32_samples():
    nets.seed(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 10)).astype(np.float32)
    labels = rng.integers(0, 4, 32)
    model = nets.Sequential(nets.Linear(10, 64), F.tanh, nets.Linear(64, 4))
    optimizer = nets.optim.Adam(model, lr=0.02)
    for _ in range(200):
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(x), labels).backward()
        optimizer.step()
    with nets.no_grad():
        accuracy = (model(x).data.argmax(axis=1) == labels).mean()
    assert accuracy == 1.0


class SmallCNN(nets.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nets.Conv2D(1, 4, 3, padding=1)
        self.pool = nets.MaxPool2D(2)
        self.conv2 = nets.Conv2D(4, 8, 3, stride=2)
        self.norm = nets.BatchNorm(8)
        self.gap = nets.GlobalAvgPool()
        self.drop = nets.Dropout(0.1)
        self.head = nets.Linear(8, 3)

    def forward(self, x):
        h = self.pool(F.relu(self.conv1(x)))
        h = F.relu(self.norm(self.conv2(h)))
        return self.head(self.drop(self.gap(h)))


def test_small_cnn_forward_backward_and_learning():
    nets.seed(1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 1, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 3, 8)
    model = SmallCNN()
    optimizer = nets.optim.Adam(model, lr=0.01)
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = F.softmax_cross_entropy(model(x), labels)
        loss.backward()
        assert np.isfinite(model.flat().grad).all() and model.flat().grad.any()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    model.eval()
    with nets.no_grad():
        assert model(x[:1]).shape == (1, 3)  # batch 1 in eval (batch norm uses running stats)


@pytest.mark.gpu
def test_small_cnn_on_gpu_matches_cpu():
    from nets import backend
    nets.seed(2)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 1, 12, 12)).astype(np.float32)
    labels = rng.integers(0, 3, 4)
    cpu = SmallCNN().eval()  # eval: no dropout masks, batch norm on running statistics
    gpu = SmallCNN().eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("gpu")
    for model, device in ((cpu, "cpu"), (gpu, "gpu")):
        model.zero_grad()
        logits = model(backend.to_device(x, device))
        F.softmax_cross_entropy(logits, backend.to_device(labels, device)).backward()
    for (name, p_cpu), (_, p_gpu) in zip(cpu.named_parameters(), gpu.named_parameters()):
        np.testing.assert_allclose(backend.to_host(p_gpu.grad), p_cpu.grad, rtol=1e-4, atol=1e-5,
                                   err_msg=name)


def test_conv2d_reads_uint8_pixels_scaled_as_the_float_frames_they_stand_for(rng, conv_method):
    """`input_scale` reads uint8 pixels as pixels / 255: the same output and parameter gradients
    as the scaled float32 frames (the Atari trunk's first conv), with no float copy of the batch."""
    pixels = rng.integers(0, 256, (3, 4, 20, 20), dtype=np.uint8)
    results = []
    for x, scale in ((pixels, 1 / 255), (pixels.astype(np.float32) / 255, 1.0)):
        nets.seed(0)
        conv = nets.Conv2D(4, 8, 8, stride=4, activation="relu", input_scale=scale)
        y = conv(x)
        (y * y).sum().backward()
        results.append([y.data, conv.weight.grad.copy(), conv.bias.grad.copy()])
    assert results[0][0].dtype == np.float32
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
