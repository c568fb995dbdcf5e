"""The unit of experience: a rollout of T steps in E environments, as NumPy arrays.

An actor fills one; an agent learns from a batch of them. Steps are indexed (t, e). A step whose
episode was truncated (time limit) keeps the episode's final observation in `final_obs`, because
its return bootstraps from that state; a terminated step needs none.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Rollout:
    obs: np.ndarray          # (T, E, *obs_shape): the observation each action was chosen from
    actions: np.ndarray      # (T, E) int64
    rewards: np.ndarray      # (T, E) float32
    terminated: np.ndarray   # (T, E) bool: the episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray    # (T, E) bool: the episode was cut short (bootstrap from final_obs)
    final_obs: np.ndarray    # (K, *obs_shape): final observations of the truncated steps
    final_index: np.ndarray  # (K, 2) int64: the (t, e) of each truncated step, in C order
    last_obs: np.ndarray     # (E, *obs_shape): the observation after step T-1 (next rollout's start)
    episode_returns: list[float] = field(default_factory=list)  # episodes finished in this rollout
    episode_lengths: list[int] = field(default_factory=list)
    actor: int = 0           # which actor produced it
    version: int = 0         # version of the weights it acted with (for policy-lag statistics)
    scalars: dict = field(default_factory=dict)  # the policy's loggable values (e.g. epsilon)

    @property
    def steps(self) -> int:
        return self.rewards.size


@dataclass
class Batch:
    """Rollouts joined into one (T, E) grid whose rollout ends count as truncations.

    Cutting each rollout at its end and bootstrapping there is exactly what a truncation means,
    so after `join` every return is computed by one rule and the only extra states a learner
    evaluates are `final_obs` (one per truncated step, in `np.nonzero(truncated)` order).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    final_obs: np.ndarray

    @property
    def steps(self) -> int:
        return self.rewards.size


def _cut_at_end(r: Rollout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truncated, final_obs, final_index) of `r` with its last step cut where the episode goes on."""
    T = r.rewards.shape[0]
    open_end = ~(r.terminated[-1] | r.truncated[-1])
    truncated = r.truncated.copy()
    truncated[-1] |= open_end
    ends = np.nonzero(open_end)[0]
    final_obs = np.concatenate([r.final_obs, r.last_obs[ends]])
    final_index = np.concatenate([r.final_index.reshape(-1, 2),
                                  np.stack([np.full(len(ends), T - 1), ends], axis=1)])
    return truncated, final_obs, final_index


def join(rollouts: list[Rollout]) -> Batch:
    """One Batch from rollouts of equal length (joined along E) or of one env each (along T,
    e.g. whole episodes)."""
    lengths = {r.rewards.shape[0] for r in rollouts}
    widths = {r.rewards.shape[1] for r in rollouts}
    if len(lengths) == 1:
        axis = 1
    elif widths == {1}:
        axis = 0
    else:
        raise ValueError(f"rollouts to join need one length or one env each; got lengths "
                         f"{sorted(lengths)} and widths {sorted(widths)}")
    truncated, finals, positions = [], [], []
    offset = 0
    for r in rollouts:
        cut, final_obs, final_index = _cut_at_end(r)
        truncated.append(cut)
        finals.append(final_obs)
        shifted = final_index.copy()
        shifted[:, axis] += offset
        positions.append(shifted)
        offset += r.rewards.shape[axis]
    truncated = np.concatenate(truncated, axis=axis)
    final_obs = np.concatenate(finals)
    position = np.concatenate(positions)
    order = np.lexsort((position[:, 1], position[:, 0]))  # C order of the joined grid
    cat = lambda name: np.concatenate([getattr(r, name) for r in rollouts], axis=axis)  # noqa: E731
    return Batch(obs=cat("obs"), actions=cat("actions"), rewards=cat("rewards"),
                 terminated=cat("terminated"), truncated=truncated, final_obs=final_obs[order])
