"""SAC: soft actor-critic (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and Applications")
for Box actions, learning from a replay memory in the learner as dqn does.

Actors act with the newest published policy, uniformly at random before `learning_starts`, and
send their steps; the learner stores them (agents/replay.py, float action vectors) and, for every
new env step, takes gradient_steps / train_frequency gradient steps on minibatches of the memory:
the twin Q networks towards the clipped double-Q target with the entropy term, the policy through
the reparameterised tanh-squashed Gaussian, the temperature towards a target entropy of -dim(A),
then the target critics by Polyak averaging. Only the policy is published: critics, targets and
temperature live in the learner (and in checkpoints).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

import nets
from nets import F, Function, backend, optim
from nets.settings import Settings, setting

from .base import Agent, Policy
from .losses import LOG_2PI
from .networks import _orthogonal, mlp
from .replay import ReplayMemory, ReplayRatio, store, waiting_note


@dataclass
class SACConfig(Settings):
    """SAC hyperparameters: stable-baselines3's SAC defaults: Adam with lr 3e-4 for the policy,
    the critics and the temperature, gamma 0.99, Polyak tau 0.005, batches of 256 from a memory
    of 1M steps, one gradient step per env step after 100 uniformly random ones, the temperature
    learned from 1.0 towards an entropy of -dim(A), 256-256 ReLU MLPs; the policy's log std
    squashed into [-5, 2] (CleanRL's sac_continuous_action.py; SB3 clamps it into [-20, 2]). On
    MuJoCo (PRESETS) learning starts after 10,000 random steps (RL Zoo's MuJoCo settings; CleanRL
    waits 5,000). `t_max`: steps per rollout an actor sends (how often the policy reaches the
    actors, not the learning). `alpha` fixed instead of learned when set.
    """

    lr: float = setting(3e-4, ">= 0")
    gamma: float = setting(0.99, "in [0, 1]")
    tau: float = setting(0.005, "in (0, 1]")
    batch_size: int = setting(256, ">= 1")
    buffer_size: int = setting(1_000_000, ">= 1")
    learning_starts: int = setting(100, ">= 0")
    train_frequency: int = setting(1, ">= 1")
    gradient_steps: int = setting(1, ">= 1")
    alpha: float | None = setting(None, ">= 0")  # None: learned
    alpha_init: float = setting(1.0, "> 0")
    target_entropy: float | None = None  # None: -dim(A)
    log_std_min: float = -5.0
    log_std_max: float = 2.0
    t_max: int = setting(8, ">= 1")
    hidden: tuple[int, ...] = setting((256, 256), ">= 1")


def q_network(sizes: list[int]) -> nets.Sequential:
    """ReLU layers of `sizes[:-1]`, then a linear output of `sizes[-1]`."""
    return nets.Sequential(*mlp(sizes[:-1], "relu").layers,
                           nets.Linear(sizes[-2], sizes[-1], initializer=_orthogonal(math.sqrt(2))))


class SquashedGaussianPolicy(nets.Module):
    """Observations -> (mean (N, A), log std (N, A) squashed into [log_std_min, log_std_max])."""

    def __init__(self, observation_size: int, n_actions: int, hidden, log_std_min: float, log_std_max: float):
        super().__init__()
        self.trunk = mlp([observation_size, *hidden], "relu")
        self.mean = nets.Linear(hidden[-1], n_actions, initializer=_orthogonal(0.01))
        self.log_std = nets.Linear(hidden[-1], n_actions, initializer=_orthogonal(0.01))
        self.observation_size, self.log_std_range = observation_size, (log_std_min, log_std_max)

    def forward(self, obs):
        x = obs if isinstance(obs, nets.Tensor) else np.asarray(obs, np.float32).reshape(len(obs), -1)
        features = self.trunk(x)
        low, high = self.log_std_range
        return self.mean(features), (F.tanh(self.log_std(features)) + 1.0) * (0.5 * (high - low)) + low


class TwinQ(nets.Module):
    """Two Q networks over (observation, action), each a ReLU MLP to one output."""

    def __init__(self, observation_size: int, n_actions: int, hidden):
        super().__init__()
        self.q1, self.q2 = (q_network([observation_size + n_actions, *hidden, 1]) for _ in range(2))

    def forward(self, obs, actions):
        x = F.concat([obs.reshape(len(obs), -1) if isinstance(obs, nets.Tensor) else
                      np.asarray(obs, np.float32).reshape(len(obs), -1), actions], axis=1)
        return self.q1(x), self.q2(x)


class Temperature(nets.Module):
    def __init__(self, alpha: float):
        super().__init__()
        self.log_alpha = nets.Parameter(np.array([math.log(alpha)], np.float32))


class SACModel(nets.Module):
    """What a checkpoint holds: the policy, the critics, their targets and the temperature."""

    def __init__(self, policy, critic, target, temperature):
        super().__init__()
        self.policy, self.critic, self.target, self.temperature = policy, critic, target, temperature


def soft_targets(returns, discounts, target_q1, target_q2, next_log_probs, alpha: float) -> np.ndarray:
    """y = r + gamma^m (min(Q1'(s', a'), Q2'(s', a')) - alpha log pi(a'|s')), a' ~ pi(s'): the
    clipped double-Q target with the entropy term; `discounts` is 0 after a terminal step."""
    soft = np.minimum(target_q1, target_q2) - np.float32(alpha) * next_log_probs
    return (returns + discounts * soft).astype(np.float32)


class SquashedSample(Function):
    """a = tanh(mean + exp(log_std) noise) scale + bias, reparameterised with the given `noise`,
    and its log-probability summed over the action's dimensions, with tanh's change of variables:
    log N(u; mean, std) - sum_j log(scale_j (1 - tanh(u_j)^2) + 1e-6) (CleanRL's, SB3's)."""

    def __init__(self, noise, scale, bias):
        self.noise, self.scale, self.bias = noise, scale, bias

    def forward(self, mean, log_std):
        xp = backend.get_array_module(mean)
        dtype = mean.dtype
        noise, scale, bias = (xp.asarray(a, dtype=dtype) for a in (self.noise, self.scale, self.bias))
        std = xp.exp(log_std)
        t = xp.tanh(mean + std * noise)
        jacobian = scale * (1 - t * t)
        log_prob = (-0.5 * noise * noise - log_std - dtype.type(0.5 * LOG_2PI)
                    - xp.log(jacobian + dtype.type(1e-6))).sum(axis=1)
        self.saved = noise, std, t, jacobian, scale
        return t * scale + bias, log_prob

    def backward(self, g_action, g_log_prob):
        noise, std, t, jacobian, scale = self.saved
        # d log(jacobian + 1e-6) / du = -2 t scale (1 - t^2) / (jacobian + 1e-6)
        g_u = g_action * jacobian + g_log_prob[:, None] * 2 * t * jacobian / (jacobian + t.dtype.type(1e-6))
        return g_u, g_u * std * noise - g_log_prob[:, None]


class SACActing(Policy):
    """Uniformly random actions before `learning_starts` env steps, then samples of the squashed
    Gaussian, or (`greedy`) tanh of its mean. The log-probabilities sent are zeros: SAC learns
    off-policy from its memory and never reads them."""

    def __init__(self, agent: "SAC", rng: np.random.Generator, greedy: bool = False, random_until: int = 0):
        self.agent, self.rng, self.greedy, self.random_until = agent, rng, greedy, random_until

    def act(self, obs, step):
        scale, bias = self.agent.scale, self.agent.bias
        if step < self.random_until:
            actions = bias + scale * self.rng.uniform(-1, 1, (len(obs), len(scale)))
        else:
            with nets.no_grad():
                mean, log_std = (backend.to_host(t.data) for t in self.agent.network(obs))
            u = mean if self.greedy else mean + np.exp(log_std) * self.rng.standard_normal(mean.shape)
            actions = np.tanh(u) * scale + bias
        return actions.astype(np.float32), np.zeros(len(obs), np.float32)


class SAC(Agent):
    name = "sac"
    summary = "soft actor-critic, Haarnoja et al. 2018, from a replay memory in the learner (Box actions)"
    Config = SACConfig
    discrete_actions, continuous_actions = False, True
    gradients_on = ("learner",)  # it learns from its replay memory, which only the learner holds
    envs_per_actor = {"box": 1}
    presets = {"mujoco": {"learning_starts": 10_000}}

    def __init__(self, observation_space, action_space, config: SACConfig, learner: bool = True,
                 device: str = "cpu"):
        low, high = (np.asarray(bound, np.float32) for bound in (action_space.low, action_space.high))
        if not (np.isfinite(low).all() and np.isfinite(high).all()):
            raise ValueError(f"agent sac squashes its actions into the action space's bounds, and "
                             f"{action_space} has infinite ones")
        self.scale, self.bias = (high - low) / 2, (high + low) / 2
        super().__init__(observation_space, action_space, config, learner, device)
        size, c = math.prod(self.observation_shape), config
        self.critic = TwinQ(size, self.n_actions, c.hidden).to(device)
        self.target = TwinQ(size, self.n_actions, c.hidden).to(device)
        self.temperature = Temperature(c.alpha if c.alpha is not None else c.alpha_init).to(device)
        for module in (self.critic, self.target, self.temperature):
            module.flat()
        self.target.flat().data[...] = self.critic.flat().data
        self.model = SACModel(self.network, self.critic, self.target, self.temperature)
        self.target_entropy = -float(self.n_actions) if c.target_entropy is None else c.target_entropy
        self._memory = None
        self.replay_ratio = ReplayRatio(c.gradient_steps, c.train_frequency)
        if learner:
            self.optimizer = Optimizers(policy=self.optimizer,
                                        critic=optim.Adam(self.critic, lr=c.lr),
                                        temperature=optim.Adam(self.temperature, lr=c.lr))

    def build_network(self):
        c = self.config
        return SquashedGaussianPolicy(math.prod(self.observation_shape), self.n_actions, c.hidden,
                                      c.log_std_min, c.log_std_max)

    def make_optimizer(self):
        return optim.Adam(self.network, lr=self.config.lr)

    def memory_settings(self) -> dict:
        """ReplayMemory's arguments for this agent (its rng aside)."""
        return dict(capacity=self.config.buffer_size, observation_shape=self.observation_shape,
                    dtype=np.float32, gamma=self.config.gamma, action_size=self.n_actions)

    @property
    def memory(self) -> ReplayMemory | None:
        """The learner's replay memory, made when first used (evaluation and play never do)."""
        if self._memory is None and self.optimizer is not None:
            generator = np.random.default_rng(nets.rng.generator().integers(2**63))
            self._memory = ReplayMemory(**self.memory_settings(), rng=generator)
        return self._memory

    def policy(self, actor_index, rng):
        return SACActing(self, rng, random_until=self.config.learning_starts)

    def play_policy(self, greedy, rng):
        return SACActing(self, rng, greedy)

    def remember(self, rollouts) -> None:
        store(self.memory, rollouts)

    def after_load(self) -> str:
        return waiting_note(self.config.learning_starts, self.config.batch_size)

    @property
    def alpha(self) -> float:
        c = self.config
        return c.alpha if c.alpha is not None else float(np.exp(backend.to_host(self.temperature.log_alpha.data))[0])

    def update(self, batch, progress, into=None):
        """`batch` only counts the new env steps (they are already in the memory); the first
        policy step writes the weights into `into`, the rest step them there."""
        c = self.config
        if len(self.memory) < max(c.learning_starts, c.batch_size):
            return {}
        count = self.replay_ratio.take(batch.steps)
        totals: dict[str, float] = {}
        for _ in range(count):
            stats = self.gradient_step(self.memory.sample(c.batch_size),
                                       None if self.network.flat().data is into else into)
            for name, value in stats.items():
                totals[name] = totals.get(name, 0.0) + value
        return {name: value / count for name, value in totals.items()}

    def sample(self, obs):
        """(actions, log-probabilities) of the current policy in `obs`, differentiable."""
        mean, log_std = self.network(obs)
        noise = nets.rng.generator().standard_normal(mean.shape).astype(np.float32)
        return SquashedSample(noise, self.scale, self.bias)(mean, log_std)

    def gradient_step(self, s: dict, into) -> dict[str, float]:
        """One step of the critics, the policy, the temperature, then the targets' Polyak step."""
        alpha = self.alpha
        with nets.no_grad():
            next_actions, next_log_probs = self.sample(s["next_obs"])
            target_q1, target_q2 = (backend.to_host(q.data).reshape(-1) for q in self.target(s["next_obs"], next_actions))
        targets = soft_targets(s["returns"], s["discounts"], target_q1, target_q2,
                               backend.to_host(next_log_probs.data), alpha).reshape(-1, 1)
        self.critic.zero_grad()
        q1, q2 = self.critic(s["obs"], s["actions"])
        qf1_loss, qf2_loss = F.mse_loss(q1, targets), F.mse_loss(q2, targets)
        (qf1_loss + qf2_loss).backward()
        self.optimizer.named["critic"].step()

        self.network.zero_grad()
        actions, log_probs = self.sample(s["obs"])
        with frozen(self.critic):  # the actor's loss reaches the critics' weights, which it must not move
            q1_pi, q2_pi = self.critic(s["obs"], actions)
            actor_loss = F.mean(log_probs * alpha + F.maximum(-q1_pi, -q2_pi).reshape(-1))
            actor_loss.backward()
        self.optimizer.named["policy"].step(into)
        stats = {"qf1_loss": float(qf1_loss.data), "qf2_loss": float(qf2_loss.data),
                 "actor_loss": float(actor_loss.data), "alpha": alpha,
                 "q_values": float(backend.to_host(q1.data).mean())}
        if self.config.alpha is None:  # d/d log alpha of -log alpha (log pi + target entropy)
            entropy_gap = float(backend.to_host(log_probs.data).mean()) + self.target_entropy
            flat = self.temperature.flat()
            flat.grad[...] = -entropy_gap
            self.optimizer.named["temperature"].step()
            stats["alpha_loss"] = -math.log(alpha) * entropy_gap
        target, online, tau = self.target.flat().data, self.critic.flat().data, self.config.tau
        target *= 1 - tau
        target += tau * online
        return stats


@contextlib.contextmanager
def frozen(module: nets.Module):
    """The module's parameters get no gradient inside (nor the products that would make it)."""
    parameters = module.parameters()
    for p in parameters:
        p.requires_grad = False
    try:
        yield
    finally:
        for p in parameters:
            p.requires_grad = True


class Optimizers:
    """Several optimizers saved and loaded as one (a checkpoint holds one optimizer)."""

    def __init__(self, **named):
        self.named = named

    @property
    def steps(self) -> int:
        return self.named["policy"].steps

    def state_dict(self) -> dict[str, np.ndarray]:
        return {f"{name}.{key}": value for name, optimizer in self.named.items()
                for key, value in optimizer.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        for name, optimizer in self.named.items():
            optimizer.load_state_dict({key[len(name) + 1:]: value for key, value in state.items()
                                       if key.startswith(f"{name}.")})
