"""Networks the agents use: a trunk that turns observations into features, and heads on top.

Trunks are looked up by name in TRUNKS: `factory(observation_shape, hidden)` returns a Module
with an `out_features` attribute whose forward maps a float32 or uint8 batch of observations
(N, *observation_shape) to features (N, out_features). An agent config names the trunk
(`trunk="mlp"`, one of TRUNK_RULE's) and the MLP's sizes (`hidden`).
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

import nets
from nets import backend, init

from .pixels import CONV_LAYERS, conv_trunk


def _orthogonal(gain: float):
    return functools.partial(init.orthogonal, gain=gain)


class MLPTrunk(nets.Module):
    """Flattened observations through tanh layers (tanh keeps small control nets well behaved;
    CleanRL's and SB3's defaults for vector observations of policy-gradient agents), or ReLU
    layers (`relu-mlp`: SB3's and CleanRL's Q-networks)."""

    def __init__(self, observation_shape: tuple[int, ...], hidden: tuple[int, ...], activation="tanh"):
        super().__init__()
        sizes = [math.prod(observation_shape), *hidden]
        self.layers = mlp(sizes, activation)
        self.in_features, self.out_features = sizes[0], sizes[-1]

    def forward(self, obs):
        x = obs if isinstance(obs, nets.Tensor) else backend.get_array_module(obs).asarray(obs, dtype=np.float32)
        return self.layers(x.reshape(x.shape[0], self.in_features))


def mlp(sizes: list[int], activation: str) -> nets.Sequential:
    """Dense layers of `sizes`, each followed by `activation` (fused into the layer's op)."""
    return nets.Sequential(*[nets.Linear(a, b, initializer=_orthogonal(math.sqrt(2)), activation=activation)
                             for a, b in zip(sizes, sizes[1:])])


TRUNKS: dict[str, Callable[[tuple[int, ...], tuple[int, ...]], nets.Module]] = {
    "mlp": MLPTrunk, "relu-mlp": functools.partial(MLPTrunk, activation="relu"),
    **{name: conv_trunk(name) for name in CONV_LAYERS}}
TRUNK_RULE = "one of " + ", ".join(["auto", *TRUNKS])  # auto: make_trunk chooses by observation


def make_trunk(name: str, observation_shape: tuple[int, ...], hidden: tuple[int, ...]) -> nets.Module:
    if name == "auto":  # images get the A3C paper's conv net (agents/pixels.py), vectors the MLP
        name = "small" if len(observation_shape) == 3 else "mlp"
    return TRUNKS[name](tuple(observation_shape), tuple(hidden))


class ActorCritic(nets.Module):
    """A trunk, a softmax policy head (logits) and a state-value head. The value head reads the
    shared trunk (A3C's), or its own `value_trunk` (PPO's separate MLPs), which then share the
    `normalizer` of their input, if any (agents/normalize.py; a one-trunk network normalises in a
    NormalizedTrunk)."""

    def __init__(self, trunk: nets.Module, n_actions: int, value_trunk: nets.Module | None = None,
                 normalizer: nets.Module | None = None):
        super().__init__()
        self.trunk, self.value_trunk, self.normalizer = trunk, value_trunk, normalizer
        # Small policy weights start near-uniform (CleanRL/PPO practice: gain 0.01).
        self.policy = nets.Linear(trunk.out_features, n_actions, initializer=_orthogonal(0.01))
        self.value = nets.Linear((value_trunk or trunk).out_features, 1, initializer=_orthogonal(1.0))

    def _input(self, obs):
        return self.normalizer(obs) if self.normalizer is not None else obs

    def forward(self, obs):
        """(logits (N, actions), values (N, 1))."""
        x = self._input(obs)
        features = self.trunk(x)
        return self.policy(features), self.value(features if self.value_trunk is None else self.value_trunk(x))

    def logits(self, obs):
        """The policy head alone: what acting needs."""
        return self.policy(self.trunk(self._input(obs)))


class QNetwork(nets.Module):
    """Trunk and one linear output per action: Q(s, .)."""

    def __init__(self, trunk: nets.Module, n_actions: int):
        super().__init__()
        self.trunk = trunk
        self.q = nets.Linear(trunk.out_features, n_actions, initializer=_orthogonal(1.0))

    def forward(self, obs):
        return self.q(self.trunk(obs))
