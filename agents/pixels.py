"""Convolutional trunks for stacked frames (N, 4, 84, 84) uint8: Atari's, or another env's images
preprocessed the same way (envs/make.py). agents/networks.py lists them in TRUNKS.

    small   Mnih et al. 2016 (A3C): 16 8x8/4, 32 4x4/2, dense 256; ReLU after each
    nature  Mnih et al. 2015 (DQN, Nature): 32 8x8/4, 64 4x4/2, 64 3x3/1, dense 512
    auto    `small` for image observations (3-D), `mlp` for vectors: the agents' default

The trunk takes uint8 frames and its first conv reads them scaled to [0, 1] (`input_scale`), so
observations cross processes at a quarter of the float32 size and no scaled copy is made. Their
sizes are the papers'; `hidden` is for the MLP trunk.
"""
from __future__ import annotations

import nets
from nets import F, backend, init

CONV_LAYERS = {  # (out channels, kernel, stride) per conv, then the dense size
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
            scale = 1 / 255 if not layers else 1.0  # pixels in [0, 255] read as [0, 1]
            layers.append(nets.Conv2D(channels, out, kernel, stride=stride, activation="relu",
                                      input_scale=scale))
            channels, height, width = out, (height - kernel) // stride + 1, (width - kernel) // stride + 1
        self.convs = nets.Sequential(*layers)
        self.in_shape = tuple(observation_shape)
        # He init like the convs: an orthogonal draw of this size costs seconds (a QR) in every
        # actor at start-up, on a loaded machine
        self.dense = nets.Linear(channels * height * width, dense, initializer=init.he_normal, activation="relu")
        self.out_features = dense

    def forward(self, obs):
        """Frames (N, *observation_shape) of pixels in [0, 255], uint8 or any number type."""
        x = obs
        if not isinstance(obs, nets.Tensor):  # on the net's device
            x = backend.get_array_module(self.dense.weight.data).asarray(obs)
        x = x.reshape(x.shape[0], *self.in_shape)
        for conv in self.convs:
            x = conv(x)
        return self.dense(F.flatten(x))


def conv_trunk(name: str):
    convs, dense = CONV_LAYERS[name]
    return lambda observation_shape, hidden: ConvTrunk(observation_shape, convs, dense)


