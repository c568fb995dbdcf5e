"""Attention (dot-product and additive, with masks) and the seq2seq encoder-decoder."""
import numpy as np
import pytest

import nets
from nets import F
from nets.gradcheck import gradcheck, to_float64
from nets.layers.attention import (AdditiveAttention, DotAttention, Seq2Seq, dot_attention,
                                   masked_softmax)

B, T, D = 3, 5, 4


def t64(rng, *shape):
    return nets.Tensor(rng.standard_normal(shape), requires_grad=True)


def key_mask():
    mask = np.ones((B, T))
    mask[0, 3:] = 0
    mask[2, 1:] = 0  # a single real key
    return mask


def test_masked_softmax_ignores_padding_and_sums_to_one(rng):
    scores = rng.standard_normal((B, 2, T)).astype(np.float32) * 10
    w = masked_softmax(scores, key_mask()).data
    np.testing.assert_allclose(w.sum(axis=-1), 1, rtol=1e-6)
    assert np.all(w[:, :, :][np.broadcast_to(key_mask()[:, None, :] == 0, w.shape)] == 0)
    np.testing.assert_allclose(w[2, :, 0], 1)


def test_dot_attention_matches_numpy(rng):
    q, k, v = rng.standard_normal((B, D)), rng.standard_normal((B, T, D)), rng.standard_normal((B, T, 2))
    context, weights = dot_attention(q, k, v, key_mask(), scale=0.5)
    scores = np.einsum("bd,btd->bt", q, k) * 0.5 + (key_mask() - 1) * 1e9
    want = np.exp(scores - scores.max(axis=1, keepdims=True))
    want /= want.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(weights.data, want, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(context.data, np.einsum("bt,btv->bv", want, v), rtol=1e-6)


@pytest.mark.parametrize("steps", [None, 2], ids=["one-query", "query-steps"])
def test_dot_attention_gradients(rng, steps):
    q = t64(rng, B, D) if steps is None else t64(rng, B, steps, D)
    k, v = t64(rng, B, T, D), t64(rng, B, T, 2)
    gradcheck(lambda: F.concat([F.reshape(a, (B, -1)) for a in dot_attention(q, k, v, key_mask(), 0.7)],
                               axis=1), [q, k, v])


@pytest.mark.parametrize("layer", ["additive", "general-dot"])
def test_attention_layers_gradients(rng, layer):
    module = (AdditiveAttention(D, 6, 5) if layer == "additive" else DotAttention(D, 6, scaled=True))
    to_float64(module)
    q, k, v = t64(rng, B, 2, D), t64(rng, B, T, 6), t64(rng, B, T, 3)
    gradcheck(lambda: F.concat([F.reshape(a, (B, -1)) for a in module(q, k, v, mask=key_mask())], axis=1),
              [q, k, v] + module.parameters())


def test_additive_attention_with_projected_keys_is_the_same(rng):
    module = AdditiveAttention(D, 6, 5)
    q, k = rng.standard_normal((B, D)).astype(np.float32), rng.standard_normal((B, T, 6)).astype(np.float32)
    direct, w1 = module(q, k, mask=key_mask())
    cached, w2 = module(q, k, mask=key_mask(), projected=module.project_keys(k))
    assert direct.shape == (B, 6) and w1.shape == (B, T)
    np.testing.assert_allclose(direct.data, cached.data, rtol=1e-6)
    assert np.all(w1.data[key_mask() == 0] == 0)


def test_attention_errors(rng):
    k = np.zeros((B, T, D), dtype=np.float32)
    with pytest.raises(ValueError, match="query and key sizes"):
        dot_attention(np.zeros((B, D + 1), dtype=np.float32), k)
    with pytest.raises(ValueError, match="values must be"):
        dot_attention(np.zeros((B, D), dtype=np.float32), k, np.zeros((B, T + 1, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"mask must be \(batch, time\)"):
        dot_attention(np.zeros((B, D), dtype=np.float32), k, mask=np.ones((B, T - 1)))
    with pytest.raises(ValueError, match="keys must be"):
        AdditiveAttention(D, D, 3)(np.zeros((B, D), dtype=np.float32), np.zeros((B, D), dtype=np.float32))
    with pytest.raises(ValueError, match="attention must be"):
        Seq2Seq(5, 5, attention="cosine")


# -- seq2seq: learn to reverse digit sequences of 3 to 6 digits --------------------------------
PAD = END = 10
START = 11


def _reversal_batch(rng, n, shortest=3, longest=6):
    """Padded digit sequences with their mask, and the reversed digits followed by END."""
    src = np.full((n, longest), PAD)
    mask = np.zeros((n, longest), dtype=np.float32)
    target = np.full((n, longest + 1), END)
    weights = np.zeros((n, longest + 1), dtype=np.float32)
    for i, length in enumerate(rng.integers(shortest, longest + 1, n)):
        digits = rng.integers(0, 10, length)
        src[i, :length], mask[i, :length] = digits, 1
        target[i, :length], weights[i, :length + 1] = digits[::-1], 1
    tgt_in = np.concatenate([np.full((n, 1), START), target[:, :-1]], axis=1)
    return src, mask, tgt_in, target, weights


def exact_match(model, rng, n=500):
    src, mask, _, target, weights = _reversal_batch(rng, n)
    predicted = model.greedy_decode(src, START, target.shape[1], mask)
    assert predicted.shape == target.shape
    return float(((predicted == target) | (weights == 0)).all(axis=1).mean())


@pytest.mark.slow
@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_seq2seq_learns_to_reverse_digit_sequences(attention):
    nets.seed(0)
    rng = np.random.default_rng(0)
    model = Seq2Seq(11, 12, embed=16, hidden=32, attention=attention)
    optimizer = nets.optim.Adam(model, lr=1e-2)
    assert exact_match(model, np.random.default_rng(1)) < 0.05
    for _ in range(300):
        src, mask, tgt_in, target, weights = _reversal_batch(rng, 32)
        optimizer.zero_grad()
        F.softmax_cross_entropy(model(src, tgt_in, mask), target, weights=weights).backward()
        nets.optim.clip_grad_norm(optimizer, 5.0)
        optimizer.step()
    assert exact_match(model, np.random.default_rng(1)) >= 0.95


def test_stacked_seq2seq_with_a_shared_embedding_gradients(rng):
    model = to_float64(Seq2Seq(7, 7, embed=3, hidden=4, layers=2, shared_embedding=True))
    assert model.tgt_embed is None and "decoder2.w_ih" in dict(model.named_parameters())
    src = rng.integers(0, 7, (2, 4))
    mask = np.ones((2, 4))
    mask[1, 3:] = 0
    tgt_in = rng.integers(0, 7, (2, 3))
    gradcheck(lambda: model(src, tgt_in, mask), model.parameters(), max_elements=8)


class _TableDecoder(Seq2Seq):
    """Next-token probabilities from a table indexed by the previous token: greedy decoding
    takes 'a' (0.6) and then wanders, while 'b end' is the likelier sentence."""

    TABLE = np.log(np.array([[1.0, 1e-9, 1e-9, 1e-9],   # after end: end
                             [0.3, 0.35, 0.35, 1e-9],   # after a
                             [0.9, 0.05, 0.05, 1e-9],   # after b
                             [1e-9, 0.6, 0.4, 1e-9]]))  # after start

    def encode(self, src, src_mask=None):
        zeros = np.zeros((len(src), 1))
        return np.zeros((len(src), 1, 2)), None, [(zeros, zeros)], zeros

    def decode_step(self, token, state, context, keys, projected, src_mask=None):
        return nets.Tensor(self.TABLE[np.asarray(token)]), state, context, None


def test_beam_search_finds_the_likelier_sentence_that_greedy_misses():
    model = _TableDecoder(4, 4)
    src = np.zeros((2, 1), dtype=np.int64)
    np.testing.assert_array_equal(model.beam_decode(src, 3, 0, 4, beam=2), [[2, 0, 0, 0]] * 2)
    np.testing.assert_array_equal(model.beam_decode(src, 3, 0, 3, beam=1)[:, :1], [[1], [1]])  # greedy's first
    with pytest.raises(ValueError, match="beam must be"):
        model.beam_decode(src, 3, 0, 4, beam=0)


def test_banned_tokens_are_never_decoded(rng):
    """seq2seq bans <pad> and <s>: an untrained model would otherwise say them."""
    nets.seed(2)
    model = Seq2Seq(11, 12, embed=8, hidden=8, layers=1)
    src, mask, _, _, _ = _reversal_batch(rng, 6)
    banned = tuple(range(10))  # all but 10 and 11
    assert set(np.unique(model.greedy_decode(src, START, 7, mask))) - {10, 11}  # says others unbanned
    assert set(np.unique(model.greedy_decode(src, START, 7, mask, banned=banned))) <= {10, 11}
    beam = model.beam_decode(src, START, 11, 7, beam=3, src_mask=mask, banned=banned)
    assert set(np.unique(beam)) <= {10, 11}


def test_beam_of_one_is_greedy_until_the_end_token(rng):
    nets.seed(2)
    model = Seq2Seq(11, 12, embed=8, hidden=8, layers=2)
    src, mask, _, target, _ = _reversal_batch(rng, 6)
    greedy, weights = model.greedy_decode(src, START, 7, mask, attention=True)
    beam = model.beam_decode(src, START, END, 7, beam=1, src_mask=mask)
    assert weights.shape == (6, 7, src.shape[1]) and np.all(weights[mask[:, None, :].repeat(7, 1) == 0] == 0)
    for g, b in zip(greedy, beam):
        stop = list(g).index(END) + 1 if END in g else len(g)
        np.testing.assert_array_equal(b[:stop], g[:stop])
        assert np.all(b[stop:] == END)
