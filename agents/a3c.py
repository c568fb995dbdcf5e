"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep
Reinforcement Learning", Algorithm S3)."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

import nets
from nets import backend
from nets.settings import Settings, setting

from .base import Agent, Policy, sample_categorical
from .gaussian import GaussianActorCritic, GaussianPolicy
from .losses import action_log_probs, actor_critic_loss, gaussian_actor_critic_loss
from .networks import TRUNK_RULE, ActorCritic, make_trunk
from .normalize import Normalizer, NormalizedTrunk, Tracker, find_normalizer
from .returns import lambda_returns, next_state_values, nstep_returns


@dataclass
class A3CConfig(Settings):
    """A3C hyperparameters.

    From the paper: t_max 5, gamma 0.99, RMSProp with alpha 0.99 and eps 0.1 inside the square
    root (the shared-statistics RMSProp of the paper's code; ChainerRL/PFRL's
    RMSpropAsync), learning rate annealed linearly to 0 over the run. The paper draws lr from
    LogUniform(1e-4, 1e-2); 1e-2, the top of that range, learns CartPole fastest here (PFRL's
    Atari default is 7e-4). Gradient-norm clipping at 40 is PFRL's A3C default
    (examples/atari/train_a3c.py), and so is value_coef 0.5 in the loss
    -log pi(a|s) A - beta H(pi) + value_coef / 2 (R - V)^2, summed over the rollout's steps
    (value_coef 1 is the plain 0.5 (R - V)^2; 0.5 keeps the shared trunk's policy stable once
    CartPole is balanced).
    The paper's entropy beta 0.01 is Atari's (PRESETS); classic control has none, as in
    RL Zoo's tuned CartPole A2C (ent_coef 0.0): with 0.01 a CartPole seed hovered at 415-465
    through 300k steps, without it 6 of 6 seeds passed a last-100 return of 475 by 101k.
    The trunk and its sizes suit vector observations (CartPole); Atari uses a conv trunk.
    Box (continuous) actions get a Gaussian policy (agents/gaussian.py, with PRESETS of their own),
    and with them running normalisation of vector observations and of rewards
    (agents/normalize.py); `normalize_obs` / `normalize_reward` true or false choose for any env.
    """

    lr: float = setting(1e-2, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    t_max: int = setting(5, ">= 1")
    entropy_beta: float = setting(0.0, ">= 0")
    value_coef: float = setting(0.5, ">= 0")
    rmsprop_alpha: float = setting(0.99, "in [0, 1)")
    rmsprop_eps: float = setting(0.1, "> 0")
    max_grad_norm: float = setting(40.0, "> 0")
    lr_anneal: bool = True
    trunk: str = setting("auto", TRUNK_RULE)  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = setting((64, 64), ">= 1")
    gae_lambda: float | None = setting(None, "in [0, 1]")  # None: n-step returns (the paper); else GAE(lambda)'s
    log_std_init: float = 0.0  # Gaussian policies: the log std every action dimension starts at
    normalize_obs: bool | None = None  # None: for Box actions and vector observations
    normalize_reward: bool | None = None  # None: for Box actions


# Settings that differ from A3CConfig's by env tag (agents/base.py: Agent.defaults), under the user's.
# Atari (and other images): lr 7e-4 and RMSProp epsilon 1e-5, OpenAI Baselines' A2C on Atari (PFRL's
# A3C example has the same lr); the paper's epsilon of 0.1 inside the root caps each step at
# ~3 lr |g|: with the conv net's per-weight gradients (~1e-3) the policy's entropy had not moved
# from log(4) after 150k Breakout steps. The paper's entropy bonus of 0.01.
# Box actions: GAE(0.9) returns over rollouts of 8 steps, RMSProp lr 2e-3 with eps 1e-5 and no
# entropy bonus (RL Zoo's A2C for Pendulum and MuJoCo has GAE 0.9, 8 steps, eps 1e-5, no bonus;
# our loss is a sum over the batch, not a mean, and lr 2e-3 learned Pendulum fastest of 1e-3 to
# 1e-2 here); the log std starts at -0.5 (std 0.6: 1.0 took longer on Pendulum, whose actions span
# [-2, 2]).
# MuJoCo: lr 7e-4 (SB3's A2C default, RL Zoo's A2C on MuJoCo): at 2e-3 HalfCheetah-v5 reached a
# last-10 return of 2,400 in 4 minutes here, then fell to -300 and stayed under 400 through 16
# minutes (benchmarks/rl_continuous.py --curve), its std shrinking and its gradients at the clip.
# Pendulum-v1: gamma 0.9, RL Zoo's tuned value (its reward horizon is short).
PRESETS = {
    "pixels": {"lr": 7e-4, "rmsprop_eps": 1e-5, "entropy_beta": 0.01},
    "box": {"lr": 2e-3, "rmsprop_eps": 1e-5, "entropy_beta": 0.0, "t_max": 8, "gae_lambda": 0.9,
            "log_std_init": -0.5},
    "mujoco": {"lr": 7e-4},
    "Pendulum-v1": {"gamma": 0.9},
}


class SoftmaxPolicy(Policy):
    """Samples from the policy head's softmax, or (`greedy`) takes its most likely action."""

    def __init__(self, network: ActorCritic, rng: np.random.Generator, greedy: bool = False):
        self.network, self.rng, self.greedy = network, rng, greedy

    def act(self, obs, step):
        with nets.no_grad():
            logits = backend.to_host(self.network.logits(obs).data)
        actions = logits.argmax(axis=1) if self.greedy else sample_categorical(logits, self.rng)
        return actions, action_log_probs(logits, actions)


class A3C(Agent):
    name = "a3c"
    summary = "asynchronous advantage actor-critic, Mnih et al. 2016 (a Gaussian policy for Box actions)"
    Config = A3CConfig
    continuous_actions = True
    presets = PRESETS
    # Atari: 8 envs per actor. Breakout, 2 actors on 2 cores (benchmarks/rl_atari.py): 4 envs 1,758
    # frames/s, 8 envs 2,166, 16 envs 2,015-2,060 (a bigger batch per forward pass and one learner
    # step per 40 env steps instead of 20; 16 were no faster). Box actions: 8 (on 2 cores, 8 reached
    # Pendulum's -250 in 41 s, 16 in 50 s (bigger batches, fewer updates per step), 4 not in 100 s).
    envs_per_actor = {"pixels": 8, "box": 8}

    def build_network(self):
        normalizer = self.make_normalizer()
        if self.continuous:
            policy_trunk, value_trunk = (make_trunk(self.config.trunk, self.observation_shape,
                                                    self.config.hidden) for _ in range(2))
            return GaussianActorCritic(policy_trunk, value_trunk, self.n_actions,
                                       self.config.log_std_init, normalizer)
        return ActorCritic(self.normalized_trunk(normalizer), self.n_actions)

    def normalized_trunk(self, normalizer: Normalizer | None) -> nets.Module:
        """The config's trunk, reading normalised observations when `normalizer` has them."""
        trunk = make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
        return NormalizedTrunk(normalizer, trunk) if normalizer is not None else trunk

    def make_normalizer(self) -> Normalizer | None:
        """The running statistics the config asks for (by default: for Box actions, those of
        vector observations and of rewards), or None."""
        c, vector = self.config, len(self.observation_shape) == 1
        observations = c.normalize_obs if c.normalize_obs is not None else self.continuous and vector
        rewards = c.normalize_reward if c.normalize_reward is not None else self.continuous
        if observations and not vector:
            raise ValueError(f"normalize_obs needs vector observations, not shape "
                             f"{self.observation_shape}")
        if not (observations or rewards):
            return None
        return Normalizer(self.observation_shape[0] if observations else None, rewards)

    @functools.cached_property
    def normalizer(self) -> Normalizer | None:
        return find_normalizer(self.network)

    def moment_tracker(self, n_envs):
        n = self.normalizer
        if n is None:
            return None
        return Tracker(n_envs, self.config.gamma, observations=n.size is not None, returns=n.rewards)

    def policy(self, actor_index, rng):
        return self.play_policy(False, rng)

    def play_policy(self, greedy, rng):
        return (GaussianPolicy if self.continuous else SoftmaxPolicy)(self.network, rng, greedy)

    def loss(self, batch):
        T, E = batch.rewards.shape
        n = T * E
        # One forward pass over the rollout's states and the truncation states it bootstraps from.
        obs = np.concatenate([batch.obs.reshape(n, *self.observation_shape), batch.final_obs])
        policy, values = self.network(obs)
        v = backend.to_host(values.data).reshape(-1)  # the returns are computed on the host
        return self._loss(batch, policy, values, v[:n].reshape(T, E), v[n:])

    def _loss(self, batch, policy, values, rollout_values, final_values):
        """Returns bootstrapped from the values (`rollout_values` (T, E) and the values of the
        cut states), then the actor-critic loss. `policy` is the logits, or a Gaussian's
        (mean, log_std). Rewards are scaled, and observations were normalised in the forward
        pass, with the statistics published with the weights: an actor computing this loss
        reads the same ones as the learner (`Agent.step` merges new ones)."""
        rewards = batch.rewards if self.normalizer is None else self.normalizer.scale_rewards(batch.rewards)
        following = next_state_values(rollout_values, batch.final_index, final_values)
        returns, advantages = self.targets(batch, rewards, policy, rollout_values, following)
        c, returns = self.config, returns.reshape(-1)
        advantages = None if advantages is None else advantages.reshape(-1)
        if self.continuous:
            actions = batch.actions.reshape(len(returns), -1)
            return gaussian_actor_critic_loss(*policy, values, actions, returns, c.entropy_beta,
                                              c.value_coef, advantages)
        return actor_critic_loss(policy, values, batch.actions.reshape(-1), returns, c.entropy_beta,
                                 c.value_coef, advantages)

    def targets(self, batch, rewards, policy, rollout_values, following):
        """(value targets (T, E), policy-gradient advantages (T, E) or None for the targets
        less the values): n-step returns (the paper's) or, with `gae_lambda`, GAE's."""
        c = self.config
        if c.gae_lambda is None:
            return nstep_returns(rewards, batch.terminated, batch.truncated, following, c.gamma), None
        return lambda_returns(rewards, batch.terminated, batch.truncated, rollout_values, following,
                              c.gamma, c.gae_lambda), None

    def merge_moments(self, moments):
        if self.normalizer is not None:
            self.normalizer.merge(moments)
