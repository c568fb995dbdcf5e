"""Sampling helpers and text generation: reproducible from a seed, and a trained char-LSTM
(truncated BPTT with carried state) continues its text."""
import numpy as np
import pytest

import nets
from nets import F
from nets.sampling import generate, greedy, probabilities, sample


def test_greedy_and_temperature_zero_pick_the_argmax(rng):
    logits = rng.standard_normal((4, 7))
    np.testing.assert_array_equal(greedy(logits), logits.argmax(axis=1))
    np.testing.assert_array_equal(sample(nets.Tensor(logits), temperature=0), logits.argmax(axis=1))


def test_sampling_is_reproducible_from_a_seed(rng):
    logits = rng.standard_normal((50, 10))
    a, b = sample(logits, rng=3), sample(logits, rng=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, sample(logits, rng=4))
    nets.seed(5)
    c = sample(logits)
    nets.seed(5)
    np.testing.assert_array_equal(c, sample(logits))


def test_samples_follow_the_tempered_distribution():
    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    draws = sample(np.tile(logits, (40000, 1)), temperature=1.0, rng=0)
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / draws.size, [0.5, 0.3, 0.15, 0.05], atol=0.01)
    hot = probabilities(logits, temperature=0.5)
    np.testing.assert_allclose(hot, np.array([0.5, 0.3, 0.15, 0.05]) ** 2 / np.sum(np.array([0.5, 0.3, 0.15, 0.05]) ** 2))
    flat = probabilities(logits, temperature=100.0)
    assert flat.max() - flat.min() < 0.01


def test_top_k_never_leaves_the_k_most_likely(rng):
    logits = rng.standard_normal((2000, 12))
    draws = sample(logits, temperature=2.0, top_k=3, rng=1)
    top3 = np.argsort(logits, axis=1)[:, -3:]
    assert all(d in row for d, row in zip(draws, top3))
    assert len(np.unique(draws)) > 3  # varies across rows
    np.testing.assert_array_equal(sample(logits, top_k=1, rng=2), logits.argmax(axis=1))


def test_sampling_errors():
    with pytest.raises(ValueError, match="temperature"):
        sample(np.zeros(3), temperature=-1)
    with pytest.raises(ValueError, match="top_k"):
        sample(np.zeros(3), top_k=0)


class CharLSTM(nets.Module):
    def __init__(self, vocab: int, hidden: int = 32):
        super().__init__()
        self.embed = nets.Embedding(vocab, 16, initializer=lambda s: nets.init.normal(s, 0.1))
        self.rnn = nets.LSTM(16, hidden)
        self.head = nets.Linear(hidden, vocab)

    def forward(self, ids, state=None):
        out, state = self.rnn(self.embed(ids), state)
        return self.head(out), state

    def step(self, ids, state=None):
        h, state = self.rnn.step(self.embed(ids), state)
        return self.head(h), state


TEXT = "the quick brown fox jumps over the lazy dog. " * 40
VOCAB = "".join(sorted(set(TEXT)))


def _train_char_lstm(steps=120, batch=8, window=24):
    """Truncated BPTT: `batch` parallel streams over the text, the state carried (detached) from
    one window to the next."""
    nets.seed(0)
    ids = np.array([VOCAB.index(c) for c in TEXT])
    streams = ids[: len(ids) // batch * batch].reshape(batch, -1)
    model = CharLSTM(len(VOCAB))
    optimizer = nets.optim.Adam(model, lr=1e-2)
    state, start = None, 0
    for _ in range(steps):
        if start + window + 1 > streams.shape[1]:
            state, start = None, 0
        x, y = streams[:, start:start + window], streams[:, start + 1:start + window + 1]
        optimizer.zero_grad()
        logits, state = model(x, state)
        F.softmax_cross_entropy(logits, y).backward()
        nets.optim.clip_grad_norm(optimizer, 5.0)
        optimizer.step()
        state = nets.detach_state(state)
        start += window
    return model.eval()


@pytest.fixture(scope="module")
def char_lstm():
    return _train_char_lstm()


def test_trained_char_lstm_continues_its_text_greedily(char_lstm):
    text = generate(char_lstm.step, VOCAB, "the quick brown ", 30, temperature=0)
    assert text == "fox jumps over the lazy dog. t"


def test_generation_is_reproducible_from_a_seed(char_lstm):
    a = generate(char_lstm.step, VOCAB, "the ", 40, temperature=1.5, top_k=5, rng=7)
    b = generate(char_lstm.step, VOCAB, "the ", 40, temperature=1.5, top_k=5, rng=7)
    c = generate(char_lstm.step, VOCAB, "the ", 40, temperature=1.5, top_k=5, rng=8)
    assert a == b and a != c and len(a) == 40 and set(a) <= set(VOCAB)


def test_generation_takes_a_vocabulary_object(char_lstm):
    class Vocab:
        def encode(self, text):
            return [VOCAB.index(c) for c in text]

        def decode(self, ids):
            return [VOCAB[i] for i in ids]
    assert generate(char_lstm.step, Vocab(), "jumps over the lazy ", 4, temperature=0) == "dog."
    with pytest.raises(ValueError, match="outside the vocabulary"):
        generate(char_lstm.step, VOCAB, "THE", 5)
    with pytest.raises(ValueError, match="at least one token"):
        generate(char_lstm.step, VOCAB, "", 5)
