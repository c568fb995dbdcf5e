"""Optimizer updates: one fused pass over the flat parameter vector per step.

Each rule has three versions with one contract, `rule(p, g, out, *state, lr, weight_decay, l1,
*hyper)`, updating the state vectors in place, leaving `g` untouched, and writing the new
parameters over `p` (`out` None) or into `out` (out of place: `p` stays as it was, for readers in
other processes):
- `rule` (Numba, CPU): one loop reading and writing each element once;
- `rule` in optim_gpu.py (CuPy, GPU): one elementwise kernel, the same pass;
- `rule_xp` (plain array code, NumPy or CuPy): the reference both kernels are tested against.
Scalars arrive as float32 so that both versions compute in float32 with the same operation order
(Numba without fastmath neither reorders nor contracts into FMAs, so they agree to the last bit
on most elements). `error_model="numpy"` makes x / 0 give inf as NumPy does instead of raising;
without it the zero-division check keeps LLVM from vectorizing the loops (10x slower).
A state vector a configuration does not use is passed as an empty array. The CPU kernels store
decaying state (moments, averages, velocities) flushed to 0 below float32's smallest normal
(`_normal`); the others keep the denormals, which cost a GPU nothing.

The effective gradient is d = g + weight_decay * p + l1 * sign(p) (coupled L2 and L1).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .. import backend

_ONE = np.float32(1)
_ZERO = np.float32(0)
_SMALLEST_NORMAL = np.finfo(np.float32).tiny


@njit(cache=True, inline="always")
def _normal(x):
    """x, or 0 where x is a denormal: a state that decays geometrically (a moment of a parameter
    whose gradient stays 0, a dead unit's) turns denormal after a few hundred steps, and x86
    cores take ~100x the time for each operation on one. Adam over DQN's Nature net took 6.9 ms
    a step instead of 1.4 with the 19% of first moments that had gone denormal on a live Breakout
    run. A NaN stays NaN."""
    return _ZERO if abs(x) < _SMALLEST_NORMAL else x


@njit(cache=True, error_model="numpy", inline="always")
def _effective(p, g, weight_decay, l1):
    d = g + weight_decay * p
    if p > 0:
        d += l1
    elif p < 0:
        d -= l1
    return d


def _effective_xp(p, g, weight_decay, l1):
    if weight_decay == 0 and l1 == 0:
        return g
    d = g + weight_decay * p
    if l1 != 0:
        d += l1 * backend.get_array_module(p).sign(p)
    return d


@njit(cache=True, inline="always")
def _store(p, out, i, value):
    """p[i] = value in place (out None), else out[i] = value. Numba compiles the two apart (the
    test on None is settled at compile time), so each loop stores through one pointer and
    vectorizes; one loop storing through either would need LLVM's runtime overlap check, which
    fails in place and leaves the loop scalar (7x slower)."""
    if out is None:
        p[i] = value
    else:
        out[i] = value


def _write(p, out, step) -> None:
    if out is None:
        p -= step
    else:
        backend.get_array_module(p).subtract(p, step, out=out)


# -- SGD: v = momentum v + d; p -= lr (d + momentum v) with Nesterov, else lr v -----------------
@njit(cache=True, error_model="numpy")
def sgd(p, g, out, velocity, lr, weight_decay, l1, momentum, nesterov):
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        if momentum != 0:
            v = _normal(momentum * velocity[i] + d)
            velocity[i] = v
            d = d + momentum * v if nesterov else v
        _store(p, out, i, p[i] - lr * d)


def sgd_xp(p, g, out, velocity, lr, weight_decay, l1, momentum, nesterov):
    d = _effective_xp(p, g, weight_decay, l1)
    if momentum != 0:
        velocity *= momentum
        velocity += d
        d = d + momentum * velocity if nesterov else velocity
    _write(p, out, lr * d)


# -- Adagrad: h += d^2; p -= lr d / (sqrt(h) + eps) -------------------------------------------
@njit(cache=True, error_model="numpy")
def adagrad(p, g, out, sum_sq, lr, weight_decay, l1, eps):
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        h = sum_sq[i] + d * d
        sum_sq[i] = h
        _store(p, out, i, p[i] - lr * d / (np.sqrt(h) + eps))


def adagrad_xp(p, g, out, sum_sq, lr, weight_decay, l1, eps):
    xp = backend.get_array_module(p)
    d = _effective_xp(p, g, weight_decay, l1)
    sum_sq += d * d
    _write(p, out, lr * d / (xp.sqrt(sum_sq) + eps))


# -- AdaDelta (Zeiler 2012) ---------------------------------------------------------------------
@njit(cache=True, error_model="numpy")
def adadelta(p, g, out, grad_sq_avg, delta_sq_avg, lr, weight_decay, l1, rho, eps):
    keep = _ONE - rho
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        eg = _normal(rho * grad_sq_avg[i] + keep * d * d)
        grad_sq_avg[i] = eg
        delta = np.sqrt(delta_sq_avg[i] + eps) / np.sqrt(eg + eps) * d
        delta_sq_avg[i] = _normal(rho * delta_sq_avg[i] + keep * delta * delta)
        _store(p, out, i, p[i] - lr * delta)


def adadelta_xp(p, g, out, grad_sq_avg, delta_sq_avg, lr, weight_decay, l1, rho, eps):
    xp = backend.get_array_module(p)
    keep = _ONE - rho
    d = _effective_xp(p, g, weight_decay, l1)
    grad_sq_avg *= rho
    grad_sq_avg += keep * d * d
    delta = xp.sqrt(delta_sq_avg + eps) / xp.sqrt(grad_sq_avg + eps) * d
    delta_sq_avg *= rho
    delta_sq_avg += keep * delta * delta
    _write(p, out, lr * delta)


# -- RMSProp: ms = alpha ms + (1 - alpha) d^2; p -= lr d / (sqrt(ms) + eps) or / sqrt(ms + eps) --
@njit(cache=True, error_model="numpy")
def rmsprop(p, g, out, square_avg, grad_avg, lr, weight_decay, l1, alpha, eps, centered,
            eps_inside_sqrt):
    keep = _ONE - alpha
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        ms = _normal(alpha * square_avg[i] + keep * d * d)
        square_avg[i] = ms
        if centered:
            mg = _normal(alpha * grad_avg[i] + keep * d)
            grad_avg[i] = mg
            ms = max(ms - mg * mg, _ZERO)  # rounding can push a zero variance below 0
        denom = np.sqrt(ms + eps) if eps_inside_sqrt else np.sqrt(ms) + eps
        _store(p, out, i, p[i] - lr * d / denom)


def rmsprop_xp(p, g, out, square_avg, grad_avg, lr, weight_decay, l1, alpha, eps, centered,
               eps_inside_sqrt):
    xp = backend.get_array_module(p)
    keep = _ONE - alpha
    d = _effective_xp(p, g, weight_decay, l1)
    square_avg *= alpha
    square_avg += keep * d * d
    ms = square_avg
    if centered:
        grad_avg *= alpha
        grad_avg += keep * d
        ms = square_avg - grad_avg * grad_avg
        xp.maximum(ms, 0, out=ms)
    denom = xp.sqrt(ms + eps) if eps_inside_sqrt else xp.sqrt(ms) + eps
    _write(p, out, lr * d / denom)


# -- Adam: bias corrections folded into step_size = lr / (1 - beta1^t), root2 = sqrt(1 - beta2^t) --
@njit(cache=True, error_model="numpy")
def adam(p, g, out, m, v, lr, weight_decay, l1, beta1, beta2, eps, step_size, root2):
    keep1, keep2 = _ONE - beta1, _ONE - beta2
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        mi = _normal(beta1 * m[i] + keep1 * d)
        vi = _normal(beta2 * v[i] + keep2 * d * d)
        m[i] = mi
        v[i] = vi
        _store(p, out, i, p[i] - step_size * mi / (np.sqrt(vi) / root2 + eps))


def adam_xp(p, g, out, m, v, lr, weight_decay, l1, beta1, beta2, eps, step_size, root2):
    xp = backend.get_array_module(p)
    d = _effective_xp(p, g, weight_decay, l1)
    m *= beta1
    m += (_ONE - beta1) * d
    v *= beta2
    v += (_ONE - beta2) * d * d
    _write(p, out, step_size * m / (xp.sqrt(v) / root2 + eps))


# -- Sign-agreement adaptive gains (Hinton, Neural Networks for ML, lecture 6) -------------------
@njit(cache=True, error_model="numpy")
def sign_adaptive(p, g, out, gain, prev_grad, lr, weight_decay, l1, increase, decrease, low,
                  high):
    for i in range(p.size):
        d = _effective(p[i], g[i], weight_decay, l1)
        prev = prev_grad[i]
        k = gain[i]
        if (d > 0 and prev > 0) or (d < 0 and prev < 0):
            k += increase
        elif (d > 0 and prev < 0) or (d < 0 and prev > 0):
            k *= decrease
        k = min(max(k, low), high)
        gain[i] = k
        prev_grad[i] = d
        _store(p, out, i, p[i] - lr * k * d)


def sign_adaptive_xp(p, g, out, gain, prev_grad, lr, weight_decay, l1, increase, decrease, low,
                     high):
    xp = backend.get_array_module(p)
    d = _effective_xp(p, g, weight_decay, l1)
    agreement = xp.sign(d) * xp.sign(prev_grad)
    gain[...] = xp.where(agreement > 0, gain + increase, xp.where(agreement < 0, gain * decrease, gain))
    xp.clip(gain, low, high, out=gain)
    prev_grad[...] = d
    _write(p, out, lr * gain * d)


# -- global gradient norm ---------------------------------------------------------------------
@njit(cache=True, error_model="numpy", fastmath={"reassoc"})  # reassoc: a vectorized sum
def sum_of_squares(x):
    """Sum of x^2 accumulated in float64 (a float32 sum loses digits over millions of terms)."""
    total = 0.0
    for i in range(x.size):
        xi = np.float64(x[i])
        total += xi * xi
    return total


def sum_of_squares_xp(x):
    xp = backend.get_array_module(x)
    x64 = x.astype(xp.float64)
    return float(xp.dot(x64, x64))


def for_array(name: str, x):
    """The version of kernel `name` for where `x` lives: Numba on the CPU, CuPy on the GPU."""
    if backend.get_array_module(x) is np:
        return globals()[name]
    from . import optim_gpu
    return getattr(optim_gpu, name)
