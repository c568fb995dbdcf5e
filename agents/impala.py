"""IMPALA's actor-critic: A3C's network and loss with V-trace targets (Espeholt et al. 2018,
"IMPALA: Scalable Distributed Deep-RL with Importance Weighted Actor-Learner Architectures").

A central learner learns from rollouts acted with weights one or more publishes old. A3C's
n-step returns treat them as on-policy; V-trace corrects for the lag with importance weights
pi/mu truncated at rho_bar and c_bar, from the behaviour log-probabilities every rollout carries
(a Gaussian policy's for Box actions, summed over the action's dimensions). With actors that
compute their own gradients (`--gradients-on actors`) every rollout is on-policy and V-trace's
value targets are A3C's returns (n-step, or GAE's with `gae_lambda`).
"""
from __future__ import annotations

from dataclasses import dataclass

from nets import backend
from nets.settings import setting

from .a3c import A3C, A3CConfig
from .losses import action_log_probs, gaussian_log_prob
from .returns import vtrace


@dataclass
class ImpalaConfig(A3CConfig):
    """A3C's hyperparameters plus V-trace's truncation levels: rho_bar (the fixed point's
    policy) and c_bar (how far back a correction reaches), both 1 as in the paper's
    experiments (section 4.2), which learns the value of pi itself. `gae_lambda`, where set
    (Box actions' default), shortens V-trace's traces by that factor (`vtrace`'s lam)."""

    rho_bar: float = setting(1.0, "> 0")
    c_bar: float = setting(1.0, "> 0")


class Impala(A3C):
    name = "impala"
    summary = "A3C with V-trace targets, Espeholt et al. 2018, for actors acting with older weights"
    Config = ImpalaConfig
    gradients_on = ("learner", "actors")  # a central learner whose actors lag: what V-trace corrects

    def targets(self, batch, rewards, policy, rollout_values, following):
        """V-trace targets and advantages from the behaviour log-probabilities."""
        T, E = rewards.shape
        log_rhos = self.log_probs(policy, batch.actions).reshape(T, E) - batch.log_probs
        c = self.config
        return vtrace(rewards, batch.terminated, batch.truncated, rollout_values, following, log_rhos,
                      c.gamma, c.rho_bar, c.c_bar, 1.0 if c.gae_lambda is None else c.gae_lambda)

    def log_probs(self, policy, actions):
        """log pi(a|s) on the host of a batch's actions (T, E) or (T, E, A) under the learner's
        `policy` (its first T x E rows): a softmax's logits or a Gaussian's (mean, log_std)."""
        n = actions.shape[0] * actions.shape[1]
        if self.continuous:
            mean, log_std = (backend.to_host(t.data) for t in policy)
            return gaussian_log_prob(mean[:n], log_std, actions.reshape(n, -1))
        return action_log_probs(policy.data[:n], actions.reshape(-1))
