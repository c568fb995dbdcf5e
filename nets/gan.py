"""Generative adversarial networks (Goodfellow et al. 2014) for small greyscale images.

- Generator: noise z -> image in [-1, 1] (tanh). 'conv' is the DCGAN shape (Radford et al. 2016):
  a linear layer to a 4 width x (s/4) x (s/4) map, then two stride-2 transposed convolutions,
  batch norm and ReLU between; 'mlp' is the fully connected generator of the original paper.
- Discriminator: image -> one logit. 'conv': two stride-2 convolutions with leaky ReLU (batch
  norm on the second), then a linear layer; 'mlp': two leaky-ReLU hidden layers.
- Losses: the discriminator minimises binary cross-entropy with one-sided label smoothing
  (real targets 1 - smoothing, Salimans et al. 2016); the generator minimises the
  non-saturating loss -log D(G(z)) (Goodfellow et al. 2014, section 3), or with feature
  matching the squared distance between the mean discriminator features of real and generated
  batches (Salimans et al. 2016).
- GANOptimizers: the two players' optimizers over one flat parameter vector, so a GAN trains in
  the shared training loop and its checkpoints hold both players and both optimizer states.
"""
from __future__ import annotations

import numpy as np

from . import backend
from . import functional as F
from . import init
from . import rng as _rng
from .layers.conv import Conv2D
from .layers.dense import Linear
from .layers.normalization import BatchNorm
from .layers.spatial import ConvTranspose2D
from .module import FlatParameters, Module
from .tensor import Tensor, no_grad

ARCHITECTURES = ("conv", "mlp")
LEAK = 0.2  # leaky-ReLU slope of the discriminator (DCGAN)


def _dcgan_init(shape):
    """N(0, 0.02), the DCGAN paper's initialisation of every weight."""
    return init.normal(shape, 0.02)


def _check(arch: str, size: int) -> None:
    if arch not in ARCHITECTURES:
        raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {arch!r}")
    if arch == "conv" and size % 4:
        raise ValueError(f"the conv GAN needs an image size divisible by 4, got {size}")


class Generator(Module):
    def __init__(self, noise: int = 100, size: int = 28, channels: int = 1, width: int = 32,
                 arch: str = "conv"):
        super().__init__()
        _check(arch, size)
        self.noise, self.size, self.channels, self.arch = noise, size, channels, arch
        if arch == "conv":
            self.base = (4 * width, size // 4, size // 4)
            self.fc = Linear(noise, int(np.prod(self.base)), initializer=_dcgan_init)
            self.bn0 = BatchNorm(4 * width)
            self.up1 = ConvTranspose2D(4 * width, 2 * width, 4, stride=2, padding=1, initializer=_dcgan_init)
            self.bn1 = BatchNorm(2 * width)
            self.up2 = ConvTranspose2D(2 * width, channels, 4, stride=2, padding=1, initializer=_dcgan_init)
        else:
            self.fc1 = Linear(noise, 8 * width, initializer=init.he_normal)
            self.fc2 = Linear(8 * width, 16 * width, initializer=init.he_normal)
            self.out = Linear(16 * width, channels * size * size)

    def forward(self, z):
        n = z.shape[0]
        if self.arch == "conv":
            h = F.reshape(self.fc(z), (n, *self.base))
            h = F.relu(self.bn0(h))
            h = F.relu(self.bn1(self.up1(h)))
            return F.tanh(self.up2(h))
        h = F.relu(self.fc2(F.relu(self.fc1(z))))
        return F.reshape(F.tanh(self.out(h)), (n, self.channels, self.size, self.size))


class Discriminator(Module):
    def __init__(self, size: int = 28, channels: int = 1, width: int = 32, arch: str = "conv"):
        super().__init__()
        _check(arch, size)
        self.size, self.channels, self.arch = size, channels, arch
        if arch == "conv":
            self.conv1 = Conv2D(channels, width, 4, stride=2, padding=1, initializer=_dcgan_init)
            self.conv2 = Conv2D(width, 2 * width, 4, stride=2, padding=1, bias=False,
                                initializer=_dcgan_init)
            self.bn2 = BatchNorm(2 * width)
            self.feature_size = 2 * width * (size // 4) ** 2
        else:
            self.fc1 = Linear(channels * size * size, 16 * width)
            self.fc2 = Linear(16 * width, 8 * width)
            self.feature_size = 8 * width
        self.out = Linear(self.feature_size, 1)

    def features(self, x):
        """The last hidden layer (batch, feature_size): what feature matching compares."""
        if x.ndim != 4 or x.shape[1:] != (self.channels, self.size, self.size):
            raise ValueError(f"Discriminator expects (batch, {self.channels}, {self.size}, {self.size}) "
                             f"images, got {tuple(x.shape)}")
        if self.arch == "conv":
            h = F.leaky_relu(self.conv1(x), LEAK)
            return F.flatten(F.leaky_relu(self.bn2(self.conv2(h)), LEAK))
        h = F.leaky_relu(self.fc1(F.flatten(x)), LEAK)
        return F.leaky_relu(self.fc2(h), LEAK)

    def forward(self, x):
        """One logit per image (batch,): log D(x) / (1 - D(x))."""
        return F.reshape(self.out(self.features(x)), (x.shape[0],))


class GAN(Module):
    """A generator and a discriminator (registered in that order: the generator's parameters
    come first in the flat vector) and a fixed batch of noise for comparable samples."""

    def __init__(self, noise: int = 100, size: int = 28, channels: int = 1, width: int = 32,
                 arch: str = "conv", samples: int = 64):
        super().__init__()
        self.generator = Generator(noise, size, channels, width, arch)
        self.discriminator = Discriminator(size, channels, width, arch)
        self.noise = noise
        self.register_buffer("fixed_noise", self.sample_noise(samples))

    def sample_noise(self, n: int, xp=np):
        """z ~ N(0, I), (n, noise) float32, from the engine's generator."""
        z = _rng.generator().standard_normal((n, self.noise), dtype=np.float32)
        return z if xp is np else xp.asarray(z)

    def generate(self, n: int | None = None):
        """Images from fresh noise (or from the fixed noise when n is None), without a graph."""
        xp = backend.get_array_module(self.fixed_noise)
        z = self.fixed_noise if n is None else self.sample_noise(n, xp)
        with no_grad():
            return self.generator(z).data

    def discriminator_loss(self, real, fake, smoothing: float = 0.0):
        """(loss, mean D(real), mean D(fake)): cross-entropy with real targets 1 - smoothing and
        fake targets 0, the two halves averaged; `fake` is taken as a constant."""
        if not 0 <= smoothing < 0.5:
            raise ValueError(f"label smoothing must be in [0, 0.5), got {smoothing}")
        fake = fake.data if isinstance(fake, Tensor) else fake
        real_logits, fake_logits = self.discriminator(real), self.discriminator(fake)
        loss = (F.binary_cross_entropy_with_logits(real_logits, np.float32(1 - smoothing))
                + F.binary_cross_entropy_with_logits(fake_logits, np.float32(0))) * 0.5
        return loss, _mean_probability(real_logits), _mean_probability(fake_logits)

    def generator_loss(self, z, real=None, feature_matching: bool = False):
        """The non-saturating loss mean(-log D(G(z))), or with `feature_matching` the squared
        distance between the mean discriminator features of `real` and of G(z)."""
        fake = self.generator(z)
        if not feature_matching:
            return F.binary_cross_entropy_with_logits(self.discriminator(fake), np.float32(1))
        if real is None:
            raise ValueError("feature matching needs a batch of real images")
        with no_grad():
            target = self.discriminator.features(real).data.mean(axis=0)
        gap = F.mean(self.discriminator.features(fake), axis=0) - target
        return F.sum(gap * gap)


def _mean_probability(logits) -> float:
    xp = backend.get_array_module(logits.data)
    return float((xp.tanh(logits.data * 0.5) * 0.5 + 0.5).mean())


class GANOptimizers:
    """Two optimizers over one GAN: `generator` over the generator's slice of the flat vector,
    `discriminator` over the rest. To the training loop it is one optimizer: zero_grad() clears
    both gradients, step() updates the generator (the discriminator is stepped by the task with
    `step_discriminator`), `lr` is the generator's (setting it scales both rates alike), and the
    state dict holds both (keys prefixed 'generator/' and 'discriminator/')."""

    def __init__(self, gan: GAN, make):
        """`make(flat_parameters, player_name)` builds one player's optimizer."""
        flat = gan.flat()
        count = len(gan.generator.parameters())
        if not all(name.startswith("generator.") for name in flat.names[:count]):
            raise ValueError("GANOptimizers needs the generator's parameters first in the flat vector")
        size = sum(int(np.prod(shape)) for shape in flat.shapes[:count])
        self.model_flat = flat
        self.flat = FlatParameters(flat.data[:size], flat.grad[:size], flat.names[:count],
                                   flat.shapes[:count], flat.parameters[:count])
        rest = FlatParameters(flat.data[size:], flat.grad[size:], flat.names[count:], flat.shapes[count:],
                              flat.parameters[count:])
        self.generator, self.discriminator = make(self.flat, "generator"), make(rest, "discriminator")

    @property
    def lr(self) -> float:
        return self.generator.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.discriminator.lr *= value / self.generator.lr
        self.generator.lr = value

    @property
    def steps(self) -> int:
        return self.generator.steps

    def zero_grad(self) -> None:
        self.model_flat.zero_grad()

    def step(self) -> None:
        self.generator.step()

    def step_discriminator(self, loss) -> None:
        """Backpropagate the discriminator's loss and update the discriminator alone."""
        self.zero_grad()
        loss.backward()
        self.discriminator.step()

    def state_dict(self) -> dict:
        return {f"{player}/{key}": value for player in ("generator", "discriminator")
                for key, value in getattr(self, player).state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        parts = {"generator": {}, "discriminator": {}}
        for key, value in state.items():
            player, _, name = key.partition("/")
            if player not in parts:
                raise ValueError(f"optimizer state key {key!r} names no GAN player "
                                 f"(expected 'generator/...' or 'discriminator/...')")
            parts[player][name] = value
        for player, part in parts.items():
            getattr(self, player).load_state_dict(part)
