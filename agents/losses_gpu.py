"""CuPy kernels of the actor-critic loss (losses.ActorCriticLoss) on a GPU: its forward pass is one
launch over the rollout's steps and one sum, its backward pass one launch per input.

The array code makes ~30 launches for arithmetic of a few microseconds, and a GPU learner's update
is bound by launches (~20 us of host time each). One thread per step computes its row's log-softmax,
probabilities, entropy and the three terms, each already divided by the steps for the statistics,
and the row's loss; `terms` (7, n) keeps rows 0-3 for the sum (per-step means of the policy,
entropy and value terms, and the loss), 4-6 for the backward pass (the policy-gradient advantage,
R - V, the entropy). Every array is `raw`, indexed by its logical C-order position; launches are
sized by `size=`.
"""
from __future__ import annotations

import functools

import numpy as np

from nets import backend


@functools.cache
def _kernels():
    cp = backend.cupy_module()
    rows = cp.ElementwiseKernel(
        "raw T logits, raw T values, raw T returns, raw L actions, raw T advantages, bool given, "
        "int64 n, int64 width, float32 beta, float32 value_coef",
        "raw T logp, raw T p, raw T terms", """
        const ptrdiff_t row = i * width;
        T top = logits[row];
        for (ptrdiff_t k = 1; k < width; ++k) top = logits[row + k] > top ? logits[row + k] : top;
        T total = 0;
        for (ptrdiff_t k = 0; k < width; ++k) total += exp(logits[row + k] - top);
        const T log_total = log(total) + top;
        T entropy = 0;
        for (ptrdiff_t k = 0; k < width; ++k) {
            const T lp = logits[row + k] - log_total, pk = exp(lp);
            logp[row + k] = lp;
            p[row + k] = pk;
            entropy -= pk * lp;
        }
        const T advantage = returns[i] - values[i];
        const T pg = given ? advantages[i] : advantage;
        const T policy = -(logits[row + actions[i]] - log_total) * pg;
        const T value = (T)0.5 * advantage * advantage;
        const T mean = (T)1 / (T)n;
        terms[i] = policy * mean;
        terms[n + i] = entropy * mean;
        terms[2 * n + i] = value * mean;
        terms[3 * n + i] = policy - (T)beta * entropy + (T)value_coef * value;
        terms[4 * n + i] = pg;
        terms[5 * n + i] = advantage;
        terms[6 * n + i] = entropy;
        """, "workbench_actor_critic_rows")
    logits_grad = cp.ElementwiseKernel(
        "raw T logp, raw T p, raw T terms, raw L actions, raw T gy, int64 n, int64 width, float32 beta",
        "raw T g", """
        const ptrdiff_t row = i / width;
        if (row < n) {  // d(-A log p_a)/dz = -A (onehot_a - p);  d(-beta H)/dz = beta p (log p + H)
            const T pg = terms[4 * n + row];
            T d = p[i] * (pg + (T)beta * (logp[i] + terms[6 * n + row]));
            if (i % width == actions[row]) d -= pg;
            g[i] = d * gy[0];
        } else {
            g[i] = 0;  // a bootstrap state's row: no gradient
        }
        """, "workbench_actor_critic_logits_grad")
    values_grad = cp.ElementwiseKernel(
        "raw T terms, raw T gy, int64 n, float32 value_coef", "raw T g",
        "g[i] = i < n ? -(T)value_coef * gy[0] * terms[5 * n + i] : (T)0;",
        "workbench_actor_critic_values_grad")
    return rows, logits_grad, values_grad


def forward(logits, values, returns, actions, advantages, beta, value_coef):
    """(loss, stats, saved) of the first len(returns) rows of logits (M, A) and values (M, 1),
    all float32 on the GPU; `saved` is what `backward` reads."""
    cp = backend.cupy_module()
    n, width = len(returns), logits.shape[1]
    rowwise = cp.empty((2, n, width), np.float32)
    terms = cp.empty((7, n), np.float32)
    given = advantages is not None
    _kernels()[0](logits, values, returns, actions, advantages if given else terms, given, n, width,
                  beta, value_coef, rowwise[0], rowwise[1], terms, size=n)
    sums = terms[:4].sum(axis=1)
    stats = {"policy_loss": sums[0], "entropy": sums[1], "value_loss": sums[2]}
    return sums[3], stats, (rowwise, terms, actions)


def backward(saved, gy, logits_shape, values_shape, beta, value_coef):
    """(gradient of the logits, gradient of the values) for the loss's gradient gy (0-d)."""
    cp = backend.cupy_module()
    (logp, p), terms, actions = saved[0], saved[1], saved[2]
    n, width = logp.shape
    g_logits = cp.empty(logits_shape, np.float32)
    g_values = cp.empty(values_shape, np.float32)
    _kernels()[1](logp, p, terms, actions, gy, n, width, beta, g_logits, size=g_logits.size)
    _kernels()[2](terms, gy, n, value_coef, g_values, size=g_values.size)
    return g_logits, g_values
