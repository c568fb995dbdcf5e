"""DQN (Mnih et al. 2015, "Human-level control through deep reinforcement learning") learning from
a replay memory in the learner (agents/replay.py), with the double-DQN target (van Hasselt et al.
2016), n-step returns, prioritized replay (Schaul et al. 2016) and the Ape-X arrangement (Horgan
et al. 2018, "Distributed Prioritized Experience Replay"): many actors, each exploring with its
own fixed epsilon, send their steps with initial priorities computed from their own Q-values.

The actors only act and send rollouts (so gradients are always computed in the learner); the
learner stores every step (`remember`), then for each batch of new steps takes gradient_steps /
train_frequency gradient steps per env step, each on a sampled minibatch, and publishes the
weights.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

import nets
from nets import backend, optim
from nets.settings import Settings, setting

from .base import EVAL_EPSILON, Agent, Policy, epsilon_greedy
from .losses import QLoss
from .networks import TRUNK_RULE, QNetwork, make_trunk
from .nstep_q import EpsilonGreedy, QModel
from .replay import ReplayMemory, ReplayRatio, store, waiting_note
from .returns import next_state_values, nstep_returns

@dataclass
class DQNConfig(Settings):
    """DQN hyperparameters. Defaults for vector observations are RL Baselines3 Zoo's tuned DQN
    for CartPole-v1 (hyperparams/dqn.yml: batch 64, buffer 100k, learning starts 1000, train_freq
    256 with 128 gradient steps, epsilon 1 -> 0.04 over the first 16% of 50k steps, 256-256 ReLU
    MLP, Adam; stable-baselines3's Huber loss and gradient norm clipped at 10), except for three:
    lr 5e-4 (the Zoo's 2.3e-3), double DQN and 3-step returns (van Hasselt et al. 2016; Sutton
    1988, as Rainbow combines them). With the Zoo's own settings the last-100 mean of the training
    episodes reached 235 and 278 after the Zoo's 50k steps in stable-baselines3 itself (seeds 1, 2)
    and 133 to 333 here, then collapsed when run on: no run reached 475 in 150k steps (2 actor
    processes: 4 runs; one process: 2). Double DQN and 3-step returns with lr 1e-3 reached 475 in
    2 of 5 runs, then fell back; with lr 5e-4 all 6 runs did (2 with it constant, 4 annealed
    to 0 over 150k or 300k steps), in 69k to 127k steps, and those run on stayed at 500. SB3 refreshes the target every 10 env steps, but only between its bursts
    of 128 gradient steps, so the target here is refreshed every 128 gradient steps.

    On Atari (PRESETS below) they are CleanRL's dqn_atari.py, itself the Nature paper's with
    Adam: lr 1e-4, batch 32, 1M steps of memory, learning starts 80k, a gradient step every 4 env
    steps, the target refreshed every 1000 env steps (250 gradient steps), epsilon 1 -> 0.01 over
    1M steps, one-step targets without double DQN, the Nature conv net; with the paper's Huber
    loss (CleanRL uses the squared error).

    Options: `n_step` returns; `double` (the online net picks the bootstrap action, the target
    net values it); `tau` < 1 for Polyak averaging of the target at each refresh; `optimizer`
    "rmsprop" is the Nature paper's centered RMSProp (alpha 0.95, eps 0.01 inside the root, lr
    2.5e-4 there). `prioritized`: proportional prioritized replay, priority exponent
    `priority_alpha` (annealed linearly to `priority_alpha_final` over the run when set),
    importance-sampling exponent `priority_beta` annealed to 1 (the paper's 0.6 and 0.4).
    `apex`: Ape-X: actor env i of N explores with the fixed epsilon
    apex_epsilon^(1 + apex_exponent i / (N - 1)) (0.4 and 7 in the paper, which had one env per
    actor: here each env counts as one of the paper's actors, N = `apex_actors`, which
    is actors x envs per actor unless set: `actor_config`), actors send each step's initial priority
    |n-step TD error| from their own Q-values, and replay is prioritized. `t_max`: steps per
    rollout an actor sends (it sets how often weights reach the actors, not the learning).
    """

    lr: float = setting(5e-4, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    batch_size: int = setting(64, ">= 1")
    buffer_size: int = setting(100_000, ">= 1")
    learning_starts: int = setting(1_000, ">= 0")
    train_frequency: int = setting(256, ">= 1")
    gradient_steps: int = setting(128, ">= 1")
    target_update_interval: int = setting(128, ">= 1")  # gradient steps
    tau: float = setting(1.0, "in (0, 1]")
    epsilon_start: float = setting(1.0, "in [0, 1]")
    epsilon_final: float = setting(0.04, "in [0, 1]")
    epsilon_anneal_steps: int = setting(8_000, ">= 0")
    n_step: int = setting(3, ">= 1")
    double: bool = True
    huber_delta: float | None = setting(1.0, "> 0")
    optimizer: str = setting("adam", "one of adam, rmsprop")
    adam_eps: float = setting(1e-8, "> 0")
    rmsprop_alpha: float = setting(0.95, "in [0, 1)")
    rmsprop_eps: float = setting(0.01, "> 0")
    max_grad_norm: float = setting(10.0, "> 0")
    lr_anneal: bool = False
    prioritized: bool = False
    priority_alpha: float = setting(0.6, ">= 0")
    priority_alpha_final: float | None = setting(None, ">= 0")
    priority_beta: float = setting(0.4, "in [0, 1]")
    priority_eps: float = setting(1e-6, "> 0")
    apex: bool = False
    apex_epsilon: float = setting(0.4, "in (0, 1)")
    apex_exponent: float = setting(7.0, ">= 0")
    apex_actors: int = setting(0, ">= 0")
    t_max: int = setting(32, ">= 1")
    trunk: str = setting("relu-mlp", TRUNK_RULE)
    hidden: tuple[int, ...] = setting((256, 256), ">= 1")


def dqn_targets(returns, discounts, target_next, online_next=None):
    """y = G + gamma^m Q_target(s', a'): a' = argmax_a Q_target(s', a), or, given the online
    net's Q in s' (double DQN), argmax_a Q_online(s', a). `discounts` is 0 after a terminal step.
    Arrays on either device (all on one)."""
    xp = backend.get_array_module(target_next)
    choice = (target_next if online_next is None else online_next).argmax(axis=1)
    return (returns + discounts * target_next[xp.arange(len(choice)), choice]).astype(np.float32)


def apex_epsilons(first: int, count: int, total: int, base: float = 0.4, exponent: float = 7.0) -> np.ndarray:
    """Ape-X's fixed epsilons of envs first .. first + count - 1 of `total`."""
    i = np.arange(first, first + count, dtype=np.float64)
    return (base ** (1 + exponent * i / max(total - 1, 1))).astype(np.float32)


class DQNPolicy(Policy):
    """Epsilon-greedy in Q: epsilon annealed linearly over the run's first env steps, or Ape-X's
    fixed epsilon per env. In Ape-X mode it keeps the Q-values it acted on and gives each
    rollout its steps' initial priorities."""

    def __init__(self, network: QNetwork, rng: np.random.Generator, config: DQNConfig, actor_index: int):
        self.network, self.rng, self.config, self.actor_index = network, rng, config, actor_index
        self.q_rows: list[np.ndarray] = []
        self.fixed: np.ndarray | None = None

    def epsilons(self, step: int, n_envs: int) -> np.ndarray:
        c = self.config
        if c.apex:
            if self.fixed is None or len(self.fixed) != n_envs:
                total = c.apex_actors or n_envs * (self.actor_index + 1)
                self.fixed = apex_epsilons(self.actor_index * n_envs, n_envs, total, c.apex_epsilon,
                                           c.apex_exponent)
            return self.fixed
        fraction = min(1.0, step / c.epsilon_anneal_steps) if c.epsilon_anneal_steps > 0 else 1.0
        epsilon = c.epsilon_start + (c.epsilon_final - c.epsilon_start) * fraction
        return np.full(n_envs, epsilon, np.float32)

    def act(self, obs, step):
        with nets.no_grad():
            q = self.network(obs).data
        if self.config.apex:
            self.q_rows.append(q)
        return epsilon_greedy(q, self.epsilons(step, len(q)), self.rng)

    def scalars(self, step):
        epsilons = self.epsilons(step, 1 if self.fixed is None else len(self.fixed))
        return {"epsilon": float(epsilons.mean())}

    def rollout_done(self, rollout) -> None:
        """Ape-X: |G - Q(s, a)| per step, G the n-step return bootstrapped with max_a Q of this
        actor's network (the rollout's last steps take the longest return it holds)."""
        if not self.config.apex:
            return
        q, self.q_rows = np.stack(self.q_rows), []
        chosen = np.take_along_axis(q, rollout.actions[..., None], axis=2)[..., 0]
        final = np.zeros(0, np.float32)
        if len(rollout.final_obs):
            with nets.no_grad():
                final = self.network(rollout.final_obs).data.max(axis=1)
        following = next_state_values(q.max(axis=2), rollout.final_index, final)
        returns = nstep_returns(rollout.rewards, rollout.terminated, rollout.truncated, following,
                                self.config.gamma, self.config.n_step)
        rollout.priorities = np.abs(returns - chosen).astype(np.float32)


# CleanRL's dqn_atari.py (see DQNConfig): 1000 env steps between target refreshes at one gradient
# step per 4 env steps is 250 gradient steps.
PRESETS = {"pixels": {"lr": 1e-4, "batch_size": 32, "buffer_size": 1_000_000, "learning_starts": 80_000,
                      "train_frequency": 4, "gradient_steps": 1, "target_update_interval": 250,
                      "epsilon_final": 0.01, "epsilon_anneal_steps": 1_000_000, "n_step": 1,
                      "double": False, "trunk": "nature"}}


class DQN(Agent):
    name = "dqn"
    summary = "DQN from a replay memory in the learner: double, n-step, prioritized, Ape-X with --set apex=true"
    Config = DQNConfig
    gradients_on = ("learner",)  # it learns from its replay memory, which only the learner holds
    presets = PRESETS
    has_target = True  # the learner's: actors only act, and Ape-X priorities use their online net

    def __init__(self, observation_space, action_space, config: DQNConfig, learner: bool = True,
                 device: str = "cpu"):
        super().__init__(observation_space, action_space, config, learner, device)
        self.target.flat().data[...] = self.network.flat().data  # a refresh with tau < 1 would
                                                                 # only move it partway
        self.model = QModel(self.network, self.target)
        self.observation_space = observation_space
        self._memory = None
        self.replay_ratio = ReplayRatio(config.gradient_steps, config.train_frequency)
        self._sample_gradients = nets.CapturedGradients(self.network, self._sample_loss)

    def memory_settings(self) -> dict:
        """ReplayMemory's arguments for this agent (its rng aside)."""
        c, space = self.config, self.observation_space
        images = len(self.observation_shape) == 3 and space.dtype == np.uint8
        return dict(capacity=c.buffer_size, observation_shape=self.observation_shape, dtype=space.dtype,
                    stack=self.observation_shape[0] if images else 1, n_step=c.n_step, gamma=c.gamma,
                    prioritized=c.prioritized or c.apex, alpha=c.priority_alpha, priority_eps=c.priority_eps)

    @property
    def memory(self) -> ReplayMemory | None:
        """The learner's replay memory, made when first used (evaluation and play never do)."""
        if self._memory is None and self.optimizer is not None:
            generator = np.random.default_rng(nets.rng.generator().integers(2**63))
            self._memory = ReplayMemory(**self.memory_settings(), rng=generator)
        return self._memory

    def build_network(self):
        trunk = make_trunk(self.config.trunk, self.observation_shape, self.config.hidden)
        return QNetwork(trunk, self.n_actions)

    def make_optimizer(self):
        c = self.config
        if c.optimizer == "rmsprop":  # the Nature paper's: centered, min squared gradient 0.01
            return optim.RMSProp(self.network, lr=c.lr, alpha=c.rmsprop_alpha, eps=c.rmsprop_eps,
                                 centered=True, eps_inside_sqrt=True)
        return optim.Adam(self.network, lr=c.lr, eps=c.adam_eps)

    @classmethod
    def actor_config(cls, config, actor_envs):
        """Ape-X's epsilons span every env of every actor, unless `apex_actors` says otherwise."""
        return dataclasses.replace(config, apex_actors=actor_envs) if config.apex_actors == 0 else config

    def after_step(self) -> None:
        if self.optimizer.steps % self.config.target_update_interval == 0:
            self.sync_target()

    def sync_target(self) -> None:
        """The target becomes the online weights, or moves `tau` of the way to them, in place:
        only the learner's loss reads DQN's target (actors only act), and on the GPU that loss
        is a CUDA graph that reads the target where it was captured (nets.CapturedGradients).
        The online weights are read after the step that called this, wherever it put them
        (`Optimizer.step(into)`)."""
        online, target = self.network.flat().data, self.target.flat().data
        tau = self.config.tau
        if tau >= 1:
            target[...] = online
        else:
            target *= np.float32(1 - tau)
            target += np.float32(tau) * online

    def policy(self, actor_index, rng):
        return DQNPolicy(self.network, rng, self.config, actor_index)

    def play_policy(self, greedy, rng):
        return EpsilonGreedy(self.network, rng, 0, 0.0 if greedy else EVAL_EPSILON)

    def remember(self, rollouts) -> None:
        store(self.memory, rollouts)

    def after_load(self) -> str:
        return waiting_note(self.config.learning_starts, self.config.batch_size)

    def update(self, batch, progress, into=None):
        """`batch` only counts the new env steps (they are already in the memory); the first
        gradient step writes the weights into `into` (`Agent.step`), the rest step them there."""
        c = self.config
        if len(self.memory) < max(c.learning_starts, c.batch_size):
            return {}
        count = self.replay_ratio.take(batch.steps)
        if c.prioritized or c.apex:
            if c.priority_alpha_final is not None:
                alpha = c.priority_alpha + (c.priority_alpha_final - c.priority_alpha) * progress
                if abs(alpha - self.memory.alpha) >= 0.01:  # each change rebuilds the tree
                    self.memory.set_alpha(alpha)
        totals: dict[str, float] = {}
        for _ in range(count):
            for name, value in self._gradient_step(progress, into).items():
                totals[name] = totals.get(name, 0.0) + value
        return {name: value / count for name, value in totals.items()}

    def _gradient_step(self, progress: float, into) -> dict[str, float]:
        c = self.config
        beta = c.priority_beta + (1.0 - c.priority_beta) * progress
        return self.learn_from(self.memory.sample(c.batch_size, beta), progress, into)

    def learn_from(self, sample: dict, progress: float, into=None) -> dict[str, float]:
        """One gradient step on a replay sample (`ReplayMemory.sample`'s dict) and the new
        priorities of its steps."""
        weights = sample["weights"] / np.float32(len(sample["weights"]))
        _, errors, q_loss, q_values = self._sample_gradients(
            sample["obs"], sample["next_obs"], sample["actions"], sample["returns"], sample["discounts"], weights)
        stats = {"q_loss": float(q_loss), "q_values": float(q_values)}
        prioritized = self.config.prioritized or self.config.apex  # as the memory is
        if prioritized:  # before the next call overwrites them (a replayed graph's)
            errors = backend.to_host(errors)
        # Until a step has moved the weights into `into` (a NaN gradient is skipped), the
        # published ones stay as they are; after it, `into` is no actor's and steps in place.
        stats.update(self.step(progress, None if self.network.flat().data is into else into))
        if prioritized:
            self.memory.update_priorities(sample["indices"], errors)
        return stats

    def _sample_loss(self, obs, next_obs, actions, returns, discounts, weights):
        """The Q loss of a sample (arrays on the network's device), its TD errors and statistics:
        no host reads, so that on the GPU it is one CUDA graph (`_sample_gradients`)."""
        xp = backend.get_array_module(obs)
        if self.config.double:  # the online net's Q in the next states, from the same forward pass
            q = self.network(xp.concatenate([obs, next_obs]))
            online_next = q.data[len(obs):]
        else:
            q, online_next = self.network(obs), None
        with nets.no_grad():
            target_next = self.target(next_obs).data
        op = QLoss(actions, dqn_targets(returns, discounts, target_next, online_next), self.config.huber_delta,
                   weights)
        return op(q), op.error, op.stats["q_loss"], op.stats["q_values"]
