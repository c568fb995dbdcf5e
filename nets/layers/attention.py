"""Attention over encoder states, and an encoder-decoder (seq2seq) built on it.

Scores compare a query (the decoder state) with every key (encoder state); a softmax over the
keys, with padded keys masked out, weights the values into one context vector:
- dot-product (Luong et al. 2015): score = q . k, optionally scaled by 1/sqrt(d) (Vaswani et
  al. 2017) or through a learned matrix, q W . k ("general");
- additive (Bahdanau et al. 2015): score = v . tanh(q W_q + k W_k).
Queries are (batch, query_size) for one decoder step or (batch, steps, query_size) for many;
keys and values are (batch, time, size); `mask` (batch, time) is 1 for real keys, 0 for padding.
Every call returns (context, weights).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend, init
from .. import functional as F
from ..module import Module, Parameter
from ..tensor import Tensor, no_grad
from .dense import Linear
from .embedding import Embedding
from .recurrent import LSTM, LSTMCell

_NEG = -1e9  # added to the scores of padded keys: exp() of it is 0 in float32 and float64


def _as_steps(query):
    """(batch, size) -> (batch, 1, size), remembering whether to squeeze the result back."""
    if query.ndim == 2:
        return F.reshape(query, (query.shape[0], 1, query.shape[1])), True
    if query.ndim == 3:
        return query, False
    raise ValueError(f"a query is (batch, size) or (batch, steps, size), got {tuple(query.shape)}")


def _check_keys(keys, values, mask):
    if keys.ndim != 3:
        raise ValueError(f"keys must be (batch, time, size), got {tuple(keys.shape)}")
    if values.ndim != 3 or values.shape[:2] != keys.shape[:2]:
        raise ValueError(f"values must be (batch, time, size) with keys' batch and time "
                         f"{tuple(keys.shape[:2])}, got {tuple(values.shape)}")
    if mask is not None and tuple(mask.shape) != tuple(keys.shape[:2]):
        raise ValueError(f"mask must be (batch, time) = {tuple(keys.shape[:2])}, got {tuple(mask.shape)}")


def masked_softmax(scores, mask=None):
    """softmax over the last axis (the keys) of scores (batch, steps, time), padded keys at 0."""
    if mask is not None:
        data = scores.data if isinstance(scores, Tensor) else scores
        xp = backend.get_array_module(data)
        m = xp.asarray(mask.data if isinstance(mask, Tensor) else mask, dtype=data.dtype)
        scores = scores + (1 - m[:, None, :]) * data.dtype.type(_NEG)
    return F.softmax(scores, axis=-1)


def _attend(scores, values, mask, squeeze):
    weights = masked_softmax(scores, mask)
    context = F.matmul(weights, values)
    if squeeze:
        b = context.shape[0]
        return F.reshape(context, (b, context.shape[2])), F.reshape(weights, (b, weights.shape[2]))
    return context, weights


def dot_attention(query, keys, values=None, mask=None, scale: float | None = None):
    """Dot-product attention: query (batch, [steps,] d), keys (batch, time, d), values (batch,
    time, dv) (default: the keys) -> (context (batch, [steps,] dv), weights (batch, [steps,] time))."""
    values = keys if values is None else values
    _check_keys(keys, values, mask)
    q, squeeze = _as_steps(query)
    if q.shape[2] != keys.shape[2]:
        raise ValueError(f"dot attention needs query and key sizes equal, got {q.shape[2]} and {keys.shape[2]}")
    scores = F.matmul(q, F.transpose(keys, (0, 2, 1)))
    if scale is not None:
        scores = scores * scale
    return _attend(scores, values, mask, squeeze)


class DotAttention(Module):
    """Dot-product attention. `scaled` divides scores by sqrt(key size); with `query_size` and
    `key_size` given, a learned matrix maps the query first (Luong's "general" score)."""

    def __init__(self, query_size: int | None = None, key_size: int | None = None, scaled: bool = False):
        super().__init__()
        self.scaled = scaled
        self.w = None
        if query_size is not None and key_size is not None:
            self.w = Parameter(init.glorot_uniform((query_size, key_size)))

    def forward(self, query, keys, values=None, mask=None):
        if self.w is not None:
            query = F.linear(query, self.w)
        scale = 1.0 / math.sqrt(keys.shape[2]) if self.scaled else None
        return dot_attention(query, keys, values, mask, scale)

    def extra_repr(self) -> str:
        general = "" if self.w is None else f"{self.w.shape[0]} -> {self.w.shape[1]}, "
        return f"{general}scaled={self.scaled}"


class AdditiveAttention(Module):
    """Additive attention (Bahdanau et al. 2015): score = v . tanh(q W_q + k W_k + b).

    The key projection is the same at every decoder step: compute it once with
    `project_keys(keys)` and pass it as `projected` to each call."""

    def __init__(self, query_size: int, key_size: int, size: int):
        super().__init__()
        self.query_size, self.key_size, self.size = query_size, key_size, size
        self.w_q = Parameter(init.glorot_uniform((query_size, size)))
        self.w_k = Parameter(init.glorot_uniform((key_size, size)))
        self.b = Parameter(init.zeros(size))
        self.v = Parameter(init.glorot_uniform((size, 1)))

    def project_keys(self, keys):
        return F.linear(keys, self.w_k, self.b)

    def forward(self, query, keys, values=None, mask=None, projected=None):
        values = keys if values is None else values
        _check_keys(keys, values, mask)
        q, squeeze = _as_steps(query)
        pk = self.project_keys(keys) if projected is None else projected
        b, steps, tk = q.shape[0], q.shape[1], keys.shape[1]
        pq = F.reshape(F.linear(q, self.w_q), (b, steps, 1, self.size))
        hidden = F.tanh(pq + F.reshape(pk, (b, 1, tk, self.size)))  # (batch, steps, time, size)
        scores = F.reshape(F.linear(hidden, self.v), (b, steps, tk))
        return _attend(scores, values, mask, squeeze)

    def extra_repr(self) -> str:
        return f"query {self.query_size}, key {self.key_size}, size {self.size}"


def _rows(x, rows):
    """Rows of a Tensor's or array's first axis, as an array (decoding records no graph)."""
    return (x.data if isinstance(x, Tensor) else x)[rows]


class Seq2Seq(Module):
    """Encoder-decoder with attention for token sequences.

    Encoder: embedding -> `layers` bidirectional LSTM layers (the top layer's outputs of both
    directions, concatenated, are the keys). Decoder: `layers` stacked LSTMCells; the first is fed
    [embedding of the previous token, previous context] ("input feeding", Luong et al. 2015); the
    top h queries the attention; logits come from a dense layer on [top h, context]. The decoder
    layers start from tanh(W [final h of every encoder cell]). `shared_embedding` uses one table
    for both sides (one vocabulary, e.g. a chatbot's).

    `forward(src, tgt_in, src_mask)` trains with teacher forcing (tgt_in is the target shifted
    right, starting with the start token) and returns logits (batch, steps, tgt_vocab);
    `greedy_decode` feeds back its own most likely tokens, `beam_decode` keeps the `beam` most
    likely hypotheses at each step.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, embed: int = 32, hidden: int = 64,
                 attention: str = "additive", layers: int = 1, shared_embedding: bool = False):
        super().__init__()
        if attention not in ("additive", "dot"):
            raise ValueError(f"attention must be 'additive' or 'dot', got {attention!r}")
        if shared_embedding and src_vocab != tgt_vocab:
            raise ValueError(f"a shared embedding needs one vocabulary, got {src_vocab} and {tgt_vocab}")
        small = lambda shape: init.normal(shape, 0.1)  # noqa: E731 - embeddings start small
        self.hidden, self.layers = hidden, layers
        self.src_embed = Embedding(src_vocab, embed, initializer=small)
        self.tgt_embed = None if shared_embedding else Embedding(tgt_vocab, embed, initializer=small)
        self.encoder = LSTM(embed, hidden, num_layers=layers, bidirectional=True)
        self.bridge = Linear(2 * hidden * layers, hidden * layers)
        self.decoder = LSTMCell(embed + 2 * hidden, hidden)
        self.upper = []  # the decoder's layers above the first
        for layer in range(1, layers):
            cell = LSTMCell(hidden, hidden)
            setattr(self, f"decoder{layer + 1}", cell)
            self.upper.append(cell)
        self.attention = (AdditiveAttention(hidden, 2 * hidden, hidden) if attention == "additive"
                          else DotAttention(hidden, 2 * hidden, scaled=True))
        self.out = Linear(3 * hidden, tgt_vocab)

    def encode(self, src, src_mask=None):
        """src ids (batch, time) -> (keys (batch, time, 2 hidden), projected keys or None,
        the decoder's initial state (a list of (h, c), one per layer), the initial context (zeros))."""
        keys, finals = self.encoder(self.src_embed(src), mask=src_mask)  # (h, c) of every cell
        h0 = F.tanh(self.bridge(F.concat([h for h, _ in finals], axis=1)))
        xp = backend.get_array_module(h0.data)
        zeros = xp.zeros((h0.shape[0], self.hidden), dtype=h0.dtype)
        state = [(h0[:, k * self.hidden:(k + 1) * self.hidden], zeros) for k in range(self.layers)]
        projected = self.attention.project_keys(keys) if isinstance(self.attention, AdditiveAttention) else None
        context = xp.zeros((h0.shape[0], 2 * self.hidden), dtype=h0.dtype)
        return keys, projected, state, context

    def decode_step(self, token, state, context, keys, projected, src_mask=None):
        """One decoder step: previous tokens (batch,) -> (logits, state, context, weights)."""
        embed = self.src_embed if self.tgt_embed is None else self.tgt_embed
        h, first = self.decoder(F.concat([embed(token), context], axis=1), state[0])
        new_state = [first]
        for cell, previous in zip(self.upper, state[1:]):
            h, new = cell(h, previous)
            new_state.append(new)
        if projected is not None:
            context, weights = self.attention(h, keys, mask=src_mask, projected=projected)
        else:
            context, weights = self.attention(h, keys, mask=src_mask)
        return self.out(F.concat([h, context], axis=1)), new_state, context, weights

    def forward(self, src, tgt_in, src_mask=None):
        keys, projected, state, context = self.encode(src, src_mask)
        logits = []
        for t in range(tgt_in.shape[1]):
            step_logits, state, context, _ = self.decode_step(tgt_in[:, t], state, context, keys,
                                                              projected, src_mask)
            logits.append(step_logits)
        return F.stack(logits, axis=1)

    def greedy_decode(self, src, start: int, steps: int, src_mask=None, attention: bool = False,
                      banned: tuple[int, ...] = ()):
        """Token ids (batch, steps) chosen greedily, starting from the `start` token, never one of
        `banned` (padding, the start token); with `attention`, also the attention weights of
        every step (batch, steps, source time)."""
        with no_grad():
            keys, projected, state, context = self.encode(src, src_mask)
            xp = backend.get_array_module(keys.data)
            token = xp.full(src.shape[0], start, dtype=np.int64)
            out, maps = [], []
            for _ in range(steps):
                logits, state, context, weights = self.decode_step(token, state, context, keys,
                                                                   projected, src_mask)
                token = _without(logits.data, banned).argmax(axis=1)
                out.append(backend.to_host(token))
                maps.append(backend.to_host(weights.data))
        tokens = np.stack(out, axis=1)
        return (tokens, np.stack(maps, axis=1)) if attention else tokens

    def beam_decode(self, src, start: int, end: int, steps: int, beam: int = 5,
                    src_mask=None, banned: tuple[int, ...] = ()) -> np.ndarray:
        """Token ids (batch, steps) by beam search: each step extends the `beam` most likely
        hypotheses of every source by every token but the `banned` and keeps the `beam` most
        likely of those; a hypothesis that produced `end` is finished (it extends only by `end`,
        at no cost). The answer is the hypothesis with the best log-probability per token up to
        its `end`."""
        if beam < 1:
            raise ValueError(f"beam must be >= 1, got {beam}")
        batch = src.shape[0]
        with no_grad():
            keys, projected, state, context = self.encode(src, src_mask)
            xp = backend.get_array_module(keys.data)
            rows = xp.repeat(xp.arange(batch), beam)  # each source once per hypothesis
            keys, context = _rows(keys, rows), _rows(context, rows)
            projected = None if projected is None else _rows(projected, rows)
            src_mask = None if src_mask is None else _rows(xp.asarray(src_mask), rows)
            state = [tuple(_rows(part, rows) for part in layer) for layer in state]
            scores = np.full((batch, beam), -np.inf)
            scores[:, 0] = 0  # the hypotheses start as copies of one: only the first is live
            history = np.zeros((batch * beam, 0), dtype=np.int64)
            finished = np.zeros(batch * beam, dtype=bool)
            token = xp.full(batch * beam, start, dtype=np.int64)
            for _ in range(steps):
                logits, state, context, _ = self.decode_step(token, state, context, keys, projected,
                                                             src_mask)
                z = _without(backend.to_host(logits.data).astype(np.float64), banned)
                z -= z.max(axis=1, keepdims=True)
                log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
                log_probs[finished] = -np.inf
                log_probs[finished, end] = 0
                vocab = log_probs.shape[1]
                total = (scores.reshape(-1, 1) + log_probs).reshape(batch, beam * vocab)
                best = np.argsort(-total, axis=1, kind="stable")[:, :beam]
                scores = np.take_along_axis(total, best, axis=1)
                origin = (np.arange(batch)[:, None] * beam + best // vocab).reshape(-1)
                chosen = (best % vocab).reshape(-1)
                history = np.concatenate([history[origin], chosen[:, None]], axis=1)
                finished = finished[origin] | (chosen == end)
                picked = xp.asarray(origin)
                state = [tuple(_rows(part, picked) for part in layer) for layer in state]
                context, token = _rows(context, picked), xp.asarray(chosen)
                if finished.all():
                    break
        ended = history == end
        lengths = np.where(ended.any(axis=1), ended.argmax(axis=1) + 1, history.shape[1])
        best = (scores.reshape(-1) / lengths).reshape(batch, beam).argmax(axis=1)
        tokens = np.full((batch, steps), end, dtype=np.int64)
        tokens[:, :history.shape[1]] = history.reshape(batch, beam, -1)[np.arange(batch), best]
        return tokens


def _without(logits, banned: tuple[int, ...]):
    """`logits` with the `banned` tokens' made -inf (a copy where there are any)."""
    if not banned:
        return logits
    logits = logits.copy()
    logits[:, list(banned)] = -np.inf
    return logits
