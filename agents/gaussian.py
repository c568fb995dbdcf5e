"""Policies for continuous (Box) action spaces: a diagonal Gaussian N(mean(s), exp(log_std)^2).

The mean comes from the network; log_std is one learned vector, the same in every state (as in
stable-baselines3's A2C/PPO and PFRL's A3C/PPO), starting at `log_std_init`. Actors sample
mean + std * N(0, 1); `play --greedy` takes the mean. The rollout keeps the sampled action and the
env gets it clipped to its bounds (envs/make.py wraps Box-action envs in Gymnasium's ClipAction).
Clipping rather than tanh squashing: the log-probability and the entropy keep their closed forms,
the learned std is the std of what the env is sent inside the bounds, and it is what the peers'
A2C and PPO do (squashing, with its log-det-Jacobian term, belongs with SAC).

The feed-forward network has separate policy and value MLPs (SB3's default for A2C/PPO: the
value's much larger gradients do not pull the policy's features around); a3c-lstm keeps its one
trunk and LSTM with a Gaussian head in place of the softmax.
"""
from __future__ import annotations

import numpy as np

import nets
from nets import backend

from .base import Policy
from .losses import gaussian_log_prob
from .networks import _orthogonal

class GaussianHead(nets.Module):
    """Features -> (mean (N, A) tensor, log_std (A,) parameter)."""

    def __init__(self, in_features: int, n_actions: int, log_std_init: float):
        super().__init__()
        # Small mean weights: every action starts near 0 with the initial std (PPO practice).
        self.mean = nets.Linear(in_features, n_actions, initializer=_orthogonal(0.01))
        self.log_std = nets.Parameter(np.full(n_actions, log_std_init, np.float32))

    def forward(self, features):
        return self.mean(features), self.log_std


class GaussianActorCritic(nets.Module):
    """Observations (normalised first when a Normalizer is given), then a policy MLP into the
    Gaussian head and a value MLP into V(s)."""

    def __init__(self, policy_trunk: nets.Module, value_trunk: nets.Module, n_actions: int,
                 log_std_init: float, normalizer: nets.Module | None = None):
        super().__init__()
        self.normalizer = normalizer
        self.policy_trunk, self.value_trunk = policy_trunk, value_trunk
        self.policy = GaussianHead(policy_trunk.out_features, n_actions, log_std_init)
        self.value = nets.Linear(value_trunk.out_features, 1, initializer=_orthogonal(1.0))

    def _input(self, obs):
        return self.normalizer(obs) if self.normalizer is not None else obs

    def forward(self, obs):
        """((mean (N, A), log_std (A,)), values (N, 1))."""
        x = self._input(obs)
        return self.policy(self.policy_trunk(x)), self.value(self.value_trunk(x))

    def distribution(self, obs):
        """The policy alone, what acting needs: (mean, log_std)."""
        return self.policy(self.policy_trunk(self._input(obs)))


def sample_gaussian(mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One float32 action per row of `mean`."""
    noise = rng.standard_normal(mean.shape, dtype=np.float32)
    return (mean + np.exp(log_std) * noise).astype(np.float32)


def act_gaussian(mean: np.ndarray, log_std: np.ndarray, rng: np.random.Generator):
    """What a Gaussian policy's `act` returns: sampled actions and their log-probabilities,
    float32, by the function V-trace evaluates the learner's policy with (`gaussian_log_prob`)."""
    actions = sample_gaussian(mean, log_std, rng)
    return actions, gaussian_log_prob(mean, log_std, actions).astype(np.float32)


def act_gaussian_greedy(mean: np.ndarray, log_std: np.ndarray):
    """The mean as the action (`play --greedy`), with its log-probability."""
    return mean.astype(np.float32), gaussian_log_prob(mean, log_std, mean).astype(np.float32)


class GaussianPolicy(Policy):
    """Samples from the Gaussian policy of a feed-forward network, or (`greedy`) takes its mean."""

    def __init__(self, network: GaussianActorCritic, rng: np.random.Generator, greedy: bool = False):
        self.network, self.rng, self.greedy = network, rng, greedy

    def act(self, obs, step):
        with nets.no_grad():
            mean, log_std = self.network.distribution(obs)
        mean, log_std = backend.to_host(mean.data), backend.to_host(log_std.data)
        return act_gaussian_greedy(mean, log_std) if self.greedy else act_gaussian(mean, log_std, self.rng)


__all__ = ["GaussianActorCritic", "GaussianHead", "GaussianPolicy", "act_gaussian", "act_gaussian_greedy",
           "sample_gaussian"]
