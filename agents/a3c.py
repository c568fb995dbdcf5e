"""A3C: asynchronous advantage actor-critic (Mnih et al. 2016, "Asynchronous Methods for Deep
Reinforcement Learning", Algorithm S3)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nets
from nets import backend

from .base import Agent, Policy, sample_categorical
from .losses import action_log_probs, actor_critic_loss
from .networks import ActorCritic, make_trunk
from .returns import next_state_values, nstep_returns


@dataclass
class A3CConfig:
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
    The paper's entropy beta 0.01 is Atari's (agents/pixels.py); classic control has none, as in
    RL Zoo's tuned CartPole A2C (ent_coef 0.0): with 0.01 a CartPole seed hovered at 415-465
    through 300k steps, without it 6 of 6 seeds passed a last-100 return of 475 by 101k.
    The trunk and its sizes suit vector observations (CartPole); Atari uses a conv trunk.
    """

    lr: float = 1e-2
    gamma: float = 0.99
    t_max: int = 5
    entropy_beta: float = 0.0
    value_coef: float = 0.5
    rmsprop_alpha: float = 0.99
    rmsprop_eps: float = 0.1
    max_grad_norm: float = 40.0
    lr_anneal: bool = True
    trunk: str = "auto"  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = (64, 64)


class SoftmaxPolicy(Policy):
    """Samples from the policy head's softmax."""

    def __init__(self, network: ActorCritic, rng: np.random.Generator):
        self.network, self.rng = network, rng

    def act(self, obs, step):
        with nets.no_grad():
            logits = self.network.logits(obs).data
        actions = sample_categorical(logits, self.rng)
        return actions, action_log_probs(logits, actions)


class A3C(Agent):
    name = "a3c"
    Config = A3CConfig

    def build_network(self):
        trunk = make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
        return ActorCritic(trunk, self.n_actions)

    def policy(self, actor_index, rng):
        return SoftmaxPolicy(self.network, rng)

    def loss(self, batch):
        T, E = batch.rewards.shape
        n = T * E
        # One forward pass over the rollout's states and the truncation states it bootstraps from.
        obs = np.concatenate([batch.obs.reshape(n, *self.observation_shape), batch.final_obs])
        logits, values = self.network(obs)
        v = backend.to_host(values.data).reshape(-1)  # the returns are computed on the host
        return self._loss(batch, logits, values, v[:n].reshape(T, E), v[n:])

    def _loss(self, batch, logits, values, rollout_values, final_values):
        """n-step returns bootstrapped from the values (`rollout_values` (T, E) and the values of
        the cut states), then the actor-critic loss."""
        following = next_state_values(rollout_values, batch.final_index, final_values)
        returns = nstep_returns(batch.rewards, batch.terminated, batch.truncated, following,
                                self.config.gamma)
        return actor_critic_loss(logits, values, batch.actions.reshape(-1), returns.reshape(-1),
                                 self.config.entropy_beta, self.config.value_coef)
