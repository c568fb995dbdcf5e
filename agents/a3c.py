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

    From the paper: t_max 5, gamma 0.99, RMSProp with alpha 0.99, the learning rate annealed
    linearly to 0 over the run (on vector observations it is constant, as SB3's A2C's and PPO's
    here: annealed over a 300k-step run LunarLander-v3 ended at a median of -85 over 9 seeds,
    constant at -11 over 16, MountainCar-v0 at -130 against -118 over 3, CartPole-v1 at 500 on
    8 of 8 and Acrobot-v1 at -85 over 8 either way; one-hot observations keep the anneal: without
    it 2 of 10 FrozenLake-v1 seeds ended at 0.23 and 0.39, and Blackjack-v1 at -0.12 against
    -0.07 over 10); gradient-norm clipping at 40 and value_coef 0.5 in the loss
    -log pi(a|s) A - beta H(pi) + value_coef / 2 (R - V)^2, summed over the rollout's steps, are
    PFRL's A3C defaults (examples/atari/train_a3c.py). The paper's RMSProp has eps 0.1 inside the
    square root, which makes a step's size depend on the gradients' scale, so on the rewards'
    scale: with it (and lr 1e-2, the top of the paper's range) CartPole learned fastest, Acrobot
    (rewards of -1 to -500) failed on 2 of 6 seeds. eps 1e-5 (OpenAI Baselines' and SB3's A2C)
    steps by the gradients' sign and relative size whatever the scale; with it lr 2e-3 learned
    Acrobot-v1 on 6 of 6 seeds (last-100 -126 to -196 at 100k steps), MountainCar-v0 on 3 of 3 and
    reached CartPole's 475 on 6 of 6 by 71k-91k steps; 1e-3 failed Acrobot on 2 of 3 seeds and
    3e-3 on 5 of 6.
    Vector observations are normalised (running mean and variance, agents/normalize.py; RL Zoo
    normalises Acrobot's and MountainCar's for its A2C): MountainCar's velocity spans +-0.07 and
    without it no seed left -200. So are their rewards (divided by the running std of the
    discounted return, VecNormalize's default where the Zoo says `normalize: true`), which puts
    every env's value errors, and so the gradient norms that max_grad_norm clips, on one scale:
    without it Acrobot-v1's gradient norms ran to hundreds, its policy went deterministic before
    it swung up, and 2 of 8 seeds ended at -411 and -500 (median -164 at 100k steps; SB3 A2C's
    -102); with it 8 of 8 ended at -82 to -89, CartPole-v1 at 500 on 8 of 8 (as before) and
    MountainCar-v0 at -121 to -131 (was -131 to -145). SB3 A2C's own settings (lr 7e-4, clip 0.5,
    raw observations) in this agent made Acrobot -102 on 8 of 8 but CartPole 248. One-hot
    observations (toy text's states; PRESETS) are not normalised, nor their rewards: a rarely
    seen state's input would be scaled up to the clip of 10, and FrozenLake-v1's rare first
    successes by the tiny std of its returns (2 of 6 seeds ended at 0.10 and 0.18). No entropy
    bonus on vector observations (RL Zoo's classic-control A2C has none); the paper's 0.01 on
    images; 0.003 on one-hot observations, whose envs may have no time limit: without a bonus
    CliffWalking-v1's policy collapsed into a loop that never ended an episode on 2 of 3 seeds,
    and FrozenLake-v1 ended at 0.1-0.7. FrozenLake's rewards are 0 or 1, so 0.01 outweighed its
    small advantages and kept the policy from settling (0.59 over 10 seeds, SB3 A2C's 0.69 in the
    same run); 0.001 let 1 seed of 6 collapse (0.06); 0.003 ended at 0.70 (0.55-0.82 over 10
    seeds, SB3 A2C 0.69 in the same run), CliffWalking at the optimal -13 on 3 of 3.
    Box (continuous) actions get a Gaussian policy (agents/gaussian.py, with PRESETS of their own),
    and with them normalisation of rewards too (images: Atari's rewards come clipped);
    `normalize_obs` / `normalize_reward` true or false choose for any env.
    """

    lr: float = setting(2e-3, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    t_max: int = setting(5, ">= 1")
    entropy_beta: float = setting(0.0, ">= 0")
    value_coef: float = setting(0.5, ">= 0")
    rmsprop_alpha: float = setting(0.99, "in [0, 1)")
    rmsprop_eps: float = setting(1e-5, "> 0")
    max_grad_norm: float = setting(40.0, "> 0")
    lr_anneal: bool = True
    trunk: str = setting("auto", TRUNK_RULE)  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = setting((64, 64), ">= 1")
    gae_lambda: float | None = setting(None, "in [0, 1]")  # None: n-step returns (the paper); else GAE(lambda)'s
    log_std_init: float = 0.0  # Gaussian policies: the log std every action dimension starts at
    normalize_obs: bool | None = None  # None: for Box actions and vector observations
    normalize_reward: bool | None = None  # None: for Box actions


# Settings that differ from A3CConfig's by env tag (agents/base.py: Agent.defaults), under the user's.
# Atari (and other images): lr 7e-4, OpenAI Baselines' A2C on Atari (PFRL's A3C example has the
# same), and the paper's entropy bonus of 0.01.
# Box actions: GAE(0.9) returns over rollouts of 8 steps (RL Zoo's A2C for Pendulum and MuJoCo has
# GAE 0.9, 8 steps, eps 1e-5, no bonus; our loss is a sum over the batch, not a mean, and lr 2e-3
# learned Pendulum fastest of 1e-3 to 1e-2 here); the log std starts at -0.5 (std 0.6: 1.0 took
# longer on Pendulum, whose actions span [-2, 2]).
# MuJoCo: lr 7e-4 (SB3's A2C default, RL Zoo's A2C on MuJoCo): at 2e-3 HalfCheetah-v5 reached a
# last-10 return of 2,400 in 4 minutes here, then fell to -300 and stayed under 400 through 16
# minutes (benchmarks/rl_continuous.py --curve), its std shrinking and its gradients at the clip.
# Pendulum-v1: gamma 0.9, RL Zoo's tuned value (its reward horizon is short).
PRESETS = {
    "vector": {"normalize_obs": True, "normalize_reward": True, "lr_anneal": False},
    "one-hot": {"normalize_obs": False, "normalize_reward": False, "entropy_beta": 0.003, "lr_anneal": True},
    "pixels": {"lr": 7e-4, "entropy_beta": 0.01},
    "box": {"t_max": 8, "gae_lambda": 0.9, "log_std_init": -0.5},
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
        """Images: one conv trunk for policy and value (the paper's). Vectors: separate MLPs
        (stable-baselines3's default): a shared MLP let the value's large early errors reshape the
        policy's features, and on Acrobot the policy's entropy fell from log 3 to 0.04 before any
        episode ended, all 196 episodes at -500 (2 of 2 seeds; separate MLPs: -87 and -500, with
        normalised observations -87 and -85 by 100k steps)."""
        normalizer = self.make_normalizer()
        if len(self.observation_shape) != 1 and not self.continuous:
            return ActorCritic(self.normalized_trunk(normalizer), self.n_actions)
        policy_trunk, value_trunk = (make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
                                     for _ in range(2))
        if self.continuous:
            return GaussianActorCritic(policy_trunk, value_trunk, self.n_actions,
                                       self.config.log_std_init, normalizer)
        return ActorCritic(policy_trunk, self.n_actions, value_trunk, normalizer)

    def normalized_trunk(self, normalizer: Normalizer | None) -> nets.Module:
        """The config's trunk, reading normalised observations when `normalizer` has them."""
        trunk = make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
        return NormalizedTrunk(normalizer, trunk) if normalizer is not None else trunk

    def make_normalizer(self) -> Normalizer | None:
        """The running statistics the config asks for (by default, for Box actions: those of
        vector observations and of rewards; A3C's PRESETS add vector observations'), or None."""
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

    # A batch's loss is one forward pass over fixed-length rollouts: on a GPU, `gradients` replays
    # it as a CUDA graph. False where the loss reads the host midway or each batch has a shape of
    # its own (whole episodes).
    graphs_its_loss = True

    def gradients(self, batch):
        """The batch's gradient and the loss's statistics (`Agent.gradients`). On a GPU, where
        `_batch_gradients` captures, the loss and backward pass replay one CUDA graph for each
        batch shape (a batch joins the rollouts that arrived, one per actor at most); a graph
        cannot wait for the host to compute the returns, so they come first, from a forward
        pass of their own. Elsewhere one forward pass gives both (`loss`)."""
        if not self.graphs_its_loss or self._batch_gradients.eager_reason is not None:
            return super().gradients(batch)
        T, E = batch.rewards.shape
        n = T * E
        states = backend.to_device(self._states(batch), self.device)  # copied once, used twice
        with nets.no_grad():
            policy, values = self.network(states)
        v = backend.to_host(values.data).reshape(-1)
        returns, advantages = self._targets(batch, policy, v[:n].reshape(T, E), v[n:])
        given = () if advantages is None else (advantages,)
        _, *stats = self._batch_gradients(states[:n], self._actions(batch), returns, *given)
        return dict(zip(self._stat_names, map(float, stats)))

    @functools.cached_property
    def _batch_gradients(self) -> nets.CapturedGradients:
        # a batch joins at most one rollout from each actor: a shape for each count up to 16
        return nets.CapturedGradients(self.network, self._batch_loss, max_graphs=16)

    def _batch_loss(self, obs, actions, returns, advantages=None):
        """The actor-critic loss of a batch's steps (arrays on the network's device) with their
        returns given, and its statistics: no host reads, so that on a GPU it is one CUDA graph."""
        policy, values = self.network(obs)
        loss, stats = self._actor_critic_loss(policy, values, actions, returns, advantages)
        self._stat_names = tuple(stats)  # read when a replay returns the values alone
        xp = backend.get_array_module(values.data)
        return (loss, *(xp.asarray(value) for value in stats.values()))

    def loss(self, batch):
        T, E = batch.rewards.shape
        n = T * E
        policy, values = self.network(self._states(batch))
        v = backend.to_host(values.data).reshape(-1)  # the returns are computed on the host
        return self._loss(batch, policy, values, v[:n].reshape(T, E), v[n:])

    def _states(self, batch) -> np.ndarray:
        """The rollout's states and the truncation states it bootstraps from, for one forward pass."""
        return np.concatenate([batch.obs.reshape(batch.steps, *self.observation_shape), batch.final_obs])

    def _actions(self, batch) -> np.ndarray:
        return batch.actions.reshape(batch.steps, -1) if self.continuous else batch.actions.reshape(-1)

    def _loss(self, batch, policy, values, rollout_values, final_values):
        """Returns bootstrapped from the values (`rollout_values` (T, E) and the values of the
        cut states), then the actor-critic loss. `policy` is the logits, or a Gaussian's
        (mean, log_std)."""
        returns, advantages = self._targets(batch, policy, rollout_values, final_values)
        return self._actor_critic_loss(policy, values, self._actions(batch), returns, advantages)

    def _targets(self, batch, policy, rollout_values, final_values):
        """(returns, advantages or None), one per step, from the values of the batch's states
        (`rollout_values` (T, E)) and of its cut states. Rewards are scaled, and observations
        were normalised in the forward pass, with the statistics published with the weights: an
        actor computing this loss reads the same ones as the learner (`Agent.step` merges new
        ones)."""
        rewards = batch.rewards if self.normalizer is None else self.normalizer.scale_rewards(batch.rewards)
        following = next_state_values(rollout_values, batch.final_index, final_values)
        returns, advantages = self.targets(batch, rewards, policy, rollout_values, following)
        return returns.reshape(-1), None if advantages is None else advantages.reshape(-1)

    def _actor_critic_loss(self, policy, values, actions, returns, advantages):
        c = self.config
        if self.continuous:
            return gaussian_actor_critic_loss(*policy, values, actions, returns, c.entropy_beta,
                                              c.value_coef, advantages)
        return actor_critic_loss(policy, values, actions, returns, c.entropy_beta, c.value_coef, advantages)

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
