"""Observation and reward normalisation for vector observations, shared by every actor (what
stable-baselines3's VecNormalize and PFRL's EmpiricalNormalization do in one process).

Actors count what they see: each rollout carries the moments (count, mean, sum of squared
deviations) of the observations its policy acted on and of each env's running discounted return
(with gradients on the actors, its Gradient carries them). The learner merges them (the pairwise
update of Chan, Golub & LeVeque) into its running statistics once per rollout, right after the
optimizer step that learned from it (`Agent.step`). Those live in a `Normalizer` inside the
network: float64 buffers, which checkpoints keep, and what losses and acting read of them, the
observation shift and scale and the reward scale, in float32 parameters that no loss reaches.
Being parameters, they travel in the flat vector the learner publishes, so every actor normalises
observations, and scales rewards when it computes a gradient, with the statistics that came with
the weights it acts with, as the learner does, on every backend; checkpoints, `play` and the
evaluation process get them with the weights.

Observations become clip((x - mean) / sqrt(var + 1e-8), -10, 10); rewards (for learning only)
r / sqrt(var(discounted return) + 1e-8), clipped to [-10, 10]: VecNormalize's defaults.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nets
from nets import backend

CLIP = 10.0
EPSILON = 1e-8


@dataclass
class Moments:
    """count, mean and sum of squared deviations (M2) of a set of vectors, in float64 (a float32
    mean stops moving once count x its increments fall under its rounding step)."""

    count: float
    mean: np.ndarray
    m2: np.ndarray

    @classmethod
    def of(cls, x) -> "Moments":
        """The moments of the rows of `x` (N, D)."""
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        mean = x.mean(axis=0) if len(x) else np.zeros(x.shape[1])
        return cls(float(len(x)), mean, ((x - mean) ** 2).sum(axis=0))

    def __add__(self, other: "Moments") -> "Moments":
        """The moments of both sets together."""
        return Moments(*combine(self.count, self.mean, self.m2, other))


def combine(count, mean, m2, other: Moments):
    """(count, mean, M2) of a set with these moments and the set `other` together; `mean` and `m2`
    may be device arrays (a GPU learner's buffers)."""
    total = count + other.count
    if other.count == 0:
        return count, mean, m2
    xp = backend.get_array_module(mean)
    delta = xp.asarray(other.mean) - mean
    new_mean = mean + delta * (other.count / total)
    new_m2 = m2 + xp.asarray(other.m2) + delta * delta * (count * other.count / total)
    return total, new_mean, new_m2


class Tracker:
    """An actor's side: the moments of a rollout's observations and of its envs' discounted
    returns (each env's return carries over from rollout to rollout and restarts at an episode's
    end, as in VecNormalize)."""

    def __init__(self, n_envs: int, gamma: float, observations: bool, returns: bool):
        self.gamma, self.observations, self.returns = gamma, observations, returns
        self.running = np.zeros(n_envs, np.float64)

    def moments(self, obs: np.ndarray, rewards: np.ndarray, ended: np.ndarray) -> dict[str, Moments]:
        """obs (T, E, ...), rewards and ended (T, E) of one rollout."""
        out = {}
        if self.observations:
            out["obs"] = Moments.of(obs.reshape(obs.shape[0] * obs.shape[1], -1))
        if self.returns:
            seen = np.empty(rewards.shape, np.float64)
            for t in range(len(rewards)):
                self.running = self.running * self.gamma + rewards[t]
                seen[t] = self.running
                self.running[ended[t]] = 0.0
            out["return"] = Moments.of(seen.reshape(-1, 1))
        return out


def merge_all(parts: list[dict[str, Moments]]) -> dict[str, Moments]:
    """One dict of moments from several rollouts' (a joined batch's)."""
    merged: dict[str, Moments] = {}
    for part in parts:
        for name, moments in part.items():
            merged[name] = merged[name] + moments if name in merged else moments
    return merged


class Normalizer(nets.Module):
    """The running statistics a network normalises its observations with, and those of the
    discounted return that losses scale rewards by (see the module docstring).
    `size` None: rewards only (observations pass through)."""

    def __init__(self, size: int | None, rewards: bool):
        super().__init__()
        self.size, self.rewards = size, rewards
        if size is not None:
            self.shift = nets.Parameter(np.zeros(size, np.float32))
            self.scale = nets.Parameter(np.ones(size, np.float32))
            self.register_buffer("obs_count", np.zeros(1, np.float64))
            self.register_buffer("obs_mean", np.zeros(size, np.float64))
            self.register_buffer("obs_m2", np.zeros(size, np.float64))
        if rewards:
            self.reward_scale = nets.Parameter(np.ones(1, np.float32))
            self.register_buffer("return_count", np.zeros(1, np.float64))
            self.register_buffer("return_mean", np.zeros(1, np.float64))
            self.register_buffer("return_m2", np.zeros(1, np.float64))

    def forward(self, obs):
        """Normalised observations (N, size) as a constant tensor on the parameters' device
        (no gradient reaches the statistics)."""
        if self.size is None:
            return obs
        xp = backend.get_array_module(self.shift.data)
        x = xp.asarray(obs.data if isinstance(obs, nets.Tensor) else obs, dtype=np.float32)
        x = (x.reshape(len(x), self.size) - self.shift.data) * self.scale.data
        return nets.Tensor(xp.clip(x, -CLIP, CLIP))

    def merge(self, moments: dict[str, Moments]) -> None:
        """Take in the moments actors sent, and publish the new observation shift and scale and
        reward scale."""
        if self.size is not None and "obs" in moments:
            count, mean, m2 = combine(float(self.obs_count[0]), self.obs_mean, self.obs_m2, moments["obs"])
            self.obs_count[...] = count
            self.obs_mean[...] = mean
            self.obs_m2[...] = m2
            xp = backend.get_array_module(mean)
            self.shift.data[...] = mean.astype(np.float32)
            self.scale.data[...] = (1.0 / xp.sqrt(m2 / count + EPSILON)).astype(np.float32)
        if self.rewards and "return" in moments:
            count, mean, m2 = combine(float(self.return_count[0]), self.return_mean, self.return_m2,
                                      moments["return"])
            self.return_count[...] = count
            self.return_mean[...] = mean
            self.return_m2[...] = m2
            xp = backend.get_array_module(m2)
            self.reward_scale.data[...] = (1.0 / xp.sqrt(m2 / count + EPSILON)).astype(np.float32)

    def scale_rewards(self, rewards: np.ndarray) -> np.ndarray:
        """Rewards (host, float32) divided by the discounted return's running std (the published
        `reward_scale`; 1 before any return was seen), clipped."""
        if not self.rewards:
            return rewards
        scale = backend.to_host(self.reward_scale.data)[0]
        return np.clip(rewards * scale, -CLIP, CLIP).astype(np.float32)


class NormalizedTrunk(nets.Module):
    """A trunk that reads normalised observations (for networks with one trunk)."""

    def __init__(self, normalizer: Normalizer, trunk: nets.Module):
        super().__init__()
        self.normalizer, self.trunk = normalizer, trunk
        self.out_features = trunk.out_features

    def forward(self, obs):
        return self.trunk(self.normalizer(obs))


def find_normalizer(network: nets.Module) -> Normalizer | None:
    return next((m for m in network.modules() if isinstance(m, Normalizer)), None)
