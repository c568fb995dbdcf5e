"""Discounted n-step returns from a rollout, with Gymnasium's terminated/truncated distinction.

Arrays are (T, E): T steps of E environments. `terminated[t]` means s_{t+1} is terminal (its value
is 0); `truncated[t]` means the episode was cut after step t (time limit, or the rollout's end) and
the return bootstraps from the value of the state it was cut at. The last row is always a cut or
a termination. An episode that ends at step t never leaks into the return of step t: the next row
belongs to a new episode.
"""
from __future__ import annotations

import numpy as np


def next_state_values(values: np.ndarray, final_index: np.ndarray,
                      final_values: np.ndarray) -> np.ndarray:
    """Value of the state after each step: `values[t + 1]` (the value of obs[t + 1]) within an
    episode, and at each cut step (t, e) listed in `final_index`, the value of the state it was
    cut at (`final_values`). Entries after a terminated step are never read by `nstep_returns`."""
    following = np.empty_like(values)
    following[:-1] = values[1:]
    following[-1] = 0  # the last row is always cut (listed) or terminated
    following[final_index[:, 0], final_index[:, 1]] = final_values
    return following


def nstep_returns(rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray,
                  next_values: np.ndarray, gamma: float, n: int | None = None) -> np.ndarray:
    """G_t = sum_{k<m} gamma^k r_{t+k} + gamma^m V(s_{t+m}) for m = min(n, steps to the episode's
    cut), with V(terminal) = 0.

    `next_values[t]` is V(s_{t+1}) (see `next_state_values`); it is read where the return is cut:
    after n steps, at a truncation and at the last row. `n=None` uses every step up to the cut
    (A3C's and async n-step Q's forward view over t_max steps); `n=1` gives one-step targets.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    T = rewards.shape[0]
    gamma = np.float32(gamma)
    continues = ~(terminated | truncated)
    continues[-1] = False  # the rollout's last row has no successor in the batch
    bootstrap = np.where(terminated, np.float32(0), next_values).astype(np.float32)
    if n is None or n >= T:
        # G_t = r_t + gamma (G_{t+1} where the episode goes on, else its bootstrap value)
        carry = continues * gamma
        cut = np.where(continues, np.float32(0), gamma * bootstrap)
        returns = np.empty_like(rewards)
        following = np.zeros_like(rewards[0])
        for t in range(T - 1, -1, -1):
            following = rewards[t] + cut[t] + carry[t] * following
            returns[t] = following
        return returns
    if n < 1:
        raise ValueError(f"n must be >= 1 or None, got {n}")
    # G_t accumulated forward over k = 0..n-1, vectorised over t: `alive` marks returns still open.
    returns = np.zeros_like(rewards)
    discount = np.ones_like(rewards)
    alive = np.ones(rewards.shape, dtype=bool)
    for k in range(n):
        rows = slice(0, T - k)  # returns that can still take step t + k
        r, go_on, boot = rewards[k:], continues[k:], bootstrap[k:]
        open_ = alive[rows]
        returns[rows] += np.where(open_, discount[rows] * r, 0)
        discount[rows] *= gamma
        cut_here = open_ & (~go_on if k < n - 1 else np.ones_like(go_on))
        returns[rows] += np.where(cut_here, discount[rows] * boot, 0)
        alive[rows] &= ~cut_here
    return returns


def vtrace(rewards: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, values: np.ndarray,
           next_values: np.ndarray, log_rhos: np.ndarray, gamma: float, rho_bar: float = 1.0,
           c_bar: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """V-trace value targets v_s and policy-gradient advantages (Espeholt et al. 2018, "IMPALA",
    section 4) for actions a behaviour policy mu chose, learning a policy pi:

        v_s = V(x_s) + delta_s + gamma c_s (v_{s+1} - V(x_{s+1}))
        delta_s = rho_s (r_s + gamma V(x_{s+1}) - V(x_s))
        advantage_s = rho_s (r_s + gamma v_{s+1} - V(x_s))
        rho_s = min(rho_bar, pi(a_s|x_s) / mu(a_s|x_s)),  c_s = min(c_bar, same ratio)

    `values` (T, E) are V(x_t); `next_values[t]` is V(x_{t+1}) (`next_state_values`); `log_rhos`
    are log pi - log mu of the actions taken. V(terminal) = 0, and where the episode is cut (a
    truncation or the rollout's last row) v_{s+1} is V(x_{s+1}): nothing to correct beyond it.
    With pi = mu and rho_bar, c_bar >= 1 every ratio is 1, the corrections telescope and v_s is
    the n-step return of `nstep_returns`; the advantage is then v_s - V(x_s), as in A3C.
    """
    rewards = np.asarray(rewards, dtype=np.float32)
    ratios = np.exp(log_rhos).astype(np.float32)
    rho, c = np.minimum(np.float32(rho_bar), ratios), np.minimum(np.float32(c_bar), ratios)
    discounts = np.where(terminated, np.float32(0), np.float32(gamma))
    continues = ~(terminated | truncated)
    continues[-1] = False  # the rollout's last row has no successor in the batch
    deltas = rho * (rewards + discounts * next_values - values)
    corrections = np.empty_like(rewards)  # v_s - V(x_s), from the last step back
    carry = np.zeros_like(rewards[0])
    for t in range(len(rewards) - 1, -1, -1):
        carry = deltas[t] + discounts[t] * c[t] * continues[t] * carry
        corrections[t] = carry
    targets = values + corrections
    following = next_values.copy()  # v_{s+1}: the next row's target where the episode goes on
    following[:-1][continues[:-1]] = targets[1:][continues[:-1]]
    advantages = rho * (rewards + discounts * following - values)
    return targets, advantages
