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

import gymnasium as gym
import numpy as np

import nets

from .base import Policy
from .losses import gaussian_log_prob
from .networks import _orthogonal

# Hyperparameters that differ for continuous actions from the agents' classic-control defaults
# (applied under the user's own settings, like agents/pixels.py's Atari defaults). A3C: GAE(0.9)
# returns over rollouts of 8 steps, RMSProp lr 2e-3 with eps 1e-5 and no entropy bonus (RL Zoo's
# A2C for Pendulum and MuJoCo has GAE 0.9, 8 steps, eps 1e-5, no bonus; our loss is a sum over
# the batch, not a mean, and lr 2e-3 learned Pendulum fastest of 1e-3 to 1e-2 here); the log std
# starts at -0.5 (std 0.6: 1.0 took longer on Pendulum, whose actions span [-2, 2]).
_A3C = {"lr": 2e-3, "rmsprop_eps": 1e-5, "entropy_beta": 0.0, "t_max": 8, "gae_lambda": 0.9,
        "log_std_init": -0.5}
CONTINUOUS_DEFAULTS = {
    "a3c": _A3C,
    "a3c-lstm": _A3C,
    "impala": _A3C,  # A3C's network and loss; gae_lambda shortens V-trace's traces
    "reinforce": {"lr": 1e-3, "log_std_init": -0.5},
}
# Per family of environments (by the entry point's package), for A3C's family: MuJoCo learns with
# lr 7e-4 (SB3's A2C default, RL Zoo's A2C on MuJoCo): at 2e-3 HalfCheetah-v5 reached a last-10
# return of 2,400 in 4 minutes here, then fell to -300 and stayed under 400 through 16 minutes
# (benchmarks/rl_continuous.py --curve), its std shrinking and its gradients at the clip.
FAMILY_DEFAULTS = {"gymnasium.envs.mujoco": {"lr": 7e-4}}
# Per environment, on top (RL Zoo's tuned Pendulum-v1: gamma 0.9, its reward horizon is short).
ENV_DEFAULTS = {
    "Pendulum-v1": {"gamma": 0.9},
}


def continuous_defaults(agent: str, env_id: str) -> dict:
    defaults = dict(CONTINUOUS_DEFAULTS.get(agent, {}))
    if CONTINUOUS_DEFAULTS.get(agent) is _A3C:
        entry = str(gym.spec(env_id).entry_point) if env_id in gym.registry else ""
        for package, values in FAMILY_DEFAULTS.items():
            if entry.startswith(package):
                defaults.update(values)
    return {**defaults, **ENV_DEFAULTS.get(env_id, {})}


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


class GaussianPolicy(Policy):
    """Samples from the Gaussian policy of a feed-forward network."""

    def __init__(self, network: GaussianActorCritic, rng: np.random.Generator):
        self.network, self.rng = network, rng

    def act(self, obs, step):
        with nets.no_grad():
            mean, log_std = self.network.distribution(obs)
        return act_gaussian(mean.data, log_std.data, self.rng)


__all__ = ["CONTINUOUS_DEFAULTS", "GaussianActorCritic", "GaussianHead", "GaussianPolicy",
           "act_gaussian", "continuous_defaults", "sample_gaussian"]
