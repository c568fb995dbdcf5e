"""What every agent offers the actor system, which knows nothing else about it.

An agent class holds its own rules: its name and one-line summary, its config dataclass (each
setting's range in the field, each default's source in the docstring), the presets that differ
by env (`presets`, keyed by the env's tags: its family, its Gymnasium package, its id), its envs
per actor, where its gradients may be computed, which action spaces it takes, and what its actors
are told (`actor_config`). agents/__init__.py registers the classes by name; nothing outside
agents/ asks which agent it is.

An agent is built from the env's spaces and its config dataclass. In an actor process it acts:
`policy(actor_index, rng)` gives a Policy that reads `agent.network` (whose parameters the actor
rebinds to the published weights). Learning is in two halves, so that either the learner or each
actor can compute gradients: `gradients(batch)` backpropagates the loss of a Batch of rollouts
into `network.flat().grad`, and `step(progress)` (learner only) clips that gradient and steps the
optimizer; `update(batch, progress)` is both.
"""
from __future__ import annotations

import math
from typing import ClassVar

import gymnasium as gym
import numpy as np

import nets
from nets import optim

from .losses import floats
from .replay import ReplayMemory

# The families of envs that presets and envs per actor are keyed by (envs/make.py tells an env's):
# vector observations with discrete actions (classic control, toy text), image observations
# (Atari's frames, or another env's preprocessed like them), and Box (continuous) actions. An env's
# tags also say "one-hot" where its observations are made only of Discrete parts.
FAMILIES = ("vector", "pixels", "box")
ENVS_PER_ACTOR = 4  # a few envs batched per forward pass amortise the network's per-call cost
EVAL_EPSILON = 0.05  # Q agents' exploration when playing, not greedy (Mnih et al. 2015, evaluation)


class Policy:
    """Chooses actions for a batch of observations in one actor; may keep per-actor state."""

    def act(self, obs: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        """Actions (E,) for observations (E, ...), or (E, A) float32 for continuous actions, and
        their log-probabilities (E,) under this policy (float32, summed over a continuous action's
        dimensions; kept in the rollout for off-policy corrections: V-trace); `step` is the run's
        global env step."""
        raise NotImplementedError

    def scalars(self, step: int) -> dict[str, float]:
        """Values worth logging (e.g. epsilon)."""
        return {}

    def recurrent_state(self, n_envs: int):
        """A recurrent policy's state for its `n_envs` envs before the next `act` (sent with each
        rollout, for the learner to start its unroll from); None for feed-forward policies."""
        return None

    def episodes_ended(self, ended: np.ndarray) -> None:
        """`ended` (E,) bool: these envs' episodes ended; a recurrent policy zeroes their state."""

    def rollout_done(self, rollout) -> None:
        """Each rollout, before it is sent: a policy may attach what the learner wants from the
        actor (Ape-X: the steps' initial replay priorities)."""


class Agent:
    """Base class. Subclasses set the class attributes below, build `network` (and `model` if a
    checkpoint holds more than the published network) and implement `policy` and `loss` (or
    `update`)."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for `workbench train --help` and `workbench agents`
    Config: ClassVar[type] = object
    discrete_actions: ClassVar[bool] = True  # learns Discrete action spaces
    continuous_actions: ClassVar[bool] = False  # learns one-dimensional Box action spaces
    whole_episodes: ClassVar[bool] = False  # learns from whole episodes of one env per actor
    gradients_on: ClassVar[tuple[str, ...]] = ("actors", "learner")  # where they may be computed;
                                                                      # the first is the default
    envs_per_actor: ClassVar[dict[str, int]] = {}  # by family; ENVS_PER_ACTOR where not given
    presets: ClassVar[dict[str, dict]] = {}  # env tag -> settings that differ there from Config's
    has_target: ClassVar[bool] = False  # a `target` network: read by the loss, not trained by
                                        # the optimizer, published with the weights to actors
                                        # that compute gradients (the loss is its only reader)
    memory = None  # a replay memory (agents/replay.py), in the learner of agents that keep one

    def memory_settings(self) -> dict | None:
        """ReplayMemory's arguments (its rng aside) for an agent that keeps one."""
        return None

    def memory_bytes(self) -> int:
        """Bytes the learner's replay memory will take (0 without one): checked against the
        machine's memory before a run starts, as the memory is made only when first used."""
        settings = self.memory_settings()
        return 0 if settings is None else ReplayMemory.bytes_needed(**settings)

    @classmethod
    def defaults(cls, tags: tuple[str, ...]) -> dict:
        """The presets for an env with these tags (envs.EnvInfo.tags: family first, the env's id
        last), later tags winning: what the agent's settings start from before the user's."""
        values = {}
        for tag in tags:
            values.update(cls.presets.get(tag, {}))
        return values

    @classmethod
    def default_envs_per_actor(cls, family: str) -> int:
        return 1 if cls.whole_episodes else cls.envs_per_actor.get(family, ENVS_PER_ACTOR)

    @classmethod
    def check_action_space(cls, space: gym.Space) -> None:
        """A one-line ValueError naming the agents that can, unless this one learns `space`."""
        box = isinstance(space, gym.spaces.Box) and len(space.shape) == 1
        if (box and cls.continuous_actions) or (isinstance(space, gym.spaces.Discrete) and cls.discrete_actions):
            return
        if box or isinstance(space, gym.spaces.Discrete):
            kind = "continuous (Box)" if box else "discrete"
            from . import AGENTS  # the registry, which imports this module

            takers = ", ".join(sorted(name for name, a in AGENTS.items()
                                      if (a.continuous_actions if box else a.discrete_actions)))
            needs = "a discrete action space" if box else "continuous (Box) actions"
            raise ValueError(f"agent {cls.name} needs {needs}; for {kind} actions use {takers}")
        raise ValueError(f"agent {cls.name} needs a Discrete or a one-dimensional Box action space, "
                         f"not {space}")

    @classmethod
    def actor_config(cls, config, actor_envs: int):
        """The config actors act with, given how many envs all actors step together."""
        return config

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config,
                 learner: bool = True, device: str = "cpu"):
        self.check_action_space(action_space)
        box = isinstance(action_space, gym.spaces.Box)
        self.config = config
        self.observation_shape = tuple(observation_space.shape)
        self.continuous = box  # a Gaussian policy over n_actions dimensions instead of a softmax
        self.n_actions = int(action_space.shape[0]) if box else int(action_space.n)
        self.device = device  # where the learner's copy computes; actors always act on the CPU
        self.network = self.build_network().to(device)
        self.network.flat()  # one contiguous vector: what the learner publishes and actors read
        self.target = self.build_network().to(device) if self.has_target else None
        self.model = self.network
        self.optimizer = self.make_optimizer() if learner else None

    def build_network(self) -> nets.Module:
        raise NotImplementedError

    def make_optimizer(self) -> optim.Optimizer:
        """The paper's shared-statistics RMSProp (alpha, eps inside the root) from the config."""
        c = self.config
        return optim.RMSProp(self.network, lr=c.lr, alpha=c.rmsprop_alpha, eps=c.rmsprop_eps,
                             eps_inside_sqrt=True)

    @property
    def rollout_length(self) -> int | None:
        """Steps per rollout (t_max), or None for whole episodes."""
        return None if self.whole_episodes else self.config.t_max

    def policy(self, actor_index: int, rng: np.random.Generator) -> Policy:
        raise NotImplementedError

    def play_policy(self, greedy: bool, rng: np.random.Generator) -> Policy:
        """The policy `play`, evaluation and `workbench.load` act with: `greedy` takes the best
        action (a Gaussian's mean), otherwise actions are sampled as in training (Q agents:
        epsilon-greedy with EVAL_EPSILON)."""
        raise NotImplementedError

    def ready(self, rollouts: list, n_actors: int) -> bool:
        """Learner only: whether to learn from the rollouts it holds now, or to wait for more
        (the actors wait with it, for the weights that learn from theirs). At once by default."""
        return True

    def remember(self, rollouts: list) -> None:
        """Learner only, before each `update`: the rollouts that arrived, each from its actor
        (an agent with a replay memory stores them)."""

    def loss(self, batch) -> tuple[nets.Tensor, dict]:
        """The loss of a Batch (a sum over its steps, as A3C accumulates gradients over t_max
        steps) and its statistics (0-d arrays on the network's device, or floats)."""
        raise NotImplementedError

    def gradients(self, batch) -> dict[str, float]:
        """Backpropagate the loss of `batch` into `network.flat().grad` (zeroed first); returns
        the loss's statistics, read after the backward pass."""
        self.network.zero_grad()
        loss, stats = self.loss(batch)
        loss.backward()
        return floats(stats)

    def step(self, progress: float, into=None, moments: dict | None = None) -> dict[str, float]:
        """One optimizer step from the gradient in `network.flat().grad`: clip its norm, anneal
        the learning rate (`progress` in [0, 1]), step, out of place with `into`
        (`Optimizer.step`), then take in the normalisation `moments` of the rollouts the gradient
        came from (`merge_moments`): they land in the new weights, so the published ones never
        change under an actor, and every loss until the next step reads the same statistics. A
        NaN/Inf gradient is not applied and its rollouts' moments are dropped with it (the
        learner counts these)."""
        norm = optim.clip_grad_norm(self.optimizer, self.config.max_grad_norm)
        if math.isfinite(norm):
            anneal = max(0.0, 1.0 - progress) if self.config.lr_anneal else 1.0
            self.optimizer.lr = self.config.lr * anneal
            self.optimizer.step(into)
            if moments:
                self.merge_moments(moments)
            self.after_step()
        return {"grad_norm": norm, "learning_rate": self.optimizer.lr}

    def update(self, batch, progress: float, into=None) -> dict[str, float]:
        """`gradients` of a Batch, then `step` with its moments."""
        return {**self.gradients(batch), **self.step(progress, into, batch.moments)}

    def after_step(self) -> None:
        """Called after each optimizer step (e.g. to refresh a target network)."""

    def moment_tracker(self, n_envs: int):
        """What an actor with `n_envs` envs counts for the learner's normalisation statistics
        (agents/normalize.Tracker), or None."""
        return None

    def merge_moments(self, moments: dict) -> None:
        """Take in the moments actors counted (`moment_tracker`); the learner's only way in."""

    def after_load(self) -> str | None:
        """Called when a checkpoint has been loaded into `model` and the optimizer; may return a
        line for the console about what a checkpoint does not restore."""


def sample_categorical(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of logits, by inverse CDF (one uniform per row)."""
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    u = rng.random((len(cdf), 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), logits.shape[1] - 1)


def epsilon_greedy(q: np.ndarray, epsilons, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One action per row of Q-values: a uniform random one with probability `epsilons` (a number
    or one per row), else the greedy one; with each action's log-probability under that policy."""
    greedy = q.argmax(axis=1)
    n_actions = q.shape[1]
    explore = rng.random(len(greedy)) < epsilons
    actions = greedy.copy()
    actions[explore] = rng.integers(n_actions, size=int(explore.sum()))
    probability = epsilons / n_actions + (1 - epsilons) * (actions == greedy)
    return actions, np.log(probability).astype(np.float32)
