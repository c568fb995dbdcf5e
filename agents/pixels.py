"""Convolutional trunks for stacked Atari frames (N, 4, 84, 84) uint8, registered in TRUNKS.

    small   Mnih et al. 2016 (A3C): 16 8x8/4, 32 4x4/2, dense 256; ReLU after each
    nature  Mnih et al. 2015 (DQN, Nature): 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512
    auto    `small` for image observations (3-D), `mlp` for vectors: the agents' default

The trunk takes uint8 frames and scales them to [0, 1] itself, so observations cross processes
at a quarter of the float32 size. Their sizes are the papers'; `hidden` is for the MLP trunk.
"""
from __future__ import annotations

import numpy as np

import nets
from nets import F, backend, init

from .networks import register_trunk

LAYERS = {  # (out channels, kernel, stride) per conv, then the dense size
    "small": ([(16, 8, 4), (32, 4, 2)], 256),
    "nature": ([(32, 8, 4), (64, 4, 2), (64, 3, 1)], 512),
}


class ConvTrunk(nets.Module):
    def __init__(self, observation_shape: tuple[int, ...], convs: list[tuple[int, int, int]], dense: int):
        super().__init__()
        if len(observation_shape) != 3:
            raise ValueError(f"a conv trunk needs image observations (channels, height, width), "
                             f"not shape {observation_shape}; use the mlp trunk")
        channels, height, width = observation_shape
        layers = []
        for out, kernel, stride in convs:
            layers.append(nets.Conv2D(channels, out, kernel, stride=stride, activation="relu"))
            channels, height, width = out, (height - kernel) // stride + 1, (width - kernel) // stride + 1
        self.convs = nets.Sequential(*layers)
        self.in_shape = tuple(observation_shape)
        # He init like the convs: an orthogonal draw of this size costs seconds (a QR) in every
        # actor at start-up, on a loaded machine
        self.dense = nets.Linear(channels * height * width, dense, initializer=init.he_normal)
        self.out_features = dense

    def forward(self, obs):
        x = obs
        if not isinstance(obs, nets.Tensor):  # uint8 frames -> float32 in [0, 1], on the net's device
            xp = backend.get_array_module(self.dense.weight.data)
            x = xp.multiply(xp.asarray(obs), np.float32(1 / 255), dtype=np.float32)
        x = x.reshape(x.shape[0], *self.in_shape)
        for conv in self.convs:
            x = conv(x)
        return F.relu(self.dense(F.flatten(x)))


def conv_trunk(name: str):
    convs, dense = LAYERS[name]
    return lambda observation_shape, hidden: ConvTrunk(observation_shape, convs, dense)


for _name in LAYERS:
    register_trunk(_name, conv_trunk(_name))


# Hyperparameters that differ on Atari from the agents' classic-control defaults, applied under
# the user's own settings. lr 7e-4 and RMSProp epsilon 1e-5: OpenAI Baselines' A2C on Atari (PFRL's
# A3C example has the same lr). The paper's epsilon of 0.1 inside the root caps each step at
# ~3 lr |g|: with this net's per-weight gradients (~1e-3) the policy's entropy had not moved from
# log(4) after 150k Breakout steps. The Q schedules are the paper's: a target refresh every 40k
# frames (10k env steps = 250 updates of 40 steps: 2 actors x 4 envs x t_max 5) and epsilon
# annealed over 4M frames (1M env steps) to each actor's draw from the paper's final values, with
# the paper's squared error (clipped rewards keep its errors small).
_RMSPROP = {"lr": 7e-4, "rmsprop_eps": 1e-5}
_A3C = {**_RMSPROP, "entropy_beta": 0.01}  # the paper's bonus; classic control has none
_Q_SCHEDULES = {"target_update_interval": 250, "epsilon_anneal_steps": 1_000_000, "final_epsilon": None,
                "huber_delta": None}
ATARI_DEFAULTS = {
    "a3c": _A3C,
    "impala": _A3C,  # A3C's network and loss
    "a3c-lstm": {**_A3C, "lstm_size": 256},  # the paper's cells after the conv trunk's 256
    "nstep-q": {**_RMSPROP, **_Q_SCHEDULES},
    "onestep-q": {**_RMSPROP, **_Q_SCHEDULES},
    "reinforce": {"lr": 1e-4},
    # CleanRL's dqn_atari.py (see DQNConfig): 1000 env steps between target refreshes at one
    # gradient step per 4 env steps is 250 gradient steps
    "dqn": {"lr": 1e-4, "batch_size": 32, "buffer_size": 1_000_000, "learning_starts": 80_000,
            "train_frequency": 4, "gradient_steps": 1, "target_update_interval": 250,
            "epsilon_final": 0.01, "epsilon_anneal_steps": 1_000_000, "n_step": 1, "double": False,
            "trunk": "nature"},
}


def atari_defaults(agent: str) -> dict:
    return dict(ATARI_DEFAULTS[agent])
