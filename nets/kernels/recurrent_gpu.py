"""CuPy versions of the LSTM and GRU step kernels, with the contract of nets/kernels/recurrent.py.

One thread per (batch row, unit) of a step does all of that step's gate math in one launch (the
array code makes about 25 launches per LSTM step). Every array is `raw` and indexed by its logical
C-order position, which CuPy maps through the strides; the launch is sized by `size=`. Writes
are declared as outputs. sigmoid(x) = 0.5 tanh(x / 2) + 0.5, as on the CPU. The loop bodies avoid
`return`: CuPy wraps them in a grid-stride loop.
"""
from __future__ import annotations

import functools

from .. import backend

_POSITION = """
    const long long b = i / H, j = i % H, hb = i;
    const T one = 1;
"""
_SIGMOID = "#define WB_SIGMOID(x) ((T)0.5 * tanh((T)0.5 * (x)) + (T)0.5)\n"


@functools.cache
def _kernels() -> dict:
    cp = backend.cupy_module()

    def kernel(name, params, outputs, body):
        return cp.ElementwiseKernel(params, outputs, _POSITION + body, f"workbench_{name}",
                                    preamble=_SIGMOID)

    sizes = "int64 H, int64 B, int64 steps"
    return {
        # A (steps, B, 4H) [i, f, g, o]; R (B, 4H); h, c, mh (B, H); Hin (steps + 1, B, H);
        # Hs (B, steps, H); C (steps, B, H); mask (B, steps); peep (3, H)
        "lstm_forward": kernel(
            "lstm_forward",
            f"raw T R, raw T mh, raw M mask, raw T peep, int64 t, int64 tn, bool use_peep, {sizes}",
            "raw T A, raw T h, raw T c, raw T Hin, raw T Hs, raw T C", """
            const long long a0 = (t * B + b) * 4 * H + j, r0 = b * 4 * H + j;
            const long long here = (t * B + b) * H + j, out = (b * steps + t) * H + j;
            if (mask[b * steps + t] == 0) {
                Hs[out] = h[hb];
                C[here] = c[hb];
                Hin[(tn * B + b) * H + j] = h[hb] * mh[hb];
            } else {
                const T cp = c[hb];
                T zi = A[a0] + R[r0], zf = A[a0 + H] + R[r0 + H], zo = A[a0 + 3 * H] + R[r0 + 3 * H];
                if (use_peep) { zi += peep[j] * cp; zf += peep[H + j] * cp; }
                const T ig = WB_SIGMOID(zi), fg = WB_SIGMOID(zf), gg = tanh(A[a0 + 2 * H] + R[r0 + 2 * H]);
                const T cc = fg * cp + ig * gg;
                if (use_peep) zo += peep[2 * H + j] * cc;
                const T og = WB_SIGMOID(zo);
                const T hh = og * tanh(cc);
                c[hb] = cc;
                C[here] = cc;
                h[hb] = hh;
                Hs[out] = hh;
                Hin[(tn * B + b) * H + j] = hh * mh[hb];
                A[a0] = ig;
                A[a0 + H] = fg;
                A[a0 + 2 * H] = gg;
                A[a0 + 3 * H] = og;
            }"""),
        # dHs (B, steps, H); rec, carry, dc (B, H); c0 (B, H); dpeep (3, H) summed over the batch
        "lstm_backward": kernel(
            "lstm_backward",
            "raw T C, raw T c0, raw T dHs, raw T rec, raw T mh, raw M mask, raw T peep, int64 t, "
            f"int64 tp, bool use_peep, {sizes}",
            "raw T A, raw T carry, raw T dc, raw T dpeep", """
            const long long a0 = (t * B + b) * 4 * H + j;
            const T dh = dHs[(b * steps + t) * H + j] + rec[hb] * mh[hb] + carry[hb];
            if (mask[b * steps + t] == 0) {  // the state was copied: its gradient passes back
                carry[hb] = dh;
                A[a0] = 0;
                A[a0 + H] = 0;
                A[a0 + 2 * H] = 0;
                A[a0 + 3 * H] = 0;
            } else {
                const T cp = tp >= 0 ? C[(tp * B + b) * H + j] : c0[hb];
                const T cc = C[(t * B + b) * H + j];
                const T ig = A[a0], fg = A[a0 + H], gg = A[a0 + 2 * H], og = A[a0 + 3 * H];
                const T tc = tanh(cc);
                const T dzo = dh * tc * og * (one - og);
                T dct = dc[hb] + dh * og * (one - tc * tc);
                if (use_peep) dct += dzo * peep[2 * H + j];
                const T dzi = dct * gg * ig * (one - ig);
                const T dzf = dct * cp * fg * (one - fg);
                T dcp = dct * fg;
                if (use_peep) {
                    dcp += dzi * peep[j] + dzf * peep[H + j];
                    atomicAdd(&dpeep[j], dzi * cp);
                    atomicAdd(&dpeep[H + j], dzf * cp);
                    atomicAdd(&dpeep[2 * H + j], dzo * cc);
                }
                dc[hb] = dcp;
                carry[hb] = 0;
                A[a0] = dzi;
                A[a0 + H] = dzf;
                A[a0 + 2 * H] = dct * ig * (one - gg * gg);
                A[a0 + 3 * H] = dzo;
            }"""),
        # A (steps, B, 3H) [z, r, n]; R (B, 2H); Hin, RH (steps (+ 1), B, H)
        "gru_gates_forward": kernel(
            "gru_gates_forward", f"raw T R, raw T Hin, int64 t, {sizes}", "raw T A, raw T RH", """
            const long long a0 = (t * B + b) * 3 * H + j, r0 = b * 2 * H + j;
            const long long here = (t * B + b) * H + j;
            const T rg = WB_SIGMOID(A[a0 + H] + R[r0 + H]);
            A[a0] = WB_SIGMOID(A[a0] + R[r0]);
            A[a0 + H] = rg;
            RH[here] = rg * Hin[here];"""),
        "gru_output_forward": kernel(
            "gru_output_forward", f"raw T Rn, raw T mh, raw M mask, int64 t, int64 tn, {sizes}",
            "raw T A, raw T h, raw T Hin, raw T Hs", """
            const long long a0 = (t * B + b) * 3 * H + j, out = (b * steps + t) * H + j;
            T hh = h[hb];
            if (mask[b * steps + t] != 0) {
                const T n = tanh(A[a0 + 2 * H] + Rn[hb]);
                const T z = A[a0];
                hh = z * hh + (one - z) * n;
                A[a0 + 2 * H] = n;
                h[hb] = hh;
            }
            Hs[out] = hh;
            Hin[(tn * B + b) * H + j] = hh * mh[hb];"""),
        "gru_output_backward": kernel(
            "gru_output_backward",
            f"raw T Hs, raw T h0, raw T dHs, raw T rec, raw T mh, raw M mask, int64 t, int64 tp, {sizes}",
            "raw T A, raw T carry", """
            const long long a0 = (t * B + b) * 3 * H + j;
            const T dh = dHs[(b * steps + t) * H + j] + rec[hb] * mh[hb] + carry[hb];
            if (mask[b * steps + t] == 0) {
                carry[hb] = dh;
                A[a0] = 0;
                A[a0 + 2 * H] = 0;
            } else {
                const T hp = tp >= 0 ? Hs[(b * steps + tp) * H + j] : h0[hb];
                const T z = A[a0], n = A[a0 + 2 * H];
                A[a0 + 2 * H] = dh * (one - z) * (one - n * n);
                A[a0] = dh * (hp - n) * z * (one - z);
                carry[hb] = dh * z;
            }"""),
        "gru_gates_backward": kernel(
            "gru_gates_backward", f"raw T Hin, raw T dRH, raw T mh, int64 t, {sizes}",
            "raw T A, raw T carry", """
            const long long a0 = (t * B + b) * 3 * H + j;
            const T rg = A[a0 + H], d = dRH[hb];
            A[a0 + H] = d * Hin[(t * B + b) * H + j] * rg * (one - rg);
            carry[hb] += d * rg * mh[hb];"""),
    }


def _sizes(h, steps):
    batch, hidden = h.shape
    return dict(size=batch * hidden), (hidden, batch, steps)


def lstm_forward(A, R, h, c, Hin, mh, Hs, C, mask, t, tn, peep, use_peep):
    size, dims = _sizes(h, mask.shape[1])
    _kernels()["lstm_forward"](R, mh, mask, peep, t, tn, bool(use_peep), *dims, A, h, c, Hin, Hs, C,
                               **size)


def lstm_backward(A, C, c0, dHs, rec, carry, dc, mh, mask, t, tp, peep, dpeep, use_peep):
    size, dims = _sizes(carry, mask.shape[1])
    _kernels()["lstm_backward"](C, c0, dHs, rec, mh, mask, peep, t, tp, bool(use_peep), *dims,
                                A, carry, dc, dpeep, **size)


def gru_gates_forward(A, R, Hin, RH, t):
    size, dims = _sizes(RH[t], A.shape[0])
    _kernels()["gru_gates_forward"](R, Hin, t, *dims, A, RH, **size)


def gru_output_forward(A, Rn, h, Hin, mh, Hs, mask, t, tn):
    size, dims = _sizes(h, mask.shape[1])
    _kernels()["gru_output_forward"](Rn, mh, mask, t, tn, *dims, A, h, Hin, Hs, **size)


def gru_output_backward(A, Hs, h0, dHs, rec, carry, mh, mask, t, tp):
    size, dims = _sizes(carry, mask.shape[1])
    _kernels()["gru_output_backward"](Hs, h0, dHs, rec, mh, mask, t, tp, *dims, A, carry, **size)


def gru_gates_backward(A, Hin, dRH, carry, mh, t):
    size, dims = _sizes(carry, A.shape[0])
    _kernels()["gru_gates_backward"](Hin, dRH, mh, t, *dims, A, carry, **size)
