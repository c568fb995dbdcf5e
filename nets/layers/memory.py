"""External memory: content-based addressing, a Neural Turing Machine (Graves et al. 2014), an
end-to-end memory network (Sukhbaatar et al. 2015) and a dynamic memory network (Kumar et al.
2016; Xiong et al. 2016).

Addressing (NTM section 3.3), for a memory M (batch, N, width) and a head's previous weighting:
    content    w_c = softmax(beta * cosine(key, M[i]))          beta = softplus(.) >= 0
    gate       w_g = g * w_c + (1 - g) * w_prev                 g = sigmoid(.)
    shift      w_s[i] = sum_j s[j] * w_g[i - j], j in -r..r     s = softmax(.) (circular)
    sharpen    w[i] = w_s[i]^gamma / sum_k w_s[k]^gamma          gamma = 1 + softplus(.)
Reading gives r = sum_i w[i] M[i]; writing erases then adds:
    M[i] <- M[i] * (1 - w[i] e) + w[i] a                          e = sigmoid(.), a = tanh(.)

`cosine_similarity`, `content_addressing` and `sharpen` are composed from nets.functional (any
shapes, any use). The NTM runs its heads through two fused ops, `NTMAddressing` (all four steps
from the head's raw parameters) and `MemoryWrite`, because a recurrent model pays the per-op
overhead at every time step: per step and head that is two ops instead of about forty.
"""
from __future__ import annotations

import numpy as np

from .. import backend, init
from .. import functional as F
from ..module import Module, Parameter
from ..tensor import Function, Tensor
from .dense import Linear
from .embedding import Embedding
from .recurrent import GRU, LSTMCell

EPS = 1e-6  # keeps norms of an all-zero row, and logs of a zero weight, finite
_NEG = -1e9  # added to the scores of padded memories: exp() of it is 0 in float32 and float64

_xp = backend.get_array_module


# -- composable addressing ------------------------------------------------------------------------
def cosine_similarity(keys, memory, eps: float = EPS):
    """Cosine similarity of each key with each memory row: keys (batch, k, width) or
    (batch, width), memory (batch, N, width) -> (batch, k, N) or (batch, N)."""
    squeeze = keys.ndim == 2
    if squeeze:
        keys = F.reshape(keys, (keys.shape[0], 1, keys.shape[1]))
    if memory.ndim != 3 or keys.shape[0] != memory.shape[0] or keys.shape[2] != memory.shape[2]:
        raise ValueError(f"cosine_similarity: keys {tuple(keys.shape)} do not fit memory "
                         f"{tuple(memory.shape)}; expected (batch, [k,] width) and (batch, N, width)")
    dots = F.matmul(keys, F.transpose(memory, (0, 2, 1)))
    key_norms = F.sqrt(F.sum(keys * keys, axis=2, keepdims=True) + eps)
    row_norms = F.sqrt(F.sum(memory * memory, axis=2) + eps)
    sims = dots / (key_norms * F.reshape(row_norms, (memory.shape[0], 1, memory.shape[1])))
    return F.reshape(sims, (sims.shape[0], sims.shape[2])) if squeeze else sims


def content_addressing(memory, key, beta):
    """softmax over rows of beta * cosine(key, row): memory (batch, N, width), key (batch, width),
    beta (batch, 1) key strengths >= 0 -> weights (batch, N)."""
    return F.softmax(cosine_similarity(key, memory) * beta, axis=-1)


def sharpen(weights, gamma, eps: float = EPS):
    """w^gamma / sum(w^gamma) along the last axis, gamma (batch, 1) >= 1."""
    powered = F.exp(F.log(weights + eps) * gamma)
    return powered / F.sum(powered, axis=-1, keepdims=True)


def circular_shift(weights, shift):
    """w_s[i] = sum_j shift[j] * w[(i - (j - r)) mod N]: weights (batch, N), shift (batch, 2r+1)."""
    n, r = weights.shape[1], shift.shape[1] // 2
    total = None
    for j in range(shift.shape[1]):
        rolled = F.getitem(weights, (slice(None), (np.arange(n) - (j - r)) % n))
        term = rolled * shift[:, j:j + 1]
        total = term if total is None else total + term
    return total


# -- fused NTM head ops ---------------------------------------------------------------------------
def _sigmoid(xp, x):
    return xp.tanh(x * 0.5) * 0.5 + 0.5


def _softmax(xp, x):
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def address_size(width: int, shift_range: int) -> int:
    """Length of a head's raw addressing parameters: key, beta, gate, gamma, 2r+1 shifts."""
    return width + 3 + 2 * shift_range + 1


class NTMAddressing(Function):
    """Content, gate, shift and sharpening in one op: (memory (b, N, width), raw (b, width + 3 +
    2r+1) laid out [key, beta, gate, gamma, shifts], previous weights (b, N)) -> weights (b, N)."""

    def __init__(self, shift_range: int):
        self.r = shift_range

    def forward(self, memory, raw, w_prev):
        xp = _xp(memory)
        b, n, width = memory.shape
        if raw.shape != (b, address_size(width, self.r)) or w_prev.shape != (b, n):
            raise ValueError(f"NTM addressing: raw {raw.shape} or previous weights {w_prev.shape} do "
                             f"not fit memory {memory.shape}; expected ({b}, "
                             f"{address_size(width, self.r)}) and ({b}, {n})")
        key = raw[:, :width]
        beta = xp.logaddexp(raw[:, width:width + 1], 0)
        gate = _sigmoid(xp, raw[:, width + 1:width + 2])
        gamma = 1 + xp.logaddexp(raw[:, width + 2:width + 3], 0)
        shift = _softmax(xp, raw[:, width + 3:])
        row_norm = xp.sqrt((memory * memory).sum(axis=2) + EPS)
        key_norm = xp.sqrt((key * key).sum(axis=1, keepdims=True) + EPS)
        dots = xp.matmul(memory, key[:, :, None])[:, :, 0]
        cos = dots / (row_norm * key_norm)
        w_c = _softmax(xp, beta * cos)
        w_g = gate * w_c + (1 - gate) * w_prev
        rolls = [(xp.arange(n) - (j - self.r)) % n for j in range(2 * self.r + 1)]
        w_s = sum(shift[:, j:j + 1] * w_g[:, idx] for j, idx in enumerate(rolls))
        log_s = xp.log(w_s + EPS)
        p = xp.exp(gamma * log_s)
        w = p / p.sum(axis=1, keepdims=True)
        self.saved = (memory, raw, w_prev, key, beta, gate, gamma, shift, row_norm, key_norm, cos,
                      w_c, w_g, w_s, log_s, p, w, rolls)
        return w

    def backward(self, gw):
        xp = _xp(gw)
        (memory, raw, w_prev, key, beta, gate, gamma, shift, row_norm, key_norm, cos, w_c, w_g,
         w_s, log_s, p, w, rolls) = self.saved
        width = memory.shape[2]
        # sharpen: w = p / sum p, p = exp(gamma log(w_s + eps))
        gp = (gw - (gw * w).sum(axis=1, keepdims=True)) / p.sum(axis=1, keepdims=True)
        g_gamma = (gp * p * log_s).sum(axis=1, keepdims=True)
        g_ws = gp * p * gamma / (w_s + EPS)
        # shift: w_s = sum_j s_j roll_j(w_g)
        g_shift = xp.stack([(g_ws * w_g[:, idx]).sum(axis=1) for idx in rolls], axis=1)
        g_wg = xp.zeros_like(w_g)
        for j, idx in enumerate(rolls):
            g_wg[:, idx] += shift[:, j:j + 1] * g_ws
        # gate
        g_wc = gate * g_wg
        g_prev = (1 - gate) * g_wg
        g_gate = (g_wg * (w_c - w_prev)).sum(axis=1, keepdims=True)
        # content: w_c = softmax(beta cos), cos = dots / (row_norm key_norm)
        gz = w_c * (g_wc - (g_wc * w_c).sum(axis=1, keepdims=True))
        g_beta = (gz * cos).sum(axis=1, keepdims=True)
        g_cos = gz * beta
        g_dots = g_cos / (row_norm * key_norm)
        g_row = -g_cos * cos / row_norm
        g_keynorm = -(g_cos * cos).sum(axis=1, keepdims=True) / key_norm
        g_memory = g_dots[:, :, None] * key[:, None, :] + (g_row / row_norm)[:, :, None] * memory
        g_key = xp.matmul(g_dots[:, None, :], memory)[:, 0, :] + g_keynorm * key / key_norm
        # raw parameters through their activations
        g_raw = xp.empty_like(raw)
        g_raw[:, :width] = g_key
        g_raw[:, width:width + 1] = g_beta * _sigmoid(xp, raw[:, width:width + 1])
        g_raw[:, width + 1:width + 2] = g_gate * gate * (1 - gate)
        g_raw[:, width + 2:width + 3] = g_gamma * _sigmoid(xp, raw[:, width + 2:width + 3])
        g_raw[:, width + 3:] = shift * (g_shift - (g_shift * shift).sum(axis=1, keepdims=True))
        return g_memory, g_raw, g_prev


class MemoryWrite(Function):
    """M * (1 - w e^T) + w a^T per sample: (memory (b, N, width), weights (b, N), raw (b, 2 width)
    laid out [erase, add]) -> the new memory; e = sigmoid, a = tanh of the raw halves."""

    def forward(self, memory, w, raw):
        xp = _xp(memory)
        width = memory.shape[2]
        if raw.shape != (memory.shape[0], 2 * width) or w.shape != memory.shape[:2]:
            raise ValueError(f"NTM write: weights {w.shape} or raw {raw.shape} do not fit memory "
                             f"{memory.shape}; expected {memory.shape[:2]} and "
                             f"({memory.shape[0]}, {2 * width})")
        self.memory, self.w = memory, w
        self.erase, self.add = _sigmoid(xp, raw[:, :width]), xp.tanh(raw[:, width:])
        self.keep = 1 - w[:, :, None] * self.erase[:, None, :]
        return memory * self.keep + w[:, :, None] * self.add[:, None, :]

    def backward(self, g):
        xp = _xp(g)
        w3 = self.w[:, :, None]
        g_memory = g * self.keep
        g_w = (g * (self.add[:, None, :] - self.memory * self.erase[:, None, :])).sum(axis=2)
        g_erase = -(g * self.memory * w3).sum(axis=1)
        g_add = (g * w3).sum(axis=1)
        g_raw = xp.concatenate([g_erase * self.erase * (1 - self.erase),
                                g_add * (1 - self.add * self.add)], axis=1)
        return g_memory, g_w, g_raw


def ntm_address(memory, raw, w_prev, shift_range: int = 1):
    return NTMAddressing(shift_range)(memory, raw, w_prev)


def memory_write(memory, weights, raw):
    return MemoryWrite()(memory, weights, raw)


def memory_read(memory, weights):
    """sum_i w[i] M[i]: memory (b, N, width), weights (b, N) -> (b, width)."""
    b, n = weights.shape
    return F.reshape(F.matmul(F.reshape(weights, (b, 1, n)), memory), (b, memory.shape[2]))


# -- Neural Turing Machine ------------------------------------------------------------------------
class NTM(Module):
    """An LSTM controller with read and write heads over an N x width memory (Graves et al. 2014).

    Each step the controller reads [x_t, the previous reads]; one linear layer turns its state
    into every head's raw parameters; write heads write (in order), then read heads read the
    updated memory; the output is a linear map of [controller state, reads]. The memory starts
    at a small constant and every head's weighting at row 0, so location-based shifting works
    from the first step (the memory itself is state, not a parameter).

    forward(x (batch, time, input)) -> (batch, time, output).
    """

    def __init__(self, input_size: int, output_size: int, controller_size: int = 100,
                 memory_size: int = 128, memory_width: int = 20, read_heads: int = 1,
                 write_heads: int = 1, shift_range: int = 1):
        super().__init__()
        if min(memory_size, memory_width, read_heads, write_heads) < 1 or shift_range < 0:
            raise ValueError("NTM needs memory_size, memory_width, read_heads and write_heads >= 1 "
                             f"and shift_range >= 0, got {memory_size}, {memory_width}, {read_heads}, "
                             f"{write_heads}, {shift_range}")
        if 2 * shift_range + 1 > memory_size:
            raise ValueError(f"shift_range {shift_range} needs a memory of at least "
                             f"{2 * shift_range + 1} rows, got {memory_size}")
        self.input_size, self.output_size = input_size, output_size
        self.memory_size, self.memory_width = memory_size, memory_width
        self.read_heads, self.write_heads, self.shift_range = read_heads, write_heads, shift_range
        self.addr = address_size(memory_width, shift_range)
        reads = read_heads * memory_width
        self.controller = LSTMCell(input_size + reads, controller_size)
        self.heads = Linear(controller_size, (read_heads + write_heads) * self.addr
                            + write_heads * 2 * memory_width)
        self.output = Linear(controller_size + reads, output_size)

    def initial_state(self, batch: int, xp=np, dtype=np.float32):
        """(memory, head weightings, reads, controller state) before the first step."""
        memory = xp.full((batch, self.memory_size, self.memory_width), EPS, dtype=dtype)
        focus = xp.zeros((batch, self.memory_size), dtype=dtype)
        focus[:, 0] = 1
        heads = [focus] * (self.read_heads + self.write_heads)
        reads = [xp.zeros((batch, self.memory_width), dtype=dtype)] * self.read_heads
        return memory, heads, reads, None

    def step(self, x, state):
        """One time step: x (batch, input) -> (output (batch, output), new state)."""
        memory, weights, reads, controller = state
        h, controller = self.controller(F.concat([x, *reads], axis=1), controller)
        raw = self.heads(h)
        r, a, width = self.read_heads, self.addr, self.memory_width
        new_weights = []
        for k in range(self.write_heads):  # write heads sit after the read heads
            start = r * a + k * (a + 2 * width)
            w = ntm_address(memory, raw[:, start:start + a], weights[r + k], self.shift_range)
            memory = memory_write(memory, w, raw[:, start + a:start + a + 2 * width])
            new_weights.append(w)
        reads = []
        for k in range(r):
            w = ntm_address(memory, raw[:, k * a:(k + 1) * a], weights[k], self.shift_range)
            reads.append(memory_read(memory, w))
            new_weights.insert(k, w)
        out = self.output(F.concat([h, *reads], axis=1))
        return out, (memory, new_weights, reads, controller)

    def forward(self, x, state=None):
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"NTM expects (batch, time, {self.input_size}) input, got {tuple(x.shape)}")
        data = x.data if isinstance(x, Tensor) else x
        if state is None:
            state = self.initial_state(x.shape[0], _xp(data), data.dtype)
        outputs = []
        for t in range(x.shape[1]):
            out, state = self.step(x[:, t], state)
            outputs.append(out)
        return F.stack(outputs, axis=1)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.output_size}, memory={self.memory_size}x{self.memory_width}, "
                f"read_heads={self.read_heads}, write_heads={self.write_heads}")


# -- end-to-end memory network --------------------------------------------------------------------
def position_encoding(words: int, dim: int, dtype=np.float32) -> np.ndarray:
    """(words, dim) weights l_kj = (1 - j/J) - (k/d)(1 - 2j/J) (Sukhbaatar et al. 2015, sec. 4.1),
    1-based j and k, so that a sentence's embedding depends on its word order."""
    j = np.arange(1, words + 1)[:, None] / words
    k = np.arange(1, dim + 1)[None, :] / dim
    return ((1 - j) - k * (1 - 2 * j)).astype(dtype)


class MemoryNetwork(Module):
    """End-to-end memory network (MemN2N) over token ids; id 0 is padding.

    story (batch, memories, words) sentences and query (batch, words) -> answer logits (batch,
    vocabulary). Each sentence is embedded as a position-weighted sum of its word embeddings,
    plus a learned temporal embedding of its slot (the most recent sentence last). Each of the
    `hops` reads the input memory m_i = A_k(x_i) with attention p = softmax(u . m_i), adds the
    output memory o = sum p_i c_i (c_i = C_k(x_i)) to the controller u, and passes u on. Weights
    are tied adjacently: A_{k+1} = C_k, the query embedding B = A_1, and the answer matrix is
    C_K's transpose. All-padding sentences are never attended to.
    """

    def __init__(self, vocabulary: int, dim: int = 20, hops: int = 3, memories: int = 50,
                 words: int = 12):
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        self.vocabulary, self.dim, self.hops = vocabulary, dim, hops
        self.memories, self.words = memories, words
        self.embeddings = []
        for k in range(hops + 1):  # A_1 (= B), C_1 (= A_2), ..., C_K
            table = Embedding(vocabulary, dim, initializer=lambda shape: init.normal(shape, 0.1))
            setattr(self, f"embed{k}", table)
            self.embeddings.append(table)
        self.temporal = [Parameter(init.normal((memories, dim), 0.1)) for _ in range(hops + 1)]
        for k, table in enumerate(self.temporal):
            setattr(self, f"temporal{k}", table)
        self.register_buffer("encoding", position_encoding(words, dim))

    def _sentences(self, ids, k: int, mask):
        """(batch, memories, words) ids -> (batch, memories, dim) with embedding table k."""
        vectors = self.embeddings[k](ids) * (mask[..., None] * self.encoding)
        return F.sum(vectors, axis=-2)

    def forward(self, story, query):
        xp = _xp(self.encoding)
        story = xp.asarray(story.data if isinstance(story, Tensor) else story)
        query = xp.asarray(query.data if isinstance(query, Tensor) else query)
        if story.ndim != 3 or story.shape[1:] != (self.memories, self.words) or \
                query.shape != (story.shape[0], self.words):
            raise ValueError(f"MemoryNetwork expects story (batch, {self.memories}, {self.words}) and "
                             f"query (batch, {self.words}) ids, got {story.shape} and {query.shape}")
        dtype = self.encoding.dtype
        word_mask = (story != 0).astype(dtype)
        slot_mask = word_mask.max(axis=2)  # 0 for an all-padding sentence
        u = self._sentences(query[:, None, :], 0, (query != 0).astype(dtype)[:, None, :])
        u = F.reshape(u, (query.shape[0], self.dim))
        memory_in = self._sentences(story, 0, word_mask) + self.temporal[0]
        penalty = (1 - slot_mask) * dtype.type(_NEG)
        for k in range(1, self.hops + 1):
            memory_out = self._sentences(story, k, word_mask) + self.temporal[k]
            scores = F.reshape(F.matmul(memory_in, F.reshape(u, (u.shape[0], self.dim, 1))),
                               (u.shape[0], self.memories)) + penalty
            p = F.softmax(scores, axis=-1)
            o = F.reshape(F.matmul(F.reshape(p, (u.shape[0], 1, self.memories)), memory_out),
                          (u.shape[0], self.dim))
            u = u + o
            memory_in = memory_out
        return F.matmul(u, F.transpose(self.embeddings[-1].weight))

    def extra_repr(self) -> str:
        return (f"vocabulary={self.vocabulary}, dim={self.dim}, hops={self.hops}, "
                f"memories={self.memories}, words={self.words}")


# -- dynamic memory network -----------------------------------------------------------------------
class AttentionGRU(Function):
    """The attention GRU of DMN+ (Xiong et al. 2016) over a whole sequence in one op: a GRU whose
    update gate is given, one attention weight g_i per step:
        r = sigmoid(xr_i + h U_r),  h~ = tanh(xh_i + r * (h U_h)),  h_i = g_i h~ + (1 - g_i) h_{i-1}
    (xr, xh (batch, steps, hidden): the inputs' projections, biases included; u_r, u_h (hidden,
    hidden); gates (batch, steps)) -> the last h (batch, hidden), from h_0 = 0. One op, not a
    dozen per step, because the episodic memory runs it once per episode."""

    def forward(self, xr, xh, u_r, u_h, gates):
        xp = _xp(xr)
        batch, steps, hidden = xr.shape
        h = xp.zeros((batch, hidden), dtype=xr.dtype)
        self.saved = []
        for i in range(steps):
            uh = h @ u_h
            r = _sigmoid(xp, xr[:, i] + h @ u_r)
            candidate = xp.tanh(xh[:, i] + r * uh)
            self.saved.append((h, r, uh, candidate))
            h = h + gates[:, i:i + 1] * (candidate - h)
        self.u_r, self.u_h, self.gates = u_r, u_h, gates
        return h

    def backward(self, gh):
        xp = _xp(gh)
        steps = len(self.saved)
        dxr, dxh = (xp.empty(gh.shape[:1] + (steps,) + gh.shape[1:], dtype=gh.dtype) for _ in range(2))
        du_r, du_h = xp.zeros_like(self.u_r), xp.zeros_like(self.u_h)
        dgates = xp.empty_like(self.gates)
        for i in range(steps - 1, -1, -1):
            h, r, uh, candidate = self.saved[i]
            gate = self.gates[:, i:i + 1]
            dgates[:, i] = (gh * (candidate - h)).sum(axis=1)
            da_h = gh * gate * (1 - candidate * candidate)  # at tanh's input
            da_r = da_h * uh * r * (1 - r)  # at the reset gate's sigmoid input
            duh = da_h * r
            dxr[:, i], dxh[:, i] = da_r, da_h
            du_r += h.T @ da_r
            du_h += h.T @ duh
            gh = gh * (1 - gate) + da_r @ self.u_r.T + duh @ self.u_h.T
        return dxr, dxh, du_r, du_h, dgates


def attention_gru(xr, xh, u_r, u_h, gates):
    return AttentionGRU()(xr, xh, u_r, u_h, gates)


def _sentence_vectors(embedding, ids, word_mask):
    """(batch, n, words) ids -> (batch, n, dim): position-weighted sums of the word embeddings."""
    encoding = _xp(word_mask).asarray(position_encoding(ids.shape[-1], embedding.dim, word_mask.dtype))
    return F.sum(embedding(ids) * (word_mask[..., None] * encoding), axis=-2)


class DynamicMemoryNetwork(Module):
    """Dynamic memory network (Kumar et al. 2016) with the input module, attention GRU and memory
    update of DMN+ (Xiong et al. 2016), over token ids; id 0 is padding.

    story (batch, sentences, words) and query (batch, words) -> answer logits (batch, vocabulary).
    Facts: each sentence is a position-weighted sum of its word embeddings (as in MemoryNetwork),
    then a bidirectional GRU over the sentences, its two directions summed ("input fusion"). The
    question q is the final state of a GRU over the query's word embeddings. Each of the `hops`
    episodes, from m_0 = q, scores every fact f_i against q and the memory m:
        z_i = [f_i * q, f_i * m, |f_i - q|, |f_i - m|],  g = softmax_i(w2 . tanh(z_i W1 + b1))
    reads the facts in order with an attention GRU (`attention_gru`: g_i is its update gate) and
    updates the memory with the episode c, the GRU's last h: m = relu([m, c, q] W_t + b_t), one
    W_t per episode. The answer is a dense layer on [m, q]. All-padding sentences get no
    attention and leave the GRUs' states unchanged.
    """

    def __init__(self, vocabulary: int, dim: int = 80, hops: int = 3):
        super().__init__()
        if hops < 1:
            raise ValueError(f"hops must be >= 1, got {hops}")
        self.vocabulary, self.dim, self.hops = vocabulary, dim, hops
        self.embed = Embedding(vocabulary, dim, initializer=lambda shape: init.normal(shape, 0.1))
        self.facts = GRU(dim, dim, bidirectional=True, merge="sum")
        self.question = GRU(dim, dim)
        self.gate = Linear(4 * dim, dim)
        self.gate_score = Linear(dim, 1, bias=False)  # a bias would not change the softmax
        self.reset_input, self.candidate_input = Linear(dim, dim), Linear(dim, dim)
        self.reset_hidden = Parameter(init.orthogonal((dim, dim)))
        self.candidate_hidden = Parameter(init.orthogonal((dim, dim)))
        self.updates = []
        for hop in range(hops):
            update = Linear(3 * dim, dim, initializer=init.he_normal)
            setattr(self, f"update{hop + 1}", update)
            self.updates.append(update)
        self.answer = Linear(2 * dim, vocabulary)

    def forward(self, story, query):
        xp = _xp(self.embed.weight.data)
        story = xp.asarray(story.data if isinstance(story, Tensor) else story)
        query = xp.asarray(query.data if isinstance(query, Tensor) else query)
        if story.ndim != 3 or query.shape != (story.shape[0], story.shape[2]):
            raise ValueError(f"DynamicMemoryNetwork expects story (batch, sentences, words) and query "
                             f"(batch, words) ids, got {story.shape} and {query.shape}")
        dtype = self.embed.weight.dtype
        word_mask = (story != 0).astype(dtype)
        slot_mask = word_mask.max(axis=2)  # 0 for an all-padding sentence
        facts, _ = self.facts(_sentence_vectors(self.embed, story, word_mask), mask=slot_mask)
        _, q = self.question(self.embed(query), mask=(query != 0).astype(dtype))
        b, n, d = facts.shape
        reset, candidate = self.reset_input(facts), self.candidate_input(facts)
        penalty = (1 - slot_mask) * dtype.type(_NEG)
        m = q
        for update in self.updates:
            m_wide, q_wide = F.reshape(m, (b, 1, d)), F.reshape(q, (b, 1, d))
            z = F.concat([facts * q_wide, facts * m_wide, F.abs(facts - q_wide), F.abs(facts - m_wide)],
                         axis=2)
            scores = F.reshape(self.gate_score(F.tanh(self.gate(z))), (b, n)) + penalty
            gates = F.softmax(scores, axis=-1) * slot_mask
            episode = attention_gru(reset, candidate, self.reset_hidden, self.candidate_hidden, gates)
            m = F.relu(update(F.concat([m, episode, q], axis=1)))
        return self.answer(F.concat([m, q], axis=1))

    def extra_repr(self) -> str:
        return f"vocabulary={self.vocabulary}, dim={self.dim}, hops={self.hops}"
