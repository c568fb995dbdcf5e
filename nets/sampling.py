"""Drawing tokens from a sequence model: greedy, temperature and top-k sampling, and generation
from a seed string.

Every draw takes `rng`: a NumPy Generator, an int seed, or None for the engine's generator
(`nets.seed`), so the same seed gives the same text.

    model.eval()
    text = generate(model.step, "abcdefgh...", seed_text="The ", length=200, temperature=0.8,
                    top_k=10, rng=0)

`step(ids, state) -> (logits, state)` runs one token (ids of shape (1,)) through the model: a
layer's `step` (nets.LSTM.step and the like) under an embedding and a dense head.
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import rng as _rng
from .tensor import Tensor, no_grad


def _generator(rng) -> np.random.Generator:
    if rng is None:
        return _rng.generator()
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _host(logits) -> np.ndarray:
    return backend.to_host(logits.data if isinstance(logits, Tensor) else logits)


def greedy(logits) -> np.ndarray:
    """The most likely token of each row: logits (..., vocabulary) -> ints (...)."""
    return _host(logits).argmax(axis=-1)


def probabilities(logits, temperature: float = 1.0, top_k: int | None = None) -> np.ndarray:
    """softmax(logits / temperature) over the last axis in float64, with everything outside the
    `top_k` largest logits of a row set to 0 (ties at the k-th value are kept)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0 (use greedy for 0), got {temperature}")
    z = _host(logits).astype(np.float64) / temperature
    if top_k is not None:
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if top_k < z.shape[-1]:
            kth = np.partition(z, -top_k, axis=-1)[..., -top_k, None]
            z = np.where(z >= kth, z, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=-1, keepdims=True)


def sample(logits, temperature: float = 1.0, top_k: int | None = None, rng=None) -> np.ndarray:
    """One token per row of logits (..., vocabulary) -> ints (...). temperature 0 is greedy;
    below 1 sharpens the distribution, above 1 flattens it; top_k keeps the k most likely."""
    if temperature == 0:
        return greedy(logits)
    p = probabilities(logits, temperature, top_k)
    flat = p.reshape(-1, p.shape[-1])
    # inverse-CDF draws, one uniform per row: the first token whose cumulative probability
    # exceeds u (never a token of probability 0, since the last cumulative value is exactly 1)
    cdf = flat.cumsum(axis=1)
    cdf /= cdf[:, -1:]
    u = _generator(rng).random(flat.shape[0])[:, None]
    return (cdf <= u).sum(axis=1).reshape(p.shape[:-1])


def _codec(vocab):
    """(encode: str -> ids, decode: ids -> str) for an object with encode/decode (e.g.
    workbench.datasets.Vocabulary) or a sequence of tokens (a string of characters works)."""
    if hasattr(vocab, "encode") and hasattr(vocab, "decode"):
        return (lambda text: np.asarray(vocab.encode(text), dtype=np.int64),
                lambda ids: "".join(vocab.decode(ids)))
    tokens = list(vocab)
    index = {t: i for i, t in enumerate(tokens)}
    if len(index) != len(tokens):
        raise ValueError("the vocabulary has repeated tokens")

    def encode(text):
        missing = sorted(set(text) - set(index))
        if missing:
            raise ValueError(f"seed text has tokens outside the vocabulary: {missing}")
        return np.array([index[t] for t in text], dtype=np.int64)
    return encode, lambda ids: "".join(tokens[int(i)] for i in ids)


def generate(step, vocab, seed_text: str, length: int, temperature: float = 1.0,
             top_k: int | None = None, rng=None, state=None) -> str:
    """`length` tokens following `seed_text`, drawn one at a time from `step`.

    The seed text is fed first (its last token's prediction is the first draw); each drawn token
    is fed back. Runs without recording a graph; switch dropout off first (model.eval())."""
    if length < 0:
        raise ValueError(f"length must be >= 0, got {length}")
    encode, decode = _codec(vocab)
    ids = encode(seed_text)
    if len(ids) == 0:
        raise ValueError("seed_text must hold at least one token")
    rng = _generator(rng)
    out = []
    with no_grad():
        for i in ids:
            logits, state = step(np.array([i]), state)
        for k in range(length):
            out.append(int(sample(_host(logits)[0], temperature, top_k, rng)))
            if k + 1 < length:
                logits, state = step(np.array(out[-1:]), state)
    return decode(out)
