"""Recurrent layers: Elman RNN, LSTM, GRU, deep-transition RNN and recurrent highway network, with
stacking, bidirectional runs, variational dropout and padding masks.

Speed comes from the shape of the computation, not from many small ops: a whole sequence is ONE
Function. Its forward projects the inputs of many time steps per matmul (16 at a time, just before
the loop needs them), and loops over time with one BLAS matmul (the recurrent term) and one fused
Numba kernel (all gate math) per step; its backward runs back through time the same way and
finishes with one matmul per weight matrix (one for both of the LSTM's). Buffers are reused
across calls (nets.kernels.workspace).

Shapes: inputs are (batch, time, features); a layer returns (outputs (batch, time, hidden), final
state). The state is `h` (batch, hidden) for RNN/GRU/RHN and `(h, c)` for LSTM; a layer with
several cells (stacked and/or bidirectional) takes and returns a list of cell states in the order
of `cells()`. A `mask` (batch, time) of 0/1 marks padding: at a 0 the state is carried over, so
the final state of a right-padded sequence is its state after its last real step.

Cells (`RNNCell`, `LSTMCell`, `GRUCell`) hold the parameters and run one step (`cell(x_t, state)`,
for acting and generation) or a whole sequence (`cell.sequence(x, ...)`); layers are made of
cells, so a trained layer can be run step by step with `layer.step(x_t, state)`.

Truncated BPTT: pass `detach_state(state)` of one batch as the initial state of the next.
"""
from __future__ import annotations

import numpy as np

from .. import backend, init
from .. import functional as F
from .. import rng as _rng
from ..kernels import dense as dense_kernels
from ..kernels import recurrent as K
from ..kernels import workspace
from ..module import Module, Parameter
from ..tensor import Tensor, Function


# -- helpers ---------------------------------------------------------------------------------------
def _data(x):
    return x.data if isinstance(x, Tensor) else x


def detach_state(state):
    """The same (nested) state with every Tensor cut from its graph: carry it into the next batch
    for truncated backpropagation through time."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(detach_state(s) for s in state)
    return state


def _check_sequence(x, features: int, layer: str) -> None:
    if x.ndim != 3:
        raise ValueError(f"{layer} expects input of shape (batch, time, features), got {tuple(x.shape)}"
                         + ("; for one time step use the cell or step()" if x.ndim == 2 else ""))
    if x.shape[2] != features:
        raise ValueError(f"{layer} was built for {features} input features, got {x.shape[2]} "
                         f"(input shape {tuple(x.shape)})")
    if x.shape[1] == 0:
        raise ValueError(f"{layer} got an empty sequence (time axis of length 0)")


def _sequence_mask(mask, x):
    """mask (batch, time) of 0/1 as a contiguous array of x's dtype; all ones when None."""
    data = _data(x)
    xp = backend.get_array_module(data)
    batch, time = data.shape[:2]
    if mask is None:
        return xp.ones((batch, time), dtype=data.dtype)
    mask = xp.ascontiguousarray(xp.asarray(_data(mask), dtype=data.dtype))
    if mask.shape != (batch, time):
        raise ValueError(f"mask must be (batch, time) = {(batch, time)}, got {tuple(mask.shape)}")
    if not bool(((mask == 0) | (mask == 1)).all()):
        raise ValueError("mask must hold only 0 (padding) and 1 (real step)")
    return mask


def _hidden_mask(hidden_mask, x, hidden: int):
    """The variational dropout mask on h (batch, hidden) as a contiguous array, or None."""
    if hidden_mask is None:
        return None
    data = _data(x)
    xp = backend.get_array_module(data)
    mh = xp.ascontiguousarray(xp.asarray(_data(hidden_mask), dtype=data.dtype))
    if mh.shape != (data.shape[0], hidden):
        raise ValueError(f"hidden_mask must be (batch, hidden) = {(data.shape[0], hidden)}, "
                         f"got {tuple(mh.shape)}")
    return mh


def _dropout_mask(p: float, shape, like):
    """Inverted-dropout mask (kept entries scaled by 1 / (1 - p)) drawn from nets.rng."""
    keep = _rng.generator().random(shape, dtype=np.float32) >= p
    data = _data(like)
    return backend.to_device((keep / np.float32(1 - p)).astype(data.dtype), backend.device_of(data))


def _initial(state, x, hidden: int, what: str):
    """A state Tensor/array checked against (batch, hidden), or zeros when None."""
    data = _data(x)
    if state is None:
        return backend.get_array_module(data).zeros((data.shape[0], hidden), dtype=data.dtype)
    if tuple(state.shape) != (data.shape[0], hidden):
        raise ValueError(f"{what} must be (batch, hidden) = {(data.shape[0], hidden)}, "
                         f"got {tuple(state.shape)}")
    return state


def _order(time: int, reverse: bool):
    return range(time - 1, -1, -1) if reverse else range(time)


_CHUNK = 16  # time steps projected at once (see _Sequence._projector)


def _contiguous(a):
    return backend.get_array_module(a).ascontiguousarray(a)


class _Sequence(Function):
    """Shared by the sequence Functions: the input projection before the loop, the recurrent
    operands, the order of the steps, and the input gradients after the loop. Internally
    time-major (see nets/kernels/recurrent.py); inputs and outputs are batch-major."""

    def __init__(self, mask, hidden_mask, reverse: bool):
        self.mask, self.mh, self.reverse = mask, hidden_mask, reverse

    @staticmethod
    def _take(xp, shape, dtype):
        """A scratch buffer reused across calls once nothing holds it: fresh multi-megabyte arrays
        cost a page fault per 4 KiB on every step."""
        return workspace.take(xp, shape, dtype)

    def _projector(self, x, w_ih, b, out, spare: int = 0):
        """Returns project(t): x (batch, time, in) @ w_ih + b into `out` (time, batch, gates),
        a chunk of steps at a time, called by the loop at every step. Projecting just before
        the loop reaches a chunk leaves its rows in cache for the kernels (one matmul for the
        whole sequence would send them to memory first). x is kept time-major as self.xt, the
        first columns of self.xh (time * batch, in + spare)."""
        xp = backend.get_array_module(x)
        batch, time, features = x.shape
        self.x_shape = x.shape
        self.xh = self._take(xp, (time * batch, features + spare), x.dtype)
        self.xt = self.xh[:, :features]
        self.xt.reshape(time, batch, features)[...] = x.transpose(1, 0, 2)
        rows_out = out.reshape(time * batch, w_ih.shape[1])

        def project(t):
            if (time - 1 - t if self.reverse else t) % _CHUNK:
                return
            first, last = (max(t - _CHUNK + 1, 0), t + 1) if self.reverse else (t, min(t + _CHUNK, time))
            rows = slice(first * batch, last * batch)
            dense_kernels.matmul(self.xt[rows], w_ih, out=rows_out[rows])  # a 1-feature series: outer
            if b is not None:
                rows_out[rows] += b
        return project

    def _operands(self, h0, time: int):
        """(contiguous h0, running state h, Hin: the recurrent matmul operand of every step)."""
        xp = backend.get_array_module(h0)
        h0 = _contiguous(h0)
        if self.mh is None:
            self.mh = xp.ones_like(h0)  # the kernels take one code path
        Hin = self._take(xp, (time + 1,) + h0.shape, h0.dtype)
        Hin[time - 1 if self.reverse else 0] = h0 * self.mh
        return h0, h0.copy(), Hin

    def _steps(self, time: int):
        """(t, next t) in processing order; the last step's next is the scratch row `time`."""
        order = list(_order(time, self.reverse))
        return [(t, order[k + 1] if k + 1 < time else time) for k, t in enumerate(order)]

    def _steps_back(self, time: int):
        """(t, previous t or -1) in backward order."""
        order = list(_order(time, self.reverse))
        return [(t, order[k - 1] if k else -1) for k, t in reversed(list(enumerate(order)))]

    def _input_grads(self, dA2, w_ih, weights: bool = True):
        """(dx (batch, time, in), dw_ih or None) from the gate pre-activation gradients
        (time * batch, gates)."""
        xp = backend.get_array_module(dA2)
        dx = None
        if self.inputs[0].requires_grad:
            batch, time, features = self.x_shape
            dx = self._take(xp, (time, batch, features), dA2.dtype)
            dense_kernels.matmul(dA2, w_ih.T, out=dx.reshape(time * batch, features))
            dx = dx.transpose(1, 0, 2)
        return dx, self._matmul_t(self.xt, dA2) if weights else None

    def _matmul_t(self, a, b):
        """a.T @ b into a reused buffer (the weight gradients, added to .grad and dropped)."""
        xp = backend.get_array_module(a)
        return dense_kernels.matmul(a.T, b, out=self._take(xp, (a.shape[1], b.shape[1]), b.dtype))


class LSTMSequence(_Sequence):
    """The whole-sequence LSTM: inputs (x, w_ih, w_hh, b, h0, c0[, peep]), outputs (h for every
    step, final h, final c). Gates are laid out [input, forget, cell, output]."""

    def forward(self, x, w_ih, w_hh, b, h0, c0, peep=None):
        xp = backend.get_array_module(x)
        batch, time = x.shape[:2]
        hidden = w_hh.shape[0]
        A = self._take(xp, (time, batch, 4 * hidden), x.dtype)
        project = self._projector(x, w_ih, b, A, spare=hidden)
        h0, h, Hin = self._operands(h0, time)
        c0 = _contiguous(c0)
        c = c0.copy()
        Hs = self._take(xp, (batch, time, hidden), x.dtype)
        C = self._take(xp, (time, batch, hidden), x.dtype)
        R = xp.empty((batch, 4 * hidden), dtype=x.dtype)
        self.use_peep = peep is not None
        peep = _contiguous(peep) if self.use_peep else xp.zeros((3, hidden), dtype=x.dtype)
        step = K.for_array("lstm_forward", x)
        for t, tn in self._steps(time):
            project(t)
            K.step_matmul(Hin[t], w_hh, R)
            step(A, R, h, c, Hin, self.mh, Hs, C, self.mask, t, tn, peep, self.use_peep)
        self.A, self.C, self.Hin, self.c0, self.peep = A, C, Hin, c0, peep
        self.w_ih, self.w_hh = w_ih, w_hh
        return Hs, h, c

    def backward(self, dHs, dhT, dcT):
        xp = backend.get_array_module(dHs)
        A, mh = self.A, self.mh
        time, batch, gates = A.shape
        dHs = _contiguous(dHs)
        carry, dc = xp.array(dhT, copy=True), xp.array(dcT, copy=True)
        rec = xp.zeros_like(carry)
        dpeep = xp.zeros_like(self.peep)
        w_hh_t = _contiguous(self.w_hh.T)
        need_h0 = self.inputs[4].requires_grad
        step = K.for_array("lstm_backward", dHs)
        for t, tp in self._steps_back(time):
            step(A, self.C, self.c0, dHs, rec, carry, dc, mh, self.mask, t, tp, self.peep, dpeep,
                 self.use_peep)
            if tp >= 0 or need_h0:
                K.step_matmul(A[t], w_hh_t, rec)
        dA2 = A.reshape(time * batch, gates)
        dx, _ = self._input_grads(dA2, self.w_ih, weights=False)
        # both weight gradients in one matmul: [x, h' * mh] (time * batch, in + hidden) rows
        features = self.xt.shape[1]
        self.xh[:, features:] = self.Hin[:time].reshape(time * batch, -1)
        dw = self._matmul_t(self.xh, dA2)
        grads = (dx, dw[:features], dw[features:], dA2.sum(axis=0), rec * mh + carry if need_h0 else None, dc)
        return grads + (dpeep,) if self.use_peep else grads


class GRUSequence(_Sequence):
    """The whole-sequence GRU: inputs (x, w_ih, w_hh, b, h0), outputs (h for every step, final h).
    Gates are laid out [update z, reset r, candidate n]; see GRUCell for the formulation."""

    def forward(self, x, w_ih, w_hh, b, h0):
        xp = backend.get_array_module(x)
        batch, time = x.shape[:2]
        hidden = w_hh.shape[0]
        A = self._take(xp, (time, batch, 3 * hidden), x.dtype)
        project = self._projector(x, w_ih, b, A)
        h0, h, Hin = self._operands(h0, time)
        Hs = self._take(xp, (batch, time, hidden), x.dtype)
        RH = self._take(xp, (time, batch, hidden), x.dtype)  # r * h' * mh: the operand of U_n
        u_zr, u_n = _contiguous(w_hh[:, :2 * hidden]), _contiguous(w_hh[:, 2 * hidden:])
        R = xp.empty((batch, 2 * hidden), dtype=x.dtype)
        Rn = xp.empty((batch, hidden), dtype=x.dtype)
        gates = K.for_array("gru_gates_forward", x)
        output = K.for_array("gru_output_forward", x)
        for t, tn in self._steps(time):
            project(t)
            K.step_matmul(Hin[t], u_zr, R)
            gates(A, R, Hin, RH, t)
            K.step_matmul(RH[t], u_n, Rn)
            output(A, Rn, h, Hin, self.mh, Hs, self.mask, t, tn)
        self.A, self.Hs, self.Hin, self.RH, self.h0 = A, Hs, Hin, RH, h0
        self.w_ih, self.u_zr, self.u_n = w_ih, u_zr, u_n
        return Hs, h

    def backward(self, dHs, dhT):
        xp = backend.get_array_module(dHs)
        A, Hs, mh = self.A, self.Hs, self.mh
        time, batch, gates = A.shape
        hidden = gates // 3
        dHs = _contiguous(dHs)
        carry = xp.array(dhT, copy=True)
        rec = xp.zeros_like(carry)
        dRH = xp.empty_like(carry)
        u_zr_t, u_n_t = _contiguous(self.u_zr.T), _contiguous(self.u_n.T)
        need_h0 = self.inputs[4].requires_grad
        output = K.for_array("gru_output_backward", dHs)
        gates_back = K.for_array("gru_gates_backward", dHs)
        for t, tp in self._steps_back(time):
            output(A, Hs, self.h0, dHs, rec, carry, mh, self.mask, t, tp)
            K.step_matmul(A[t, :, 2 * hidden:], u_n_t, dRH)
            gates_back(A, self.Hin, dRH, carry, mh, t)
            if tp >= 0 or need_h0:
                K.step_matmul(A[t, :, :2 * hidden], u_zr_t, rec)
        dA2 = A.reshape(time * batch, gates)
        dx, dw_ih = self._input_grads(dA2, self.w_ih)
        dw_hh = xp.concatenate([self._matmul_t(self.Hin[:time].reshape(-1, hidden), dA2[:, :2 * hidden]),
                                self._matmul_t(self.RH.reshape(-1, hidden), dA2[:, 2 * hidden:])], axis=1)
        return dx, dw_ih, dw_hh, dA2.sum(axis=0), rec * mh + carry if need_h0 else None


class TransitionSequence(_Sequence):
    """A recurrent transition of `depth` layers per time step (Pascanu et al. 2014's deep
    transition; depth 1 is the Elman RNN). Inputs (x, w_ih, w_hh, b, h0): w_ih (in, gates),
    w_hh (depth, hidden, gates), b (depth, gates) (or (hidden, gates) and (gates,) for depth 1).
    `highway` picks recurrent highway layers (gates [h, t]) over tanh layers. Outputs (top state
    for every step, final top state)."""

    def __init__(self, mask, hidden_mask, reverse: bool, highway: bool):
        super().__init__(mask, hidden_mask, reverse)
        self.kind = "highway_transition" if highway else "tanh_transition"

    def forward(self, x, w_ih, w_hh, b, h0):
        xp = backend.get_array_module(x)
        self.flat_shapes = w_hh.shape, b.shape
        w_hh = w_hh.reshape(-1, *w_hh.shape[-2:])
        b = _contiguous(b.reshape(w_hh.shape[0], -1))
        batch, time = x.shape[:2]
        depth, hidden, gates = w_hh.shape
        A = self._take(xp, (depth, time, batch, gates), x.dtype)
        project = self._projector(x, w_ih, None, A[0])
        A[1:] = 0  # upper layers have no input term
        h0, h, Hin = self._operands(h0, time)
        s = xp.empty_like(h)  # the state of the layer just computed
        S = self._take(xp, (depth, time, batch, hidden), x.dtype)
        Hs = self._take(xp, (batch, time, hidden), x.dtype)
        R = xp.empty((batch, gates), dtype=x.dtype)
        step = K.for_array(self.kind + "_forward", x)
        for t, tn in self._steps(time):
            project(t)
            for l in range(depth):
                K.step_matmul(Hin[t] if l == 0 else s, w_hh[l], R)
                step(A, R, b, s, h, Hin, self.mh, S, Hs, self.mask, t, l, tn)
        self.A, self.S, self.Hin, self.h0, self.w_ih, self.w_hh = A, S, Hin, h0, w_ih, w_hh
        return Hs, h

    def backward(self, dHs, dhT):
        xp = backend.get_array_module(dHs)
        A, S, w_hh, mh = self.A, self.S, self.w_hh, self.mh
        depth, time, batch, gates = A.shape
        hidden = S.shape[3]
        dHs = _contiguous(dHs)
        dprev = xp.array(dhT, copy=True)  # dL/d(top state of the step being processed)
        ds, dbelow, skip, rec = (xp.empty_like(dprev) for _ in range(4))
        w_hh_t = [_contiguous(w.T) for w in w_hh]
        need_h0 = self.inputs[4].requires_grad
        step = K.for_array(self.kind + "_backward", dHs)
        for t, tp in self._steps_back(time):
            xp.add(dHs[:, t], dprev, out=ds)
            for l in range(depth - 1, -1, -1):
                step(A, S, self.h0, ds, dbelow, skip, self.mask, t, l, tp)
                if l == 0 and tp < 0 and not need_h0:
                    break
                K.step_matmul(A[l, t], w_hh_t[l], rec)
                if l > 0:
                    xp.add(rec, dbelow, out=ds)
                else:
                    dprev = rec * mh + dbelow + skip
        flat = A.reshape(depth, time * batch, gates)
        dx, dw_ih = self._input_grads(flat[0], self.w_ih)
        below = [self.Hin[:time].reshape(-1, hidden)] + [S[l].reshape(-1, hidden) for l in range(depth - 1)]
        dw_hh = xp.stack([self._matmul_t(below[l], flat[l]) for l in range(depth)])
        db = flat.sum(axis=1)
        shape_hh, shape_b = self.flat_shapes
        return (dx, dw_ih, dw_hh.reshape(shape_hh), db.reshape(shape_b),
                dprev if need_h0 else None)


# -- cells: parameters plus one step or one whole sequence ----------------------------------------
def _input_weights(inputs: int, hidden: int, gates: int):
    return np.concatenate([init.glorot_uniform((inputs, hidden)) for _ in range(gates)], axis=1)


def _recurrent_weights(hidden: int, gates: int):
    """One orthogonal (hidden, hidden) block per gate (Saxe et al. 2014)."""
    return np.concatenate([init.orthogonal((hidden, hidden)) for _ in range(gates)], axis=1)


class _Cell(Module):
    gates = 1
    state_size = 1  # 2 for LSTM: (h, c)

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size}, {hidden_size}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.w_ih = Parameter(_input_weights(input_size, hidden_size, self.gates))
        self.w_hh = Parameter(_recurrent_weights(hidden_size, self.gates))
        self.b = Parameter(init.zeros(self.gates * hidden_size))

    def forward(self, x, state=None):
        """One step: x (batch, features) -> (h (batch, hidden), new state)."""
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__} takes one step of shape (batch, features), got "
                             f"{tuple(x.shape)}; for a sequence use .sequence() or the layer")
        x = F.reshape(x, (x.shape[0], 1, x.shape[1])) if isinstance(x, Tensor) else x[:, None, :]
        _, state = self.sequence(x, state)
        return (state[0] if self.state_size == 2 else state), state

    def sequence(self, x, state=None, mask=None, reverse: bool = False, hidden_mask=None):
        """The whole sequence in one fused op: x (batch, time, features) -> (outputs, final state).
        `hidden_mask` (batch, hidden) multiplies h in the recurrent matmul (variational dropout)."""
        _check_sequence(x, self.input_size, type(self).__name__)
        return self._run(x, state, _sequence_mask(mask, x), _hidden_mask(hidden_mask, x, self.hidden_size),
                         reverse)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class RNNCell(_Cell):
    """Elman RNN: h = tanh(x W_ih + h' W_hh + b)."""

    def _run(self, x, state, mask, mh, reverse):
        h0 = _initial(state, x, self.hidden_size, "RNN state")
        return TransitionSequence(mask, mh, reverse, highway=False)(x, self.w_ih, self.w_hh, self.b, h0)


class LSTMCell(_Cell):
    """LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000):
        i = sigmoid(x W_i + h' U_i + b_i [+ p_i * c'])    f = sigmoid(x W_f + h' U_f + b_f [+ p_f * c'])
        g = tanh(x W_g + h' U_g + b_g)                     c = f * c' + i * g
        o = sigmoid(x W_o + h' U_o + b_o [+ p_o * c])      h = o * tanh(c)
    W_ih/W_hh/b hold the gates side by side as [i, f, g, o]. The forget-gate bias starts at 1
    (Jozefowicz et al. 2015). Peepholes (Gers & Schmidhuber 2000) are off by default. The state is
    (h, c)."""

    gates = 4
    state_size = 2

    def __init__(self, input_size: int, hidden_size: int, peepholes: bool = False):
        super().__init__(input_size, hidden_size)
        self.b.data[hidden_size:2 * hidden_size] = 1.0
        self.peepholes = peepholes
        self.peep = Parameter(init.zeros((3, hidden_size))) if peepholes else None

    def _run(self, x, state, mask, mh, reverse):
        if state is None:
            h0 = c0 = None
        elif isinstance(state, (tuple, list)) and len(state) == 2:
            h0, c0 = state
        else:
            raise ValueError("an LSTM state is a pair (h, c)")
        h0 = _initial(h0, x, self.hidden_size, "LSTM h")
        c0 = _initial(c0, x, self.hidden_size, "LSTM c")
        fn = LSTMSequence(mask, mh, reverse)
        args = (x, self.w_ih, self.w_hh, self.b, h0, c0) + ((self.peep,) if self.peepholes else ())
        out, h, c = fn(*args)
        return out, (h, c)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", peepholes=True" if self.peepholes else "")


class GRUCell(_Cell):
    """GRU (Cho et al. 2014), with the reset gate applied to h' BEFORE the recurrent matmul:
        z = sigmoid(x W_z + h' U_z + b_z)        r = sigmoid(x W_r + h' U_r + b_r)
        n = tanh(x W_n + (r * h') U_n + b_n)     h = z * h' + (1 - z) * n
    (cuDNN and PyTorch apply r after the matmul, r * (h' U_n + b), which is a different model.)
    W_ih/W_hh/b hold the gates side by side as [z, r, n]."""

    gates = 3

    def _run(self, x, state, mask, mh, reverse):
        h0 = _initial(state, x, self.hidden_size, "GRU state")
        out, h = GRUSequence(mask, mh, reverse)(x, self.w_ih, self.w_hh, self.b, h0)
        return out, h


# -- layers: stacks of cells, optionally bidirectional, with dropout -----------------------------
_MERGES = ("concat", "sum")


def _merge(a, b, merge: str):
    return F.concat([a, b], axis=-1) if merge == "concat" else a + b


def _check_probability(**values) -> None:
    for name, p in values.items():
        if not 0 <= p < 1:
            raise ValueError(f"{name} must be in [0, 1), got {p}")


class _Recurrent(Module):
    """A stack of `num_layers` cells (two per layer when bidirectional: one reads the sequence
    forward, one backward, and their outputs are concatenated or summed).

    Dropout: `dropout` between layers (a fresh mask per element, as in Zaremba et al. 2014);
    `input_dropout` and `hidden_dropout` are variational (Gal & Ghahramani 2016): one mask per
    sequence, the same at every time step, on each layer's input and on the recurrent h.
    All dropout is active only in training mode (Module.train / eval).
    """

    cell_class: type = _Cell

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bidirectional: bool = False, merge: str = "concat", dropout: float = 0.0,
                 input_dropout: float = 0.0, hidden_dropout: float = 0.0, **cell_options):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if merge not in _MERGES:
            raise ValueError(f"merge must be one of {_MERGES}, got {merge!r}")
        _check_probability(dropout=dropout, input_dropout=input_dropout, hidden_dropout=hidden_dropout)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.merge = bidirectional, merge
        self.dropout, self.input_dropout, self.hidden_dropout = dropout, input_dropout, hidden_dropout
        self.output_size = hidden_size * (2 if bidirectional and merge == "concat" else 1)
        self._names = []
        for layer in range(num_layers):
            features = input_size if layer == 0 else self.output_size
            for suffix in ("", "_reverse") if bidirectional else ("",):
                name = f"l{layer}{suffix}"
                setattr(self, name, self.cell_class(features, hidden_size, **cell_options))
                self._names.append(name)

    def cells(self) -> list:
        """The cells in state order: l0, l0_reverse, l1, l1_reverse, ..."""
        return [getattr(self, name) for name in self._names]

    def _states(self, state) -> list:
        n = len(self._names)
        if state is None:
            return [None] * n
        if n == 1:
            return [state]
        if not isinstance(state, (list, tuple)) or len(state) != n:
            raise ValueError(f"{type(self).__name__} with {n} cells takes a list of {n} states")
        return list(state)

    def forward(self, x, state=None, mask=None, reverse: bool = False):
        """x (batch, time, features) -> (outputs (batch, time, output_size), final state)."""
        name = type(self).__name__
        _check_sequence(x, self.input_size, name)
        states, finals = self._states(state), []
        directions = 2 if self.bidirectional else 1
        out = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout:
                out = F.dropout(out, self.dropout, self.training)
            if self.training and self.input_dropout:
                features = out.shape[2]
                out = out * _dropout_mask(self.input_dropout, (out.shape[0], 1, features), x)
            results = []
            for d in range(directions):
                k = layer * directions + d
                mh = (_dropout_mask(self.hidden_dropout, (x.shape[0], self.hidden_size), x)
                      if self.training and self.hidden_dropout else None)
                cell = getattr(self, self._names[k])
                results.append(cell.sequence(out, states[k], mask, reverse=reverse != (d == 1),
                                             hidden_mask=mh))
                finals.append(results[-1][1])
            out = results[0][0] if directions == 1 else _merge(results[0][0], results[1][0], self.merge)
        return out, finals[0] if len(finals) == 1 else finals

    def step(self, x, state=None):
        """One time step through every layer (x (batch, features) -> (top h, new state)), for
        acting and generation. Unidirectional layers only; no dropout."""
        if self.bidirectional:
            raise ValueError("a bidirectional layer needs the whole sequence; step() runs forward only")
        states, finals = self._states(state), []
        h = x
        for cell, s in zip(self.cells(), states):
            h, s = cell(h, s)
            finals.append(s)
        return h, finals[0] if len(finals) == 1 else finals

    def extra_repr(self) -> str:
        extra = [f"{self.input_size}, {self.hidden_size}"]
        if self.num_layers > 1:
            extra.append(f"num_layers={self.num_layers}")
        if self.bidirectional:
            extra.append(f"bidirectional=True, merge={self.merge!r}")
        for name in ("dropout", "input_dropout", "hidden_dropout"):
            if getattr(self, name):
                extra.append(f"{name}={getattr(self, name)}")
        return ", ".join(extra)

    def __repr__(self):  # the cells repeat what extra_repr says
        return f"{type(self).__name__}({self.extra_repr()})"


class RNN(_Recurrent):
    """Elman RNN layer(s): h_t = tanh(x_t W_ih + h_{t-1} W_hh + b). See _Recurrent for options."""
    cell_class = RNNCell


class LSTM(_Recurrent):
    """LSTM layer(s); see LSTMCell for the equations (peepholes=True to enable them) and
    _Recurrent for stacking, bidirectional runs and dropout. The state of one cell is (h, c)."""
    cell_class = LSTMCell


class GRU(_Recurrent):
    """GRU layer(s), reset gate before the recurrent matmul; see GRUCell and _Recurrent."""
    cell_class = GRUCell


# -- deep transitions ----------------------------------------------------------------------------
class _Transition(Module):
    highway = False

    def __init__(self, input_size: int, hidden_size: int, depth: int, input_dropout: float,
                 hidden_dropout: float):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        _check_probability(input_dropout=input_dropout, hidden_dropout=hidden_dropout)
        gates = 2 if self.highway else 1
        self.input_size, self.hidden_size, self.depth = input_size, hidden_size, depth
        self.input_dropout, self.hidden_dropout = input_dropout, hidden_dropout
        self.w_ih = Parameter(_input_weights(input_size, hidden_size, gates))
        self.w_hh = Parameter(np.stack([_recurrent_weights(hidden_size, gates) for _ in range(depth)]))
        self.b = Parameter(init.zeros((depth, gates * hidden_size)))

    def forward(self, x, state=None, mask=None, reverse: bool = False):
        """x (batch, time, features) -> (top state of every step, final state h)."""
        _check_sequence(x, self.input_size, type(self).__name__)
        mh = None
        if self.training and self.input_dropout:
            x = x * _dropout_mask(self.input_dropout, (x.shape[0], 1, x.shape[2]), x)
        if self.training and self.hidden_dropout:
            mh = _dropout_mask(self.hidden_dropout, (x.shape[0], self.hidden_size), x)
        h0 = _initial(state, x, self.hidden_size, f"{type(self).__name__} state")
        fn = TransitionSequence(_sequence_mask(mask, x), _hidden_mask(mh, x, self.hidden_size),
                                reverse, self.highway)
        return fn(x, self.w_ih, self.w_hh, self.b, h0)

    def step(self, x, state=None):
        """One time step: x (batch, features) -> (h, h). No dropout."""
        if x.ndim != 2:
            raise ValueError(f"step takes (batch, features), got {tuple(x.shape)}")
        x = F.reshape(x, (x.shape[0], 1, x.shape[1])) if isinstance(x, Tensor) else x[:, None, :]
        h0 = _initial(state, x, self.hidden_size, f"{type(self).__name__} state")
        fn = TransitionSequence(_sequence_mask(None, x), _hidden_mask(None, x, self.hidden_size),
                                False, self.highway)
        _, h = fn(x, self.w_ih, self.w_hh, self.b, h0)
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, depth={self.depth}"


class DeepTransitionRNN(_Transition):
    """Deep-transition RNN (Pascanu et al. 2014, DT-RNN): `depth` tanh layers between h_{t-1} and
    h_t; the input enters the first:
        s_1 = tanh(x_t W_ih + h_{t-1} W_hh[0] + b[0]),  s_l = tanh(s_{l-1} W_hh[l-1] + b[l-1]),
        h_t = s_depth.
    Variational `input_dropout` / `hidden_dropout` (on h_{t-1}) as in _Recurrent."""

    def __init__(self, input_size: int, hidden_size: int, depth: int = 2, input_dropout: float = 0.0,
                 hidden_dropout: float = 0.0):
        super().__init__(input_size, hidden_size, depth, input_dropout, hidden_dropout)


class RHN(_Transition):
    """Recurrent highway network (Zilly et al. 2017), coupled carry gate (c = 1 - t):
        for l in 1..depth:  h_l = tanh([x_t W_H if l = 1] + s_{l-1} R_H,l + b_H,l)
                            t_l = sigmoid([x_t W_T if l = 1] + s_{l-1} R_T,l + b_T,l)
                            s_l = h_l * t_l + s_{l-1} * (1 - t_l)
        with s_0 = the previous step's s_depth, which is also the output.
    Transform-gate biases start at `gate_bias` (negative: carry by default, as the paper advises).
    Weights hold [H, T] side by side."""

    highway = True

    def __init__(self, input_size: int, hidden_size: int, depth: int = 3, gate_bias: float = -2.0,
                 input_dropout: float = 0.0, hidden_dropout: float = 0.0):
        super().__init__(input_size, hidden_size, depth, input_dropout, hidden_dropout)
        self.b.data[:, hidden_size:] = gate_bias


class Bidirectional(Module):
    """Runs `forward_layer` over the sequence and `backward_layer` over it reversed, and merges
    their outputs ('concat' or 'sum'). Wraps any layer taking (x, state, mask, reverse), e.g.
    Bidirectional(RHN(10, 32), RHN(10, 32)). The state is the pair (forward, backward)."""

    def __init__(self, forward_layer: Module, backward_layer: Module, merge: str = "concat"):
        super().__init__()
        if merge not in _MERGES:
            raise ValueError(f"merge must be one of {_MERGES}, got {merge!r}")
        self.forward_layer, self.backward_layer, self.merge = forward_layer, backward_layer, merge

    def forward(self, x, state=None, mask=None):
        first, second = (None, None) if state is None else state
        out_f, state_f = self.forward_layer(x, first, mask=mask)
        out_b, state_b = self.backward_layer(x, second, mask=mask, reverse=True)
        return _merge(out_f, out_b, self.merge), (state_f, state_b)

    def extra_repr(self) -> str:
        return f"merge={self.merge!r}"


class Highway(Module):
    """Highway layer (Srivastava et al. 2015): y = H(x) * T(x) + x * (1 - T(x)),
    H = activation(x W_H + b_H), T = sigmoid(x W_T + b_T), T's bias starting at `gate_bias`
    (negative: the layer starts close to the identity). Works on any leading shape."""

    def __init__(self, features: int, activation=F.tanh, gate_bias: float = -2.0):
        super().__init__()
        self.features, self.activation = features, activation
        self.w = Parameter(_input_weights(features, features, 2))
        self.b = Parameter(np.concatenate([init.zeros(features),
                                           np.full(features, gate_bias, dtype=np.float32)]))

    def forward(self, x):
        z = F.linear(x, self.w, self.b)
        n = self.features
        h, gate = self.activation(z[..., :n]), F.sigmoid(z[..., n:])
        return gate * h + (1.0 - gate) * x

    def extra_repr(self) -> str:
        return f"{self.features}"
