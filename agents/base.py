"""What every agent offers the actor system, which knows nothing else about it.

An agent is built from the env's spaces and its config dataclass. In an actor process it acts:
`policy(actor_index, rng)` gives a Policy that reads `agent.network` (whose parameters the actor
rebinds to the published weights). Learning is in two halves, so that either the learner or each
actor can compute gradients: `gradients(batch)` backpropagates the loss of a Batch of rollouts
into `network.flat().grad`, and `step(progress)` (learner only) clips that gradient and steps the
optimizer; `update(batch, progress)` is both.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import ClassVar

import gymnasium as gym
import numpy as np

import nets
from nets import optim

from . import networks


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
    """Base class. Subclasses set `Config`, build `network` (and `model` if a checkpoint holds
    more than the published network) and implement `policy` and `update`."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    continuous_actions: ClassVar[bool] = False  # also learns Box (continuous) action spaces
    has_target: ClassVar[bool] = False  # a `target` network: read by the loss, not trained by
                                        # the optimizer, published with the weights to actors
                                        # that compute gradients (the loss is its only reader)
    memory = None  # a replay memory (agents/replay.py), in the learner of agents that keep one

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config,
                 learner: bool = True, device: str = "cpu"):
        box = isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1
        if box and not self.continuous_actions:
            takers = ", ".join(sorted(a.name for a in _subclasses(Agent) if a.continuous_actions and a.name))
            raise ValueError(f"agent {self.name} needs a discrete action space; for continuous "
                             f"(Box) actions use {takers}")
        if not (box or isinstance(action_space, gym.spaces.Discrete)):
            raise ValueError(f"agent {self.name} needs a discrete or a one-dimensional Box action "
                             f"space, not {action_space}")
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
        return self.config.t_max

    def policy(self, actor_index: int, rng: np.random.Generator) -> Policy:
        raise NotImplementedError

    def remember(self, rollouts: list) -> None:
        """Learner only, before each `update`: the rollouts that arrived, each from its actor
        (an agent with a replay memory stores them)."""

    def loss(self, batch) -> tuple[nets.Tensor, dict[str, float]]:
        """The loss of a Batch (a sum over its steps, as A3C accumulates gradients over t_max
        steps) and its statistics."""
        raise NotImplementedError

    def gradients(self, batch) -> dict[str, float]:
        """Backpropagate the loss of `batch` into `network.flat().grad` (zeroed first); returns
        the loss's statistics."""
        self.network.zero_grad()
        loss, stats = self.loss(batch)
        loss.backward()
        return stats

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


def _subclasses(cls: type) -> list[type]:
    return [c for sub in cls.__subclasses__() for c in (sub, *_subclasses(sub))]


# The ranges of the hyperparameters, by field name: (test, what it needs). NaN fails them all.
LIMITS = {
    "lr": (lambda v: v >= 0, ">= 0"),
    "gamma": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "gae_lambda": (lambda v: v is None or 0 <= v <= 1, "in [0, 1]"),
    "entropy_beta": (lambda v: v >= 0, ">= 0"),
    "value_coef": (lambda v: v >= 0, ">= 0"),
    "rmsprop_alpha": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "rmsprop_eps": (lambda v: v > 0, "> 0"),
    "max_grad_norm": (lambda v: v > 0, "> 0"),
    "rho_bar": (lambda v: v > 0, "> 0"),
    "c_bar": (lambda v: v > 0, "> 0"),
    "huber_delta": (lambda v: v is None or v > 0, "> 0"),
    "t_max": (lambda v: v >= 1, ">= 1"),
    "n_step": (lambda v: v is None or v >= 1, ">= 1"),
    "target_update_interval": (lambda v: v >= 1, ">= 1"),
    "epsilon_anneal_steps": (lambda v: v >= 0, ">= 0"),
    "lstm_size": (lambda v: v >= 1, ">= 1"),
    "hidden": (lambda v: all(n >= 1 for n in v), "layer sizes >= 1"),
    "trunk": (lambda v: v == "auto" or v in networks.TRUNKS, "auto or a trunk name (mlp, relu-mlp, small, nature)"),
}
_EXPECTED = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
             dict: "a JSON object"}


def config_from_dict(config_class, values: dict, limits: dict = LIMITS):
    """A config dataclass from a dict of JSON values (a list stands for a tuple). Unknown keys,
    a value of the wrong type for its field, or out of its range in `limits`, are one-line
    ValueErrors naming the key, the value and what would be right."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {config_class.__name__} settings {unknown}; known: {sorted(fields)}")
    hints = typing.get_type_hints(config_class)
    converted = {key: _typed(key, value, hints[key]) for key, value in values.items()}
    for key, value in converted.items():
        if key in limits and not limits[key][0](value):
            raise ValueError(f"{key} must be {limits[key][1]}, got {value!r}")
    return config_class(**converted)


def _typed(key: str, value, hint):
    """`value` as the type `hint` names (int, float, bool, str, dict, tuple[int, ...], X | None)."""
    optional = type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint in (bool, str, dict) and isinstance(value, hint):
        return value
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)) \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    expected = "a list of integers like [64, 64]" if typing.get_origin(hint) is tuple else _EXPECTED[hint]
    raise ValueError(f"{key} must be {expected}{' or null' if optional else ''}, got {value!r}")


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
