"""The unit of experience: a rollout of T steps in E environments, as NumPy arrays.

An actor fills one; an agent learns from a batch of them, or the actor computes its gradient and
sends that (`Gradient`). Steps are indexed (t, e). A step's return bootstraps where its episode
was cut: truncated by the env's time limit, or still running when the rollout ended. Both are
marked `truncated` and keep the state they were cut at in `final_obs`; a terminated step needs no
such state (its successor is terminal).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .normalize import merge_all


@dataclass
class Batch:
    """Steps to learn from: one (T, E) grid, one rule for every return."""

    obs: np.ndarray          # (T, E, *obs_shape): the observation each action was chosen from
    actions: np.ndarray      # (T, E) int64, or (T, E, A) float32 for continuous actions
    log_probs: np.ndarray    # (T, E) float32: log mu(a|s) under the policy that acted (V-trace)
    rewards: np.ndarray      # (T, E) float32
    terminated: np.ndarray   # (T, E) bool: the episode ended in a terminal state (no bootstrap)
    truncated: np.ndarray    # (T, E) bool: the episode was cut here (bootstrap from final_obs)
    final_obs: np.ndarray    # (K, *obs_shape): the states the cut steps bootstrap from
    final_index: np.ndarray  # (K, 2) int64: the (t, e) of each cut step
    initial_state: tuple | None = None  # recurrent policies: their state arrays (E, ...) at t = 0
    moments: dict = field(default_factory=dict)  # normalisation statistics (agents/normalize.py)

    @property
    def steps(self) -> int:
        return self.rewards.size


@dataclass
class Rollout(Batch):
    """What an actor sends: a Batch plus what the learner logs."""

    episode_returns: list[float] = field(default_factory=list)  # episodes finished in this rollout
    episode_lengths: list[int] = field(default_factory=list)
    actor: int = 0           # which actor produced it
    version: int = 0         # version of the weights it acted with (for policy-lag statistics)
    scalars: dict = field(default_factory=dict)  # the policy's loggable values (e.g. epsilon)
    priorities: np.ndarray | None = None  # (T, E) initial replay priorities from the actor (Ape-X)


@dataclass
class Gradient:
    """What an actor that computes gradients sends instead of its rollout: the gradient of the
    rollout's loss (`Agent.gradients`, with the weights it acted with), the loss's statistics,
    the rollout's normalisation moments (the learner merges them when it steps) and what the
    learner logs about the rollout."""

    grad: np.ndarray | None  # like the parameters; None on the wire where it lies in shared memory
    stats: dict[str, float]
    steps: int
    episode_returns: list[float]
    episode_lengths: list[int]
    actor: int
    version: int
    scalars: dict
    moments: dict = field(default_factory=dict)
    slot: int = 0  # which of the actor's gradient slots holds it (local processes)

    @classmethod
    def of(cls, rollout: Rollout, stats: dict[str, float], grad: np.ndarray | None) -> "Gradient":
        return cls(grad, stats, rollout.steps, rollout.episode_returns, rollout.episode_lengths,
                   rollout.actor, rollout.version, rollout.scalars, rollout.moments)


def join(rollouts: list[Rollout]) -> Batch:
    """One Batch from rollouts of equal length (joined along E) or of one env each (along T,
    e.g. whole episodes)."""
    first = rollouts[0]
    if len(rollouts) == 1:
        return Batch(first.obs, first.actions, first.log_probs, first.rewards, first.terminated,
                     first.truncated, first.final_obs, first.final_index, first.initial_state,
                     first.moments)
    if len({r.rewards.shape[0] for r in rollouts}) == 1:
        axis = 1
    elif {r.rewards.shape[1] for r in rollouts} == {1}:
        axis = 0
    else:
        raise ValueError(f"rollouts to join need one length or one env each; got shapes "
                         f"{sorted({r.rewards.shape for r in rollouts})}")
    offsets = np.cumsum([0] + [r.rewards.shape[axis] for r in rollouts[:-1]])
    final_index = np.concatenate([r.final_index for r in rollouts])
    final_index[:, axis] += np.repeat(offsets, [len(r.final_index) for r in rollouts])
    cat = lambda name: np.concatenate([getattr(r, name) for r in rollouts], axis=axis)  # noqa: E731
    initial_state = None
    if first.initial_state is not None:
        if axis == 0:
            raise ValueError("rollouts of a recurrent policy join along envs, not along time")
        initial_state = tuple(np.concatenate(parts) for parts in zip(*(r.initial_state for r in rollouts)))
    return Batch(obs=cat("obs"), actions=cat("actions"), log_probs=cat("log_probs"),
                 rewards=cat("rewards"), terminated=cat("terminated"), truncated=cat("truncated"),
                 final_obs=np.concatenate([r.final_obs for r in rollouts]), final_index=final_index,
                 initial_state=initial_state, moments=merge_all([r.moments for r in rollouts]))
