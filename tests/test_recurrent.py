"""Recurrent layers: gradients through time, the fused kernels against plain NumPy, the deep
forms, masks, carried state, and learning a long dependency."""
import numpy as np
import pytest

import nets
from nets import F
from nets.gradcheck import gradcheck, to_float64
from nets.kernels import recurrent as K
from nets.layers import recurrent as R

B, T, I, H = 2, 5, 3, 4


def t64(rng, *shape, name=None):
    return nets.Tensor(rng.standard_normal(shape), requires_grad=True, name=name)


def flat(out, state):
    """Every output of a layer as one (batch, n) tensor, so gradcheck covers them all."""
    return F.concat([F.reshape(out, (out.shape[0], -1))] + leaves(state), axis=1)


def leaves(state):
    """The tensors of a (nested) state."""
    if isinstance(state, (tuple, list)):
        return [t for s in state for t in leaves(s)]
    return [state]


def padding_mask():
    mask = np.ones((B, T))
    mask[1, 3:] = 0  # the second sequence has 3 real steps
    return mask


# -- plain NumPy references: one step at a time, straight from the equations -------------------
def sig(x):
    return 0.5 * np.tanh(0.5 * x) + 0.5


def ref_lstm(x, w_ih, w_hh, b, h, c, peep=None, reverse=False):
    n = w_hh.shape[0]
    outs = [None] * x.shape[1]
    for t in (reversed(range(x.shape[1])) if reverse else range(x.shape[1])):
        z = x[:, t] @ w_ih + h @ w_hh + b
        zi, zf, zg, zo = z[:, :n], z[:, n:2 * n], z[:, 2 * n:3 * n], z[:, 3 * n:]
        if peep is not None:
            zi, zf = zi + peep[0] * c, zf + peep[1] * c
        i, f, g = sig(zi), sig(zf), np.tanh(zg)
        c = f * c + i * g
        o = sig(zo + (peep[2] * c if peep is not None else 0))
        h = o * np.tanh(c)
        outs[t] = h
    return np.stack(outs, axis=1), h, c


def ref_gru(x, w_ih, w_hh, b, h):
    n = w_hh.shape[0]
    outs = []
    for t in range(x.shape[1]):
        a = x[:, t] @ w_ih + b
        z = sig(a[:, :n] + h @ w_hh[:, :n])
        r = sig(a[:, n:2 * n] + h @ w_hh[:, n:2 * n])
        cand = np.tanh(a[:, 2 * n:] + (r * h) @ w_hh[:, 2 * n:])
        h = z * h + (1 - z) * cand
        outs.append(h)
    return np.stack(outs, axis=1), h


def ref_transition(x, w_ih, w_hh, b, h, highway):
    n = h.shape[1]
    outs = []
    for t in range(x.shape[1]):
        s = h
        for l in range(w_hh.shape[0]):
            z = s @ w_hh[l] + b[l] + (x[:, t] @ w_ih if l == 0 else 0)
            if highway:
                g = sig(z[:, n:])
                s = g * np.tanh(z[:, :n]) + (1 - g) * s
            else:
                s = np.tanh(z)
        h = s
        outs.append(h)
    return np.stack(outs, axis=1), h


# -- the kernels: fast tanh, Numba against NumPy references and against the array-code path ----
def test_fast_tanh_is_accurate_and_bounded():
    from numba import njit

    @njit
    def apply(x, y, z):
        for i in range(x.size):
            y[i] = K.tanh(x[i])
            z[i] = K.sigmoid(x[i])

    x = np.concatenate([np.linspace(-20, 20, 100001), [0.0, 1e-30, -1e-30, 1e4, -1e4]]).astype(np.float32)
    y, z = np.empty_like(x), np.empty_like(x)
    apply(x, y, z)
    exact = np.tanh(x.astype(np.float64))
    assert np.abs(y - exact).max() < 5e-7
    assert np.abs(y).max() <= 1 and np.diff(y[:100001]).min() > -5e-7  # monotone to rounding
    assert np.abs(z - sig(x.astype(np.float64))).max() < 5e-7


def test_lstm_layer_matches_numpy_reference(rng):
    cell = nets.LSTMCell(I, H, peepholes=True)
    cell.peep.data[...] = rng.standard_normal((3, H)) * 0.5
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0, c0 = (rng.standard_normal((B, H)).astype(np.float32) for _ in range(2))
    params = [p.data.astype(np.float64) for p in (cell.w_ih, cell.w_hh, cell.b)]
    for reverse in (False, True):
        out, (h, c) = cell.sequence(x, (h0, c0), reverse=reverse)
        want = ref_lstm(x.astype(np.float64), *params, h0, c0, cell.peep.data, reverse=reverse)
        for got, expected in zip((out, h, c), want):
            np.testing.assert_allclose(got.data, expected, atol=2e-6)


@pytest.mark.parametrize("cell_class", [nets.LSTMCell, nets.GRUCell])
def test_a_one_feature_series_projects_as_a_two_feature_one_with_a_zero_feature(rng, cell_class):
    """A one-feature input's projection is an outer product (nets/kernels/dense.py), not BLAS:
    the same float32 outputs and weight gradient as BLAS gives the series with a zero second
    feature."""
    one, two = cell_class(1, H), cell_class(2, H)
    for p, q in zip(one.parameters(), two.parameters()):
        q.data[...] = 0
        q.data[:p.shape[0]] = p.data  # w_ih's second row stays 0
    x = rng.standard_normal((B, T, 1)).astype(np.float32)
    weights = rng.standard_normal((B, T, H)).astype(np.float32)
    outs = []
    for cell, inputs in ((one, x), (two, np.concatenate([x, np.zeros_like(x)], axis=2))):
        out = cell.sequence(inputs)[0]
        (out * weights).sum().backward()
        outs.append(out.data)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_allclose(one.w_ih.grad, two.w_ih.grad[:1], rtol=1e-6, atol=1e-7)


def test_gru_and_transitions_match_numpy_reference(rng):
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    x64 = x.astype(np.float64)
    gru = nets.GRUCell(I, H)
    out, h = gru.sequence(x, h0)
    want = ref_gru(x64, gru.w_ih.data, gru.w_hh.data, gru.b.data, h0)
    np.testing.assert_allclose(out.data, want[0], atol=2e-6)
    np.testing.assert_allclose(h.data, want[1], atol=2e-6)
    rnn = nets.RNNCell(I, H)
    out, h = rnn.sequence(x, h0)
    want = ref_transition(x64, rnn.w_ih.data, rnn.w_hh.data[None], rnn.b.data[None], h0, False)
    np.testing.assert_allclose(out.data, want[0], atol=2e-6)
    for layer in (nets.RHN(I, H, depth=3), nets.DeepTransitionRNN(I, H, depth=2)):
        layer.b.data[...] += rng.standard_normal(layer.b.shape).astype(np.float32) * 0.5
        out, h = layer(x, h0)
        want = ref_transition(x64, layer.w_ih.data, layer.w_hh.data, layer.b.data, h0, layer.highway)
        np.testing.assert_allclose(out.data, want[0], atol=2e-6)
        np.testing.assert_allclose(h.data, want[1], atol=2e-6)


def _use_array_code(monkeypatch):
    """Make the layers call the plain array-code kernels (the GPU path) on NumPy arrays."""
    monkeypatch.setattr(K, "for_array", lambda name, x: getattr(K, name + "_xp"))


LAYERS = {
    "lstm": lambda: nets.LSTM(I, H),
    "lstm-peepholes": lambda: nets.LSTM(I, H, peepholes=True),
    "gru": lambda: nets.GRU(I, H),
    "rnn": lambda: nets.RNN(I, H),
    "rhn": lambda: nets.RHN(I, H, depth=2),
    "dt-rnn": lambda: nets.DeepTransitionRNN(I, H, depth=2),
}


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_numba_kernels_match_array_code_forward_and_backward(rng, monkeypatch, kind):
    """Same layer, same data (padding mask, dropout on h, initial state, reversed): the Numba
    kernels and the array-code kernels give the same outputs and gradients in float32."""
    nets.seed(0)
    layer = LAYERS[kind]()
    for p in layer.parameters():
        p.data[...] += rng.standard_normal(p.shape).astype(np.float32) * 0.3
    x = nets.Tensor(rng.standard_normal((B, T, I)).astype(np.float32), requires_grad=True)
    h = nets.Tensor(rng.standard_normal((B, H)).astype(np.float32), requires_grad=True)
    mh = (rng.random((B, H)) > 0.3).astype(np.float32) / 0.7
    projection = rng.standard_normal((B, T * H + H * (2 if kind.startswith("lstm") else 1)))

    def run():
        for t in [x, h] + layer.parameters():
            t.grad = None if t is x or t is h else np.zeros_like(t.data)
        state = (h, h * 0.5) if kind.startswith("lstm") else h
        if isinstance(layer, R._Recurrent):
            out, final = layer.l0.sequence(x, state, padding_mask(), reverse=True, hidden_mask=mh)
        else:
            layer.hidden_dropout, layer.training = 0.0, True
            out, final = layer(x, state, padding_mask(), reverse=True)
        y = flat(out, final)
        y.backward(projection.astype(np.float32))
        return [y.data] + [t.grad.copy() for t in [x, h] + layer.parameters()]

    fast = run()
    _use_array_code(monkeypatch)
    plain = run()
    for a, b in zip(fast, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


# -- gradients through time (float64) -----------------------------------------------------------
def _check_layer(layer, rng, with_state: bool, mask=None, reverse=False):
    to_float64(layer)
    x = t64(rng, B, T, I, name="x")
    state = None
    inputs = [x]
    if with_state:
        if isinstance(layer, (nets.LSTM, nets.LSTMCell)):
            state = (t64(rng, B, H, name="h0"), t64(rng, B, H, name="c0"))
            inputs += list(state)
        else:
            state = t64(rng, B, H, name="h0")
            inputs.append(state)
    kwargs = {} if not reverse else {"reverse": True}
    call = layer.sequence if isinstance(layer, R._Cell) else layer
    gradcheck(lambda: flat(*call(x, state, mask, **kwargs)), inputs + layer.parameters())


@pytest.mark.parametrize("kind", sorted(LAYERS))
@pytest.mark.parametrize("with_state", [False, True], ids=["zero-state", "initial-state"])
def test_gradients_through_time(rng, kind, with_state):
    _check_layer(LAYERS[kind](), rng, with_state)


@pytest.mark.parametrize("kind", sorted(LAYERS))
def test_gradients_with_padding_mask_in_reverse(rng, kind):
    _check_layer(LAYERS[kind](), rng, True, mask=padding_mask(), reverse=True)


@pytest.mark.parametrize("cell_class", [nets.RNNCell, nets.LSTMCell, nets.GRUCell])
def test_cell_steps_gradients(rng, cell_class):
    cell = to_float64(cell_class(I, H))
    xs = [t64(rng, B, I) for _ in range(4)]

    def unroll():
        state, hs = None, []
        for x in xs:
            h, state = cell(x, state)
            hs.append(h)
        return F.concat(hs, axis=1)
    gradcheck(unroll, xs + cell.parameters())


@pytest.mark.parametrize("layer_class", [nets.LSTM, nets.GRU, nets.RNN])
def test_stacked_bidirectional_with_dropout_gradients(rng, layer_class):
    layer = to_float64(layer_class(I, H, num_layers=2, bidirectional=True, dropout=0.3,
                                   input_dropout=0.2, hidden_dropout=0.25))
    x = t64(rng, B, T, I)

    def run():
        nets.seed(7)  # the same dropout masks at every evaluation
        return flat(*layer(x, mask=padding_mask()))
    gradcheck(run, [x] + layer.parameters())


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_wrapper_gradients(rng, merge):
    layer = to_float64(nets.Bidirectional(nets.RHN(I, H, depth=2), nets.GRU(I, H), merge=merge))
    x = t64(rng, B, T, I)
    gradcheck(lambda: flat(*layer(x, mask=padding_mask())), [x] + layer.parameters())


def test_deep_transition_with_variational_dropout_gradients(rng):
    layer = to_float64(nets.RHN(I, H, depth=3, input_dropout=0.2, hidden_dropout=0.3))
    x = t64(rng, B, T, I)

    def run():
        nets.seed(3)
        return flat(*layer(x))
    gradcheck(run, [x] + layer.parameters())


def test_highway_layer_gradients_and_start_near_identity(rng):
    layer = nets.Highway(I)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    y = layer(x)
    assert y.shape == x.shape
    assert np.abs(y.data - x).mean() < 0.3 * np.abs(x).mean()  # carry gate mostly open at start
    to_float64(layer)
    x64 = t64(rng, B, T, I)
    gradcheck(lambda: layer(x64), [x64] + layer.parameters())


# -- semantics -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rhn"])
def test_padding_keeps_the_state_of_the_last_real_step(rng, kind):
    layer = LAYERS[kind]()
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    _, padded = layer(x, mask=padding_mask())
    _, short = layer(x[1:, :3])
    padded = padded[0] if kind == "lstm" else padded
    short = short[0] if kind == "lstm" else short
    np.testing.assert_allclose(padded.data[1:], short.data, atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn", "rhn", "dt-rnn"])
def test_reverse_equals_running_the_flipped_sequence(rng, kind):
    layer = LAYERS[kind]()
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out_r, _ = layer(x, reverse=True)
    out_f, _ = layer(x[:, ::-1].copy())
    np.testing.assert_allclose(out_r.data, out_f.data[:, ::-1], atol=1e-6)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_step_by_step_equals_the_sequence(rng, kind):
    layer = {"lstm": nets.LSTM, "gru": nets.GRU, "rnn": nets.RNN}[kind](I, H, num_layers=2)
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out, final = layer(x)
    state = None
    for t in range(T):
        h, state = layer.step(x[:, t], state)
        np.testing.assert_allclose(h.data, out.data[:, t], atol=1e-6)
    for a, b in zip(np.concatenate([np.ravel(s.data) for s in leaves(final)]),
                    np.concatenate([np.ravel(s.data) for s in leaves(state)])):
        assert a == pytest.approx(b, abs=1e-6)


def test_truncated_bptt_carries_state_and_cuts_the_graph(rng):
    lstm = nets.LSTM(I, H, num_layers=2)
    x = rng.standard_normal((B, 2 * T, I)).astype(np.float32)
    whole, _ = lstm(x)
    first_x = nets.Tensor(x[:, :T], requires_grad=True)
    _, state = lstm(first_x)
    carried = nets.detach_state(state)
    assert all(s.creator is None and not s.requires_grad for s in leaves(carried))
    second, _ = lstm(x[:, T:], carried)
    np.testing.assert_allclose(second.data, whole.data[:, T:], atol=1e-6)
    second.sum().backward()
    assert first_x.grad is None  # the carried state brought values, not a path back
    second, _ = lstm(x[:, T:], state)  # without detaching, the gradient reaches the first window
    second.sum().backward()
    assert first_x.grad is not None and np.abs(first_x.grad).sum() > 0


def test_shapes_of_stacked_and_bidirectional_layers(rng):
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    out, state = nets.LSTM(I, H, num_layers=3, bidirectional=True)(x)
    assert out.shape == (B, T, 2 * H)
    assert len(state) == 6 and all(h.shape == c.shape == (B, H) for h, c in state)
    out, state = nets.GRU(I, H, num_layers=2, bidirectional=True, merge="sum")(x)
    assert out.shape == (B, T, H) and len(state) == 4
    out, h = nets.RNN(I, H)(x)
    assert out.shape == (B, T, H) and h.shape == (B, H)
    gru = nets.GRU(I, H, num_layers=2, bidirectional=True)
    assert [name for name, _ in gru.named_parameters()][:3] == ["l0.w_ih", "l0.w_hh", "l0.b"]
    assert [type(c).__name__ for c in gru.cells()] == ["GRUCell"] * 4


def test_lstm_forget_bias_and_float32_defaults():
    lstm = nets.LSTM(I, H)
    b = lstm.l0.b.data
    np.testing.assert_array_equal(b[H:2 * H], 1.0)
    np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
    assert all(p.dtype == np.float32 for p in lstm.parameters())
    out, (h, c) = lstm(np.zeros((B, T, I), dtype=np.float32))
    assert out.dtype == h.dtype == c.dtype == np.float32


def test_dropout_masks_are_the_same_at_every_step(rng, monkeypatch):
    """Variational input dropout: a feature dropped at one step is dropped at all steps."""
    nets.seed(1)
    layer = nets.RNN(I, H, input_dropout=0.5)
    seen = {}
    original = R.TransitionSequence.forward

    def spy(self, x, *args):
        seen["x"] = x.copy()
        return original(self, x, *args)
    monkeypatch.setattr(R.TransitionSequence, "forward", spy)
    layer(np.ones((B, T, I), dtype=np.float32))
    monkeypatch.undo()
    x = seen["x"]
    assert np.all(x == x[:, :1])  # constant over time
    assert set(np.unique(x)) <= {0.0, 2.0} and 0 < (x == 0).sum() < x.size
    layer.eval()
    out_a, _ = layer(np.ones((B, T, I), dtype=np.float32))
    out_b, _ = layer(np.ones((B, T, I), dtype=np.float32))
    np.testing.assert_array_equal(out_a.data, out_b.data)


def test_errors_are_clear(rng):
    lstm = nets.LSTM(I, H)
    with pytest.raises(ValueError, match=r"expects input of shape \(batch, time, features\), got \(2, 3\)"):
        lstm(np.zeros((B, I), dtype=np.float32))
    with pytest.raises(ValueError, match="built for 3 input features, got 5"):
        lstm(np.zeros((B, T, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="an LSTM state is a pair"):
        lstm(np.zeros((B, T, I), dtype=np.float32), np.zeros((B, H), dtype=np.float32))
    with pytest.raises(ValueError, match=r"mask must be \(batch, time\)"):
        lstm(np.zeros((B, T, I), dtype=np.float32), mask=np.ones((B, T + 1)))
    with pytest.raises(ValueError, match="only 0"):
        lstm(np.zeros((B, T, I), dtype=np.float32), mask=np.full((B, T), 0.5))
    with pytest.raises(ValueError, match="takes a list of 2 states"):
        nets.GRU(I, H, num_layers=2)(np.zeros((B, T, I), dtype=np.float32), np.zeros((B, H)))
    with pytest.raises(ValueError, match="one step of shape"):
        nets.GRUCell(I, H)(np.zeros((B, T, I), dtype=np.float32))
    with pytest.raises(ValueError, match="bidirectional"):
        nets.LSTM(I, H, bidirectional=True).step(np.zeros((B, I), dtype=np.float32))
    with pytest.raises(ValueError, match="merge"):
        nets.LSTM(I, H, merge="mean")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        nets.GRU(I, H, dropout=1.0)


# -- learning ------------------------------------------------------------------------------------
def _bit_task(rng, n, lag):
    """Remember the sign of the first input (+-3) through `lag` steps of Gaussian noise (std 6)
    on the same channel; a second channel marks the first step. A plain RNN cannot keep the noise
    out of its state; an LSTM learns to close its input gate."""
    bits = rng.integers(0, 2, n)
    x = np.zeros((n, lag + 1, 2), dtype=np.float32)
    x[:, :, 0] = rng.standard_normal((n, lag + 1)) * 6.0
    x[:, 0, 0] = (bits * 2.0 - 1.0) * 3.0
    x[:, 0, 1] = 1.0
    return x, bits


def _train_bit_task(kind: str, seed: int, steps: int = 800, lag: int = 20, hidden: int = 16):
    """Accuracy on 1000 fresh sequences after `steps` Adam steps (batch 32, gradients clipped)."""
    nets.seed(seed)
    rng = np.random.default_rng(seed)
    rnn = {"lstm": nets.LSTM, "rnn": nets.RNN}[kind](2, hidden)
    head = nets.Linear(hidden, 2)
    optimizer = nets.optim.Adam(nets.Sequential(rnn, head), lr=1e-2)

    def logits(x):
        _, state = rnn(x)
        return head(state[0] if kind == "lstm" else state)
    for _ in range(steps):
        x, y = _bit_task(rng, 32, lag)
        optimizer.zero_grad()
        F.softmax_cross_entropy(logits(x), y).backward()
        nets.optim.clip_grad_norm(optimizer, 1.0)
        optimizer.step()
    x, y = _bit_task(np.random.default_rng(1000 + seed), 1000, lag)
    with nets.no_grad():
        return float((logits(x).data.argmax(axis=1) == y).mean())


@pytest.mark.slow
def test_lstm_remembers_a_bit_for_20_steps_where_a_plain_rnn_fails():
    # Over seeds 0-9 the LSTM reached 100% in 9 and the RNN stayed near chance (<= 52%) in all.
    lstm = _train_bit_task("lstm", seed=0)
    if lstm < 0.95:  # a rare seed sits on the plateau: one more chance
        lstm = max(lstm, _train_bit_task("lstm", seed=1))
    assert lstm >= 0.95
    assert max(_train_bit_task("rnn", seed) for seed in (0, 1)) <= 0.7
