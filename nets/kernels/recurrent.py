"""Per-time-step gate math of the recurrent layers (nets/layers/recurrent.py), forward and backward.

The layers run one Python loop over time: per step one BLAS matmul for the recurrent term, then one
of these kernels for all the elementwise work of that step, fused. Every kernel has one contract
and up to three versions, chosen by `for_array(name, x)`:
- `name` (Numba, CPU): one pass over each (batch row, unit), vectorised by LLVM;
- `name` in recurrent_gpu.py (CuPy, GPU; LSTM and GRU): one fused launch per step;
- `name_xp` (plain array code, NumPy or CuPy): the GPU path of the deep transitions, and a second
  opinion in the tests.

Layout. Everything the loop and the weight gradients touch is time-major, so that a step's rows
are one contiguous block (the operand of that step's matmul) and the weight gradients are single
matmuls over (time * batch) rows without copies; only the layer's outputs and their gradients
are batch-major, as the layer returns them:
- `A` ([depth,] time, batch, gates*hidden): the input projection (plus bias) before the loop;
  the forward kernel of step t replaces row t by the gate activations, the backward kernel by the
  gradients of the gate pre-activations.
- `Hin` (time + 1, batch, hidden): the recurrent matmul's operand of each step, h' * mh (the
  previous state under the variational dropout mask `mh`, ones when off). The kernel of step t
  writes the operand of the next step, `tn` (t + 1, or t - 1 in reverse; row `time` is a scratch
  row after the last step).
- `C` / `S` (time, batch, hidden) / ([depth,] time, batch, hidden): LSTM cells and transition
  states, kept for the backward pass. `Hs` (batch, time, hidden): the outputs; `dHs` theirs.
- Forward kernels carry the running state in `h` / `c` / `s` (batch, hidden), updated in place:
  reading one row of an array and writing another row of the same array in one loop defeats
  LLVM's alias analysis and the loop stays scalar (5x slower).
- Backward kernels read the previous step `tp` from the stored states; `tp < 0` means the
  initial state `h0` / `c0` (batch, hidden).
- `mask` (batch, time) of 0/1: at a 0 the state is carried over unchanged (padding), and no
  gradient reaches the gates there.
- `rec` (batch, hidden): the recurrent gradient (next step's gate gradients @ W_hh^T), not yet
  multiplied by `mh`; `carry` (batch, hidden): gradient reaching h directly (not through the
  matmul), e.g. over a padded step or the GRU's update path.

float32 uses a rational tanh (Eigen's, within 3e-7 of tanh) that LLVM vectorises; float64 (for
gradient checks) uses math.tanh. sigmoid(x) = 0.5 tanh(x / 2) + 0.5 in both.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from .. import backend

_JIT = dict(cache=True, fastmath=True, error_model="numpy")  # numpy errors: no zero-division branch


def tanh(x):
    """Scalar tanh for kernels (fast rational form in float32)."""
    return math.tanh(x)


def sigmoid(x):
    return 0.5 * math.tanh(0.5 * x) + 0.5


@overload(tanh, jit_options=dict(fastmath=True, error_model="numpy"))
def _tanh_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        clamp = np.float32(7.90531110763549805)  # tanh rounds to +-1 in float32 beyond this
        a1, a3, a5 = np.float32(4.89352455891786e-03), np.float32(6.37261928875436e-04), np.float32(1.48572235717979e-05)
        a7, a9 = np.float32(5.12229709037114e-08), np.float32(-8.60467152213735e-11)
        a11, a13 = np.float32(2.00018790482477e-13), np.float32(-2.76076847742355e-16)
        b0, b2 = np.float32(4.89352518554385e-03), np.float32(2.26843463243900e-03)
        b4, b6 = np.float32(1.18534705686654e-04), np.float32(1.19825839466702e-06)

        def fast(x):
            low = x if x > -clamp else -clamp  # conditional expressions vectorise; min/max do not
            y = low if low < clamp else clamp
            x2 = y * y
            p = x2 * a13 + a11
            p = x2 * p + a9
            p = x2 * p + a7
            p = x2 * p + a5
            p = x2 * p + a3
            p = x2 * p + a1
            q = x2 * b6 + b4
            q = x2 * q + b2
            q = x2 * q + b0
            return y * p / q
        return fast
    return lambda x: math.tanh(x)


@overload(sigmoid, jit_options=dict(fastmath=True, error_model="numpy"))
def _sigmoid_impl(x):
    half = np.float32(0.5) if isinstance(x, types.Float) and x.bitwidth == 32 else 0.5
    return lambda x: half * tanh(half * x) + half


def _sigmoid_xp(xp, x):
    return xp.tanh(x * 0.5) * 0.5 + 0.5


# -- LSTM: gates [i, f, g, o]; c = f c' + i g; h = o tanh(c); peepholes add p_i c', p_f c', p_o c --
@njit(**_JIT)
def lstm_forward(A, R, h, c, Hin, mh, Hs, C, mask, t, tn, peep, use_peep):
    H = h.shape[1]
    for b in range(A.shape[1]):
        hr, cr, hn, m, hs, cs = h[b], c[b], Hin[tn, b], mh[b], Hs[b, t], C[t, b]
        if mask[b, t] == 0:
            for j in range(H):
                hs[j] = hr[j]
                cs[j] = cr[j]
                hn[j] = hr[j] * m[j]
            continue
        a, r = A[t, b], R[b]
        ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        ri, rf, rg, ro = r[:H], r[H:2 * H], r[2 * H:3 * H], r[3 * H:]
        for j in range(H):
            cp = cr[j]
            zi, zf, zo = ai[j] + ri[j], af[j] + rf[j], ao[j] + ro[j]
            if use_peep:
                zi += peep[0, j] * cp
                zf += peep[1, j] * cp
            i, f, g = sigmoid(zi), sigmoid(zf), tanh(ag[j] + rg[j])
            cc = f * cp + i * g
            if use_peep:
                zo += peep[2, j] * cc
            o = sigmoid(zo)
            hh = o * tanh(cc)
            cr[j] = cc
            cs[j] = cc
            hr[j] = hh
            hs[j] = hh
            hn[j] = hh * m[j]
            ai[j] = i
            af[j] = f
            ag[j] = g
            ao[j] = o


def lstm_forward_xp(A, R, h, c, Hin, mh, Hs, C, mask, t, tn, peep, use_peep):
    xp = backend.get_array_module(A)
    H = h.shape[1]
    z = A[t] + R
    if use_peep:
        z[:, :H] += peep[0] * c
        z[:, H:2 * H] += peep[1] * c
    i, f, g = _sigmoid_xp(xp, z[:, :H]), _sigmoid_xp(xp, z[:, H:2 * H]), xp.tanh(z[:, 2 * H:3 * H])
    cc = f * c + i * g
    if use_peep:
        z[:, 3 * H:] += peep[2] * cc
    o = _sigmoid_xp(xp, z[:, 3 * H:])
    keep = mask[:, t, None] != 0
    A[t] = xp.where(keep, xp.concatenate([i, f, g, o], axis=1), A[t])
    c[...] = xp.where(keep, cc, c)
    h[...] = xp.where(keep, o * xp.tanh(cc), h)
    Hin[tn] = h * mh
    C[t] = c
    Hs[:, t] = h


@njit(**_JIT)
def lstm_backward(A, C, c0, dHs, rec, carry, dc, mh, mask, t, tp, peep, dpeep, use_peep):
    H = C.shape[2]
    one = A.dtype.type(1)
    for b in range(A.shape[1]):
        dho, rr, cr, m = dHs[b, t], rec[b], carry[b], mh[b]
        a = A[t, b]
        if mask[b, t] == 0:  # the state was copied: its gradient passes to the previous step
            for j in range(H):
                cr[j] = dho[j] + rr[j] * m[j] + cr[j]
            a[:] = 0
            continue
        cp = C[tp, b] if tp >= 0 else c0[b]
        c, dcr = C[t, b], dc[b]
        ai, af, ag, ao = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        for j in range(H):
            dh = dho[j] + rr[j] * m[j] + cr[j]
            i, f, g, o = ai[j], af[j], ag[j], ao[j]
            tc = tanh(c[j])
            dzo = dh * tc * o * (one - o)
            dct = dcr[j] + dh * o * (one - tc * tc)
            if use_peep:
                dct += dzo * peep[2, j]
            dzi = dct * g * i * (one - i)
            dzf = dct * cp[j] * f * (one - f)
            dcp = dct * f
            if use_peep:
                dcp += dzi * peep[0, j] + dzf * peep[1, j]
                dpeep[0, j] += dzi * cp[j]
                dpeep[1, j] += dzf * cp[j]
                dpeep[2, j] += dzo * c[j]
            dcr[j] = dcp
            cr[j] = 0
            ai[j] = dzi
            af[j] = dzf
            ag[j] = dct * i * (one - g * g)
            ao[j] = dzo


def lstm_backward_xp(A, C, c0, dHs, rec, carry, dc, mh, mask, t, tp, peep, dpeep, use_peep):
    xp = backend.get_array_module(A)
    H = C.shape[2]
    keep = mask[:, t, None] != 0
    cp = C[tp] if tp >= 0 else c0
    a, c = A[t], C[t]
    i, f, g, o = a[:, :H], a[:, H:2 * H], a[:, 2 * H:3 * H], a[:, 3 * H:]
    dh = dHs[:, t] + rec * mh + carry
    tc = xp.tanh(c)
    dzo = dh * tc * o * (1 - o)
    dct = dc + dh * o * (1 - tc * tc)
    if use_peep:
        dct += dzo * peep[2]
    dzi = dct * g * i * (1 - i)
    dzf = dct * cp * f * (1 - f)
    dcp = dct * f
    if use_peep:
        dcp += dzi * peep[0] + dzf * peep[1]
        dpeep[0] += (xp.where(keep, dzi, 0) * cp).sum(axis=0)
        dpeep[1] += (xp.where(keep, dzf, 0) * cp).sum(axis=0)
        dpeep[2] += (xp.where(keep, dzo, 0) * c).sum(axis=0)
    grads = xp.concatenate([dzi, dzf, dct * i * (1 - g * g), dzo], axis=1)
    A[t] = xp.where(keep, grads, 0)
    dc[...] = xp.where(keep, dcp, dc)
    carry[...] = xp.where(keep, 0, dh)


# -- GRU (reset before the matmul): z, r from x and h'; n = tanh(x W_n + (r * h') U_n); ------------
# h = z h' + (1 - z) n. Two kernels per step, around the matmul by U_n. The recurrent operand
# h' * mh of step t is Hin[t]; RH[t] = r * Hin[t] is the operand of U_n.
@njit(**_JIT)
def gru_gates_forward(A, R, Hin, RH, t):
    H = RH.shape[2]
    for b in range(A.shape[1]):
        a, r, hb, rh = A[t, b], R[b], Hin[t, b], RH[t, b]
        az, ar, rz, rr = a[:H], a[H:2 * H], r[:H], r[H:2 * H]
        for j in range(H):
            z = sigmoid(az[j] + rz[j])
            rg = sigmoid(ar[j] + rr[j])
            az[j] = z
            ar[j] = rg
            rh[j] = rg * hb[j]


def gru_gates_forward_xp(A, R, Hin, RH, t):
    xp = backend.get_array_module(A)
    H = RH.shape[2]
    A[t, :, :2 * H] = _sigmoid_xp(xp, A[t, :, :2 * H] + R)
    RH[t] = A[t, :, H:2 * H] * Hin[t]


@njit(**_JIT)
def gru_output_forward(A, Rn, h, Hin, mh, Hs, mask, t, tn):
    H = h.shape[1]
    one = A.dtype.type(1)
    for b in range(A.shape[1]):
        hr, hn, m, hs = h[b], Hin[tn, b], mh[b], Hs[b, t]
        if mask[b, t] == 0:
            for j in range(H):
                hs[j] = hr[j]
                hn[j] = hr[j] * m[j]
            continue
        a, rn = A[t, b], Rn[b]
        az, an = a[:H], a[2 * H:]
        for j in range(H):
            n = tanh(an[j] + rn[j])
            z = az[j]
            hh = z * hr[j] + (one - z) * n
            an[j] = n
            hr[j] = hh
            hs[j] = hh
            hn[j] = hh * m[j]


def gru_output_forward_xp(A, Rn, h, Hin, mh, Hs, mask, t, tn):
    xp = backend.get_array_module(A)
    H = h.shape[1]
    keep = mask[:, t, None] != 0
    n = xp.tanh(A[t, :, 2 * H:] + Rn)
    z = A[t, :, :H]
    A[t, :, 2 * H:] = xp.where(keep, n, A[t, :, 2 * H:])
    h[...] = xp.where(keep, z * h + (1 - z) * n, h)
    Hin[tn] = h * mh
    Hs[:, t] = h


@njit(**_JIT)
def gru_output_backward(A, Hs, h0, dHs, rec, carry, mh, mask, t, tp):
    """Gradients of the update gate and candidate pre-activations; carry := dL/dh' directly."""
    H = Hs.shape[2]
    one = A.dtype.type(1)
    for b in range(A.shape[1]):
        dho, rr, cr, m, a = dHs[b, t], rec[b], carry[b], mh[b], A[t, b]
        az, an = a[:H], a[2 * H:]
        if mask[b, t] == 0:
            for j in range(H):
                cr[j] = dho[j] + rr[j] * m[j] + cr[j]
            az[:] = 0
            an[:] = 0
            continue
        hp = Hs[b, tp] if tp >= 0 else h0[b]
        for j in range(H):
            dh = dho[j] + rr[j] * m[j] + cr[j]
            z, n = az[j], an[j]
            an[j] = dh * (one - z) * (one - n * n)
            az[j] = dh * (hp[j] - n) * z * (one - z)
            cr[j] = dh * z


def gru_output_backward_xp(A, Hs, h0, dHs, rec, carry, mh, mask, t, tp):
    xp = backend.get_array_module(A)
    H = Hs.shape[2]
    keep = mask[:, t, None] != 0
    hp = Hs[:, tp] if tp >= 0 else h0
    dh = dHs[:, t] + rec * mh + carry
    z, n = A[t, :, :H], A[t, :, 2 * H:]
    dzn = xp.where(keep, dh * (1 - z) * (1 - n * n), 0)
    dzz = xp.where(keep, dh * (hp - n) * z * (1 - z), 0)
    carry[...] = xp.where(keep, dh * z, dh)
    A[t, :, 2 * H:] = dzn  # z and n are views of A: written last
    A[t, :, :H] = dzz


@njit(**_JIT)
def gru_gates_backward(A, Hin, dRH, carry, mh, t):
    """Reset-gate gradient from dRH = d(r * Hin[t]); adds the r * dRH path to carry. At padded
    steps dRH is 0, so nothing moves."""
    H = Hin.shape[2]
    one = A.dtype.type(1)
    for b in range(A.shape[1]):
        ar, hb, d, cr, m = A[t, b, H:2 * H], Hin[t, b], dRH[b], carry[b], mh[b]
        for j in range(H):
            rg = ar[j]
            ar[j] = d[j] * hb[j] * rg * (one - rg)
            cr[j] += d[j] * rg * m[j]


def gru_gates_backward_xp(A, Hin, dRH, carry, mh, t):
    H = Hin.shape[2]
    rg = A[t, :, H:2 * H].copy()
    A[t, :, H:2 * H] = dRH * Hin[t] * rg * (1 - rg)
    carry += dRH * rg * mh


# -- deep transitions: layer l of step t maps the state below it (layer l - 1, or for l = 0 the
# previous step's top state h) to S[l, t]. tanh layer: s = tanh(a + r + bias[l]). Highway layer
# (Zilly et al. 2017, coupled carry gate), gates [h, g]: s = g tanh(.) + (1 - g) s_below with
# g = sigmoid(.). The running state: `h` the top state (updated by the top layer), `s` the state
# of the layer just computed. Only the top layer sees the padding mask: a padded step keeps h.
# The top layer also writes the outputs Hs and the next step's operand Hin[tn].
@njit(**_JIT)
def tanh_transition_forward(A, R, bias, s, h, Hin, mh, S, Hs, mask, t, l, tn):
    L, H = S.shape[0], S.shape[3]
    top = l == L - 1
    bl = bias[l]
    for b in range(A.shape[2]):
        hr, sr, st = h[b], s[b], S[l, t, b]
        if top and mask[b, t] == 0:
            hs, hn, m = Hs[b, t], Hin[tn, b], mh[b]
            for j in range(H):
                st[j] = hr[j]
                hs[j] = hr[j]
                hn[j] = hr[j] * m[j]
            continue
        a, r = A[l, t, b], R[b]
        for j in range(H):
            v = tanh(a[j] + r[j] + bl[j])
            a[j] = v
            sr[j] = v
            st[j] = v
        if top:
            hs, hn, m = Hs[b, t], Hin[tn, b], mh[b]
            for j in range(H):
                hr[j] = sr[j]
                hs[j] = sr[j]
                hn[j] = sr[j] * m[j]


def tanh_transition_forward_xp(A, R, bias, s, h, Hin, mh, S, Hs, mask, t, l, tn):
    xp = backend.get_array_module(A)
    v = xp.tanh(A[l, t] + R + bias[l])
    A[l, t] = v
    s[...] = v
    if l == S.shape[0] - 1:
        h[...] = xp.where(mask[:, t, None] != 0, v, h)
        Hin[tn] = h * mh
        Hs[:, t] = h
        v = h
    S[l, t] = v


@njit(**_JIT)
def tanh_transition_backward(A, S, h0, ds, dbelow, skip, mask, t, l, tp):
    """ds: dL/dS[l, t]. Writes the pre-activation gradient into A and the direct path to the
    state below into dbelow (0 for tanh layers). The top layer sets skip: ds at padded steps (it
    goes straight to the previous step's state), else 0."""
    L, H = S.shape[0], S.shape[3]
    top = l == L - 1
    one = A.dtype.type(1)
    for b in range(A.shape[2]):
        a, d, db = A[l, t, b], ds[b], dbelow[b]
        db[:] = 0
        if top:
            if mask[b, t] == 0:
                skip[b, :] = d
                a[:] = 0
                continue
            skip[b, :] = 0
        for j in range(H):
            v = a[j]
            a[j] = d[j] * (one - v * v)


def tanh_transition_backward_xp(A, S, h0, ds, dbelow, skip, mask, t, l, tp):
    xp = backend.get_array_module(A)
    v = A[l, t]
    g = ds * (1 - v * v)
    dbelow[...] = 0
    if l == S.shape[0] - 1:
        keep = mask[:, t, None] != 0
        g = xp.where(keep, g, 0)
        skip[...] = xp.where(keep, 0, ds)
    A[l, t] = g


@njit(**_JIT)
def highway_transition_forward(A, R, bias, s, h, Hin, mh, S, Hs, mask, t, l, tn):
    L, H = S.shape[0], S.shape[3]
    top = l == L - 1
    one = A.dtype.type(1)
    bh, bg = bias[l, :H], bias[l, H:]
    for b in range(A.shape[2]):
        hr, sr, st = h[b], s[b], S[l, t, b]
        if top and mask[b, t] == 0:
            hs, hn, m = Hs[b, t], Hin[tn, b], mh[b]
            for j in range(H):
                st[j] = hr[j]
                hs[j] = hr[j]
                hn[j] = hr[j] * m[j]
            continue
        below = hr if l == 0 else sr
        a, r = A[l, t, b], R[b]
        ah, ag, rh, rg = a[:H], a[H:], r[:H], r[H:]
        for j in range(H):
            hh = tanh(ah[j] + rh[j] + bh[j])
            g = sigmoid(ag[j] + rg[j] + bg[j])
            v = g * hh + (one - g) * below[j]
            ah[j] = hh
            ag[j] = g
            sr[j] = v
            st[j] = v
        if top:
            hs, hn, m = Hs[b, t], Hin[tn, b], mh[b]
            for j in range(H):
                hr[j] = sr[j]
                hs[j] = sr[j]
                hn[j] = sr[j] * m[j]


def highway_transition_forward_xp(A, R, bias, s, h, Hin, mh, S, Hs, mask, t, l, tn):
    xp = backend.get_array_module(A)
    L, H = S.shape[0], S.shape[3]
    below = h if l == 0 else s
    z = A[l, t] + R + bias[l]
    hh, g = xp.tanh(z[:, :H]), _sigmoid_xp(xp, z[:, H:])
    A[l, t] = xp.concatenate([hh, g], axis=1)
    v = g * hh + (1 - g) * below
    s[...] = v
    if l == L - 1:
        h[...] = xp.where(mask[:, t, None] != 0, v, h)
        Hin[tn] = h * mh
        Hs[:, t] = h
        v = h
    S[l, t] = v


@njit(**_JIT)
def highway_transition_backward(A, S, h0, ds, dbelow, skip, mask, t, l, tp):
    L, H = S.shape[0], S.shape[3]
    top = l == L - 1
    one = A.dtype.type(1)
    for b in range(A.shape[2]):
        a, d, db = A[l, t, b], ds[b], dbelow[b]
        if top:
            if mask[b, t] == 0:
                skip[b, :] = d
                db[:] = 0
                a[:] = 0
                continue
            skip[b, :] = 0
        if l > 0:
            below = S[l - 1, t, b]
        else:
            below = S[L - 1, tp, b] if tp >= 0 else h0[b]
        ah, ag = a[:H], a[H:]
        for j in range(H):
            hh, g = ah[j], ag[j]
            ah[j] = d[j] * g * (one - hh * hh)
            ag[j] = d[j] * (hh - below[j]) * g * (one - g)
            db[j] = d[j] * (one - g)


def highway_transition_backward_xp(A, S, h0, ds, dbelow, skip, mask, t, l, tp):
    xp = backend.get_array_module(A)
    L, H = S.shape[0], S.shape[3]
    if l > 0:
        below = S[l - 1, t]
    else:
        below = S[L - 1, tp] if tp >= 0 else h0
    hh, g = A[l, t, :, :H], A[l, t, :, H:]
    grads = xp.concatenate([ds * g * (1 - hh * hh), ds * (hh - below) * g * (1 - g)], axis=1)
    direct = ds * (1 - g)
    if l == L - 1:
        keep = mask[:, t, None] != 0
        grads, direct = xp.where(keep, grads, 0), xp.where(keep, direct, 0)
        skip[...] = xp.where(keep, 0, ds)
    A[l, t] = grads
    dbelow[...] = direct


def step_matmul(a, b, out) -> None:
    """out = a @ b, the recurrent product of one step: NumPy's, or on the GPU one cuBLAS call made
    directly (blas_gpu.py: CuPy's matmul costs more Python time than the step's product)."""
    if backend.get_array_module(a) is np:
        np.matmul(a, b, out=out)
    else:
        from . import blas_gpu
        blas_gpu.matmul(a, b, out)


def for_array(name: str, x):
    """The version of kernel `name` for where `x` lives: Numba on the CPU; on the GPU the fused
    CuPy kernel (LSTM, GRU: recurrent_gpu.py), else the array code."""
    if backend.get_array_module(x) is np:
        return globals()[name]
    from . import recurrent_gpu
    return getattr(recurrent_gpu, name, None) or globals()[name + "_xp"]
