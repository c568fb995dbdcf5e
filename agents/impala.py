"""IMPALA's actor-critic: A3C's network and loss with V-trace targets (Espeholt et al. 2018,
"IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures").

A central learner learns from rollouts acted with weights one or more publishes old. A3C's
n-step returns treat them as on-policy; V-trace corrects for the lag with importance weights
pi/mu truncated at rho_bar and c_bar, from the behaviour log-probabilities every rollout carries.
With actors that compute their own gradients (`--gradients-on actors`) every rollout is
on-policy and V-trace is A3C's n-step return.
"""
from __future__ import annotations

from dataclasses import dataclass

from .a3c import A3C, A3CConfig
from .losses import action_log_probs, actor_critic_loss
from .returns import next_state_values, vtrace


@dataclass
class ImpalaConfig(A3CConfig):
    """A3C's hyperparameters plus V-trace's truncation levels: rho_bar (the fixed point's
    policy) and c_bar (how far back a correction reaches), both 1 as in the paper's
    experiments (section 4.2), which learns the value of pi itself."""

    rho_bar: float = 1.0
    c_bar: float = 1.0


class Impala(A3C):
    name = "impala"
    Config = ImpalaConfig

    def _loss(self, batch, logits, values, rollout_values, final_values):
        """V-trace targets and advantages from the behaviour log-probabilities, then the
        actor-critic loss."""
        T, E = batch.rewards.shape
        actions = batch.actions.reshape(-1)
        log_rhos = action_log_probs(logits.data[:T * E], actions).reshape(T, E) - batch.log_probs
        following = next_state_values(rollout_values, batch.final_index, final_values)
        targets, advantages = vtrace(batch.rewards, batch.terminated, batch.truncated, rollout_values,
                                     following, log_rhos, self.config.gamma, self.config.rho_bar,
                                     self.config.c_bar)
        return actor_critic_loss(logits, values, actions, targets.reshape(-1), self.config.entropy_beta,
                                 self.config.value_coef, advantages.reshape(-1))
