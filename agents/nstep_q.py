"""Asynchronous n-step and one-step Q-learning (Mnih et al. 2016, "Asynchronous Methods for Deep
Reinforcement Learning", Algorithms S1 and S2)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import nets
from nets import backend
from nets.settings import Settings, setting

from .base import EVAL_EPSILON, Agent, Policy, epsilon_greedy
from .losses import q_loss
from .networks import TRUNK_RULE, QNetwork, make_trunk
from .returns import next_state_values, nstep_returns

# The paper's per-thread final exploration rates and how often each is drawn.
FINAL_EPSILONS = (0.1, 0.01, 0.5)
FINAL_EPSILON_PROBS = (0.4, 0.3, 0.3)


@dataclass
class NStepQConfig(Settings):
    """Async n-step Q-learning hyperparameters.

    From the paper: rollouts of t_max 5 steps whose every state takes the longest available
    return, y = sum_k gamma^k r_k + gamma^m max_a Q_target(s_m, a) (n_step None; 1 gives
    one-step Q), gamma 0.99, shared RMSProp (alpha 0.99, eps 0.1 inside the root), learning rate
    annealed to 0, a target network refreshed periodically (every 40k frames on Atari) and each
    actor's epsilon annealed from 1 to a final value drawn from {0.1, 0.01, 0.5} with
    probabilities {0.4, 0.3, 0.3} (over 4M frames on Atari). The squared error is summed over
    steps; `huber_delta` clips it DQN-style when set.

    Classic control (Atari's are PRESETS below): lr 2.5e-3 (in LogUniform(1e-4, 1e-2)),
    a target refresh every 40 updates (about 1,000 env steps; CleanRL's CartPole DQN refreshes
    every 500), hidden (128, 128) (about CleanRL's DQN width, 120 and 84), the Huber loss
    (delta 1, DQN's error clipping) and every actor's final epsilon 0.01 (one of the paper's
    three) reached a last-100 training return of 475 within 300k CartPole-v1 steps in 12 of 13
    runs over seeds 0-5 (2 actors x 4 envs, at 135k-281k steps; the miss peaked at 419, thrown
    back by brief one-action collapses). With the squared error, a failure the network
    was sure it would avoid (target ~1 against Q ~100) spiked the gradient and sent a policy
    near 450 back below 200, and seeds hovered at 380-450 (4 of 6 reached 475 with epsilon
    0.05, 2 of 3 with 0.01). Also tried with the Huber loss: a refresh every 20 updates, t_max
    10, delta 10 or lr 1.25e-3 each reached 475 on 2 of 3 seeds, 8 envs per actor on 1 of 3,
    gamma 0.95 on none; with the squared error, a refresh every 100 updates on 1 of 3, hidden
    (64, 64) on 4 of 6, lr 1e-3 on none. With 2 actors the paper's draw of final epsilons can
    give both 0.5, where even a controller that balances perfectly averages about 160.
    Epsilon anneals over the first `epsilon_anneal_steps` env steps of the run.
    """

    lr: float = setting(2.5e-3, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    t_max: int = setting(5, ">= 1")
    n_step: int | None = setting(None, ">= 1")
    target_update_interval: int = setting(40, ">= 1")  # updates
    epsilon_anneal_steps: int = setting(20_000, ">= 0")
    epsilon_final: float | None = setting(0.01, "in [0, 1]")  # every actor's; None: each draws
                                                              # from the paper's mix
    huber_delta: float | None = setting(1.0, "> 0")
    rmsprop_alpha: float = setting(0.99, "in [0, 1)")
    rmsprop_eps: float = setting(0.1, "> 0")
    max_grad_norm: float = setting(40.0, "> 0")
    lr_anneal: bool = True
    trunk: str = setting("auto", TRUNK_RULE)  # conv net for images, MLP of `hidden` for vectors
    hidden: tuple[int, ...] = setting((128, 128), ">= 1")


@dataclass
class OneStepQConfig(NStepQConfig):
    """Async one-step Q-learning: the n-step agent with one-step targets
    y = r + gamma max_a Q_target(s', a); gradients are still accumulated over t_max steps.
    The squared error, as in the paper: on CartPole-v1 it reached a last-100 training return of
    195 at 57k-82k steps on 3 of 3 seeds, the Huber loss only at 216k-238k."""

    n_step: int | None = setting(1, ">= 1")
    huber_delta: float | None = setting(None, "> 0")


class EpsilonGreedy(Policy):
    """Greedy in Q with probability 1 - epsilon; epsilon anneals linearly from 1 to this actor's
    final value (`epsilon_final`, or drawn from the paper's mix when None) over the run's first
    `anneal_steps` env steps."""

    def __init__(self, network: QNetwork, rng: np.random.Generator, anneal_steps: int,
                 epsilon_final: float | None = None):
        self.network, self.rng, self.anneal_steps = network, rng, anneal_steps
        if epsilon_final is None:
            epsilon_final = rng.choice(FINAL_EPSILONS, p=FINAL_EPSILON_PROBS)
        self.epsilon_final = float(epsilon_final)

    def epsilon(self, step: int) -> float:
        fraction = min(1.0, step / self.anneal_steps) if self.anneal_steps > 0 else 1.0
        return 1.0 + (self.epsilon_final - 1.0) * fraction

    def act(self, obs, step):
        with nets.no_grad():
            q = self.network(obs).data
        return epsilon_greedy(q, self.epsilon(step), self.rng)

    def scalars(self, step):
        return {"epsilon": self.epsilon(step)}


class QModel(nets.Module):
    """What a checkpoint holds: the online network and its target (never flattened together)."""

    def __init__(self, online: QNetwork, target: QNetwork):
        super().__init__()
        self.online, self.target = online, target


# Atari: RMSProp as A3C's there (agents/a3c.py) and the paper's Q schedules: a target refresh
# every 40k frames (10k env steps = 250 updates of 40 steps: 2 actors x 4 envs x t_max 5) and
# epsilon annealed over 4M frames (1M env steps) to each actor's draw from the paper's final
# values, with the paper's squared error (clipped rewards keep its errors small).
PRESETS = {"pixels": {"lr": 7e-4, "rmsprop_eps": 1e-5, "target_update_interval": 250,
                      "epsilon_anneal_steps": 1_000_000, "epsilon_final": None, "huber_delta": None}}


class NStepQ(Agent):
    name = "nstep-q"
    summary = "asynchronous n-step Q-learning, Mnih et al. 2016"
    Config = NStepQConfig
    # the central learner: its CartPole defaults reached 475 on 5 of 5 seeds with it against 4 of
    # 5 with gradients on the actors, whose runs of its CLI-defaults test fell short twice in suites
    gradients_on = ("learner", "actors")
    presets = PRESETS
    has_target = True

    def __init__(self, observation_space, action_space, config: NStepQConfig, learner: bool = True,
                 device: str = "cpu"):
        super().__init__(observation_space, action_space, config, learner, device)
        self.sync_target()  # in actors too: those that compute gradients need it
        self.model = QModel(self.network, self.target)

    def build_network(self):
        trunk = make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
        return QNetwork(trunk, self.n_actions)

    def sync_target(self) -> None:
        """The target becomes a copy of the online weights, in a new vector: no vector changes
        under an actor reading it, and the transport sees a new target to publish."""
        self.target.flat().rebind(data=self.network.flat().data.copy())

    def policy(self, actor_index, rng):
        return EpsilonGreedy(self.network, rng, self.config.epsilon_anneal_steps, self.config.epsilon_final)

    def play_policy(self, greedy, rng):
        return EpsilonGreedy(self.network, rng, 0, 0.0 if greedy else EVAL_EPSILON)

    def loss(self, batch):
        T, E = batch.rewards.shape
        n = T * E
        obs = batch.obs.reshape(n, *self.observation_shape)
        q = self.network(obs)
        with nets.no_grad():
            if self.config.n_step is None:  # only the cut points bootstrap
                bootstrap = backend.to_host(self.target(batch.final_obs).data.max(axis=1))
                following = next_state_values(np.zeros((T, E), np.float32), batch.final_index, bootstrap)
            else:
                best = backend.to_host(self.target(np.concatenate([obs, batch.final_obs])).data.max(axis=1))
                following = next_state_values(best[:n].reshape(T, E), batch.final_index, best[n:])
        targets = nstep_returns(batch.rewards, batch.terminated, batch.truncated, following,
                                self.config.gamma, self.config.n_step)
        return q_loss(q, batch.actions.reshape(-1), targets.reshape(-1), self.config.huber_delta)

    def after_step(self):
        if self.optimizer.steps % self.config.target_update_interval == 0:
            self.sync_target()


class OneStepQ(NStepQ):
    name = "onestep-q"
    summary = "asynchronous one-step Q-learning, Mnih et al. 2016"
    Config = OneStepQConfig
    gradients_on = ("actors", "learner")
