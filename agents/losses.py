"""The agents' losses, each one fused op (forward and analytic backward in array code that runs on
either device: the rollout's actions and returns are moved to where the network's outputs are;
on a GPU the actor-critic loss is a kernel per pass instead, losses_gpu.py).

Composed from nets ops these would be ~15 graph nodes per update, whose Python overhead dominates
a small network's update; tests hold both against hand-computed values and finite differences.
Losses are sums over steps, like A3C's gradients accumulated over t_max steps. An op's `stats` are
0-d arrays on its inputs' device, read with float() once the backward pass is queued (`floats`):
nothing in the op reads the host, so a GPU's queue never drains in the middle of an update, and
the op can be part of a CUDA graph (nets.CapturedGradients).
"""
from __future__ import annotations

import numpy as np

from nets import Function, backend

from . import losses_gpu


def _log_softmax(xp, logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def floats(stats: dict) -> dict[str, float]:
    """A loss op's statistics as Python floats."""
    return {name: float(value) for name, value in stats.items()}


def action_log_probs(logits, actions: np.ndarray) -> np.ndarray:
    """log softmax(logits)[i, actions[i]] for each row i, on the host (logits on either device)."""
    xp = backend.get_array_module(logits)
    rows = xp.arange(len(actions))
    return backend.to_host(_log_softmax(xp, logits)[rows, xp.asarray(actions)])


class ActorCriticLoss(Function):
    """sum_i [ -log pi(a_i|s_i) A_i - beta H(pi(.|s_i)) + value_coef/2 (R_i - V(s_i))^2 ],
    A_i = R_i - V(s_i) held constant in the policy term (Mnih et al. 2016, A3C), or the
    `advantages` given (V-trace's, whose value targets R_i differ from R_i - V(s_i) + V(s_i)).

    Inputs: logits (M, actions) and values (M, 1) for M >= N rows, of which the first N are the
    rollout's steps (rows after them, e.g. bootstrap states evaluated in the same forward pass,
    get no gradient). After forward, `stats` holds per-step means of each term.
    """

    def __init__(self, actions: np.ndarray, returns: np.ndarray, entropy_beta: float,
                 value_coef: float = 1.0, advantages: np.ndarray | None = None):
        self.actions, self.returns, self.advantages = actions, returns, advantages
        self.beta, self.value_coef = entropy_beta, value_coef

    def forward(self, logits, values):
        xp = backend.get_array_module(logits)
        n, dtype = len(self.returns), logits.dtype  # float32 in training, float64 in gradient checks
        self.shapes, self.dtype = (logits.shape, values.shape), dtype
        self.returns = xp.asarray(self.returns, dtype=dtype)
        self.actions = xp.asarray(self.actions)
        self.beta, self.value_coef = dtype.type(self.beta), dtype.type(self.value_coef)
        self.fused = xp is not np and dtype == np.float32  # a GPU's: one kernel (losses_gpu.py)
        if self.fused:
            advantages = None if self.advantages is None else xp.asarray(self.advantages, dtype=dtype)
            loss, self.stats, self.saved = losses_gpu.forward(logits, values, self.returns, self.actions,
                                                              advantages, self.beta, self.value_coef)
            return loss
        logp = _log_softmax(xp, logits[:n])
        p = xp.exp(logp)
        v = values[:n].reshape(n)
        advantage = self.returns - v
        pg_advantage = advantage if self.advantages is None else xp.asarray(self.advantages, dtype=dtype)
        entropy = -(p * logp).sum(axis=1)
        rows = xp.arange(n)
        policy_loss = -(logp[rows, self.actions] * pg_advantage).sum()
        value_loss = dtype.type(0.5) * (advantage * advantage).sum()
        self.logp, self.p, self.advantage, self.entropy = logp, p, advantage, entropy
        self.pg_advantage = pg_advantage
        self.stats = {"policy_loss": policy_loss / n, "value_loss": value_loss / n, "entropy": entropy.sum() / n}
        return xp.asarray(policy_loss - self.beta * entropy.sum() + self.value_coef * value_loss,
                          dtype=dtype)

    def backward(self, gy):
        if self.fused:
            return losses_gpu.backward(self.saved, gy, *self.shapes, self.beta, self.value_coef)
        xp = backend.get_array_module(gy)
        n, p, advantage, pg = len(self.returns), self.p, self.advantage, self.pg_advantage
        # d(-A log p_a)/dz = -A (onehot_a - p);  d(-beta H)/dz = beta p (log p + H)
        g_policy = p * (pg[:, None] + self.beta * (self.logp + self.entropy[:, None]))
        g_policy[xp.arange(n), self.actions] -= pg
        g_logits = xp.zeros(self.shapes[0], dtype=self.dtype)
        g_logits[:n] = g_policy * gy
        g_values = xp.zeros(self.shapes[1], dtype=self.dtype)
        g_values[:n] = (-self.value_coef * gy * advantage).reshape(n, *self.shapes[1][1:])
        return g_logits, g_values


def actor_critic_loss(logits, values, actions, returns, entropy_beta: float, value_coef: float = 1.0,
                      advantages=None):
    """(loss tensor, stats) of ActorCriticLoss."""
    op = ActorCriticLoss(actions, returns, entropy_beta, value_coef, advantages)
    loss = op(logits, values)
    return loss, op.stats


class QLoss(Function):
    """sum_i w_i 1/2 (y_i - Q(s_i, a_i))^2, or the Huber loss with `delta` (DQN's clipped error);
    `weights` w_i default to 1 (a replay agent passes importance weights over the batch size).

    Input: q (M, actions) for M >= N rows, of which the first N are the steps. After forward,
    `stats` holds the per-step mean loss (unweighted) and mean Q(s, a), and `error` the errors
    Q(s_i, a_i) - y_i.
    """

    def __init__(self, actions: np.ndarray, targets: np.ndarray, delta: float | None = None,
                 weights: np.ndarray | None = None):
        self.actions, self.targets, self.delta, self.weights = actions, targets, delta, weights

    def forward(self, q):
        xp = backend.get_array_module(q)
        n = len(self.targets)
        self.shape, self.dtype = q.shape, q.dtype
        self.targets = xp.asarray(self.targets, dtype=q.dtype)
        self.actions = xp.asarray(self.actions)
        chosen = q[xp.arange(n), self.actions]
        error = chosen - self.targets
        if self.delta is None:
            loss = 0.5 * error * error
            self.g = error
        else:
            small = xp.abs(error) <= self.delta
            loss = xp.where(small, 0.5 * error * error, self.delta * (xp.abs(error) - 0.5 * self.delta))
            self.g = xp.clip(error, -self.delta, self.delta)
        self.stats = {"q_loss": loss.sum() / n, "q_values": chosen.mean()}
        self.error = error
        if self.weights is not None:
            weights = xp.asarray(self.weights, dtype=q.dtype)
            loss, self.g = loss * weights, self.g * weights
        return xp.asarray(loss.sum(), dtype=q.dtype)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        g = xp.zeros(self.shape, dtype=self.dtype)
        g[xp.arange(len(self.targets)), self.actions] = self.g * gy
        return g


def q_loss(q, actions, targets, delta: float | None = None):
    """(loss tensor, stats) of QLoss."""
    op = QLoss(actions, targets, delta)
    loss = op(q)
    return loss, op.stats


LOG_2PI = float(np.log(2 * np.pi))


class GaussianActorCriticLoss(Function):
    """ActorCriticLoss for a diagonal Gaussian policy N(mean, exp(log_std)^2) over continuous
    actions: log pi(a|s) = -sum_j [(a_j - mean_j)^2 / (2 std_j^2) + log std_j + log(2 pi) / 2],
    H = sum_j [log std_j + (1 + log(2 pi)) / 2].

    Inputs: mean (M, A), log_std (A,) (state-independent: its gradient sums over the rows) or
    (M, A), and values (M, 1); as in ActorCriticLoss, rows after the first N get no gradient,
    and the policy term takes the `advantages` given (V-trace's) in place of R_i - V(s_i).
    `actions` (N, A) are the sampled actions (before any clipping to the env's bounds).
    """

    def __init__(self, actions: np.ndarray, returns: np.ndarray, entropy_beta: float,
                 value_coef: float = 1.0, advantages: np.ndarray | None = None):
        self.actions, self.returns, self.advantages = actions, returns, advantages
        self.beta, self.value_coef = entropy_beta, value_coef

    def forward(self, mean, log_std, values):
        xp = backend.get_array_module(mean)
        n, dtype = len(self.returns), mean.dtype
        self.shapes, self.dtype = (mean.shape, log_std.shape, values.shape), dtype
        self.returns = xp.asarray(self.returns, dtype=dtype)
        actions = xp.asarray(self.actions, dtype=dtype).reshape(n, -1)
        log_std_n = log_std[:n] if log_std.ndim == 2 else xp.broadcast_to(log_std, (n, log_std.shape[0]))
        inv_std = xp.exp(-log_std_n)
        z = (actions - mean[:n]) * inv_std
        half_log_2pi = dtype.type(0.5 * LOG_2PI)
        logp = -(dtype.type(0.5) * z * z + log_std_n + half_log_2pi).sum(axis=1)
        entropy = (log_std_n + dtype.type(0.5) + half_log_2pi).sum(axis=1)
        advantage = self.returns - values[:n].reshape(n)
        pg_advantage = advantage if self.advantages is None else xp.asarray(self.advantages, dtype=dtype)
        policy_loss = -(logp * pg_advantage).sum()
        value_loss = dtype.type(0.5) * (advantage * advantage).sum()
        self.z, self.inv_std, self.advantage, self.pg_advantage = z, inv_std, advantage, pg_advantage
        self.beta, self.value_coef = dtype.type(self.beta), dtype.type(self.value_coef)
        self.stats = {"policy_loss": policy_loss / n, "value_loss": value_loss / n, "entropy": entropy.sum() / n,
                      "action_std": xp.exp(log_std_n).mean()}
        return xp.asarray(policy_loss - self.beta * entropy.sum() + self.value_coef * value_loss,
                          dtype=dtype)

    def backward(self, gy):
        xp = backend.get_array_module(gy)
        n, z, a = len(self.returns), self.z, self.pg_advantage[:, None]
        mean_shape, log_std_shape, values_shape = self.shapes
        # d log pi / d mean = z / std;  d log pi / d log_std = z^2 - 1;  d H / d log_std = 1
        g_mean = xp.zeros(mean_shape, dtype=self.dtype)
        g_mean[:n] = -a * z * self.inv_std * gy
        g_rows = (-a * (z * z - 1) - self.beta) * gy
        if len(log_std_shape) == 1:
            g_log_std = g_rows.sum(axis=0)
        else:
            g_log_std = xp.zeros(log_std_shape, dtype=self.dtype)
            g_log_std[:n] = g_rows
        g_values = xp.zeros(values_shape, dtype=self.dtype)
        g_values[:n] = (-self.value_coef * gy * self.advantage).reshape(n, *values_shape[1:])
        return g_mean, g_log_std, g_values


def gaussian_actor_critic_loss(mean, log_std, values, actions, returns, entropy_beta: float,
                               value_coef: float = 1.0, advantages=None):
    """(loss tensor, stats) of GaussianActorCriticLoss."""
    op = GaussianActorCriticLoss(actions, returns, entropy_beta, value_coef, advantages)
    loss = op(mean, log_std, values)
    return loss, op.stats


def gaussian_log_prob(mean: np.ndarray, log_std: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """log N(actions; mean, exp(log_std)^2) per row, summed over the action's dimensions."""
    z = (actions - mean) * np.exp(-log_std)
    return -(0.5 * z * z + log_std + 0.5 * LOG_2PI).sum(axis=-1)
