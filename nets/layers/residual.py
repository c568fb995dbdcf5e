"""Residual and dense image blocks, and small ResNet / DenseNet builders.

- ResidualBlock: two 3x3 convolutions and a shortcut (He et al. 2015), or the pre-activation
  ordering BN-ReLU-conv (He et al. 2016, "Identity mappings"). The shortcut is the identity when
  the shapes agree; otherwise a 1x1 strided projection ('projection', option B of the paper) or
  the parameter-free option A ('identity': subsample, then zero-pad the new channels).
- Stochastic depth (Huang et al. 2016): with `survival` p < 1 a block's residual branch is
  skipped for a whole training batch with probability 1 - p, and scaled by p at test time.
- DenseBlock: each layer (BN-ReLU-conv3x3, optionally after a BN-ReLU-conv1x1 bottleneck) sees
  the concatenation of all earlier feature maps and adds `growth_rate` channels (Huang et al.
  2017); DenseTransition halves the map between blocks.
"""
from __future__ import annotations

from .. import backend
from .. import functional as F
from .. import rng as _rng
from ..module import Module
from .conv import Conv2D
from .dense import Linear
from .normalization import BatchNorm
from .pooling import AvgPool2D

SHORTCUTS = ("auto", "identity", "projection")


def _identity(x):
    return x


def _check_survival(survival: float) -> None:
    if not 0 < survival <= 1:
        raise ValueError(f"survival probability must be in (0, 1], got {survival}")


class ResidualBlock(Module):
    """y = relu(shortcut(x) + BN(conv(relu(BN(conv(x)))))), or with `preactivation`
    y = shortcut(x) + conv(relu(BN(conv(relu(BN(x)))))). The first conv carries the stride.

    `batchnorm=False` leaves out the normalisation (the ReLU is then fused into the first conv).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "auto",
                 preactivation: bool = False, survival: float = 1.0, batchnorm: bool = True):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        if out_channels < in_channels and shortcut != "projection":
            raise ValueError(f"an identity shortcut cannot go from {in_channels} to {out_channels} "
                             f"channels; use shortcut='projection'")
        _check_survival(survival)
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.preactivation, self.survival = preactivation, survival
        reshapes = stride != 1 or in_channels != out_channels
        self.projects = shortcut == "projection" or (shortcut == "auto" and reshapes)
        fused = None if batchnorm or preactivation else "relu"
        self.conv1 = Conv2D(in_channels, out_channels, 3, stride, 1, bias=not batchnorm, activation=fused)
        self.conv2 = Conv2D(out_channels, out_channels, 3, 1, 1, bias=not batchnorm)
        norm = BatchNorm if batchnorm else (lambda channels: _identity)
        self.bn1 = norm(in_channels if preactivation else out_channels)
        self.bn2 = norm(out_channels)
        self.batchnorm = batchnorm
        if self.projects:
            self.project = Conv2D(in_channels, out_channels, 1, stride, bias=not batchnorm)
            self.bn_project = norm(out_channels) if not preactivation else _identity

    def _pad_shortcut(self, x):
        """Option A: every stride-th pixel, the extra channels zero."""
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        extra = self.out_channels - self.in_channels
        if extra:
            xp = backend.get_array_module(x.data)
            x = F.concat([x, xp.zeros((x.shape[0], extra, *x.shape[2:]), dtype=x.dtype)], axis=1)
        return x

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResidualBlock expects (batch, {self.in_channels}, height, width) "
                             f"input, got shape {tuple(x.shape)}")
        keep = 1.0
        if self.survival < 1:
            if self.training:
                keep = 1.0 if _rng.generator().random() < self.survival else 0.0
            else:
                keep = self.survival
        if self.preactivation:
            a = F.relu(self.bn1(x))
            shortcut = self.project(a) if self.projects else self._pad_shortcut(x)
            if keep == 0:
                return shortcut
            h = self.conv2(F.relu(self.bn2(self.conv1(a))))
            return shortcut + (h if keep == 1 else h * keep)
        shortcut = self.bn_project(self.project(x)) if self.projects else self._pad_shortcut(x)
        if keep == 0:
            return F.relu(shortcut)
        h = self.conv1(x)
        if self.batchnorm:
            h = F.relu(self.bn1(h))
        h = self.bn2(self.conv2(h))
        return F.relu(shortcut + (h if keep == 1 else h * keep))

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, stride={self.stride}, "
                f"shortcut={'projection' if self.projects else 'identity'}, "
                f"preactivation={self.preactivation}, survival={self.survival}")


class ResNet(Module):
    """A small ResNet for (batch, channels, h, w) images: a 3x3 stem, stages of residual blocks
    (each stage after the first halves the map with a stride-2 first block and widens to its
    width), global average pooling and a linear classifier (He et al. 2015, section 4.2: the CIFAR
    ResNets are widths (16, 32, 64) with n blocks per stage, depth 6n + 2).

    With `survival` < 1 stochastic depth follows the paper's linear rule: block l of L survives
    with probability 1 - l / L * (1 - survival).
    """

    def __init__(self, in_channels: int, classes: int, widths=(16, 32, 64), blocks=(3, 3, 3),
                 preactivation: bool = False, shortcut: str = "auto", survival: float = 1.0):
        super().__init__()
        if len(widths) != len(blocks) or not widths or min(blocks) < 1:
            raise ValueError(f"widths and blocks must be equally long lists of positive numbers, "
                             f"got {list(widths)} and {list(blocks)}")
        _check_survival(survival)
        self.preactivation = preactivation
        self.stem = Conv2D(in_channels, widths[0], 3, padding=1, bias=False)
        self.stem_bn = BatchNorm(widths[0])
        total, index, channels = sum(blocks), 0, widths[0]
        self.blocks = []
        for stage, (width, count) in enumerate(zip(widths, blocks)):
            for i in range(count):
                index += 1
                block = ResidualBlock(channels, width, stride=2 if stage > 0 and i == 0 else 1,
                                      shortcut=shortcut, preactivation=preactivation,
                                      survival=1 - index / total * (1 - survival))
                setattr(self, f"block{index}", block)
                self.blocks.append(block)
                channels = width
        self.head_bn = BatchNorm(channels) if preactivation else None
        self.fc = Linear(channels, classes)

    def forward(self, x):
        h = self.stem(x)
        if not self.preactivation:  # pre-activation blocks normalise their own input
            h = F.relu(self.stem_bn(h))
        for block in self.blocks:
            h = block(h)
        if self.preactivation:
            h = F.relu(self.head_bn(h))
        return self.fc(F.mean(h, axis=(2, 3)))


def resnet(depth: int, in_channels: int = 3, classes: int = 10, width: int = 16, **options) -> ResNet:
    """The CIFAR-style ResNet of a given depth 6n + 2 (20, 32, 44, 56, 110; 8 and 14 are quick)
    with widths (width, 2 width, 4 width)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"a CIFAR-style ResNet has depth 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}")
    n = (depth - 2) // 6
    return ResNet(in_channels, classes, (width, 2 * width, 4 * width), (n, n, n), **options)


class DenseLayer(Module):
    """BN-ReLU-conv3x3 producing `growth_rate` maps, after a BN-ReLU-conv1x1 to 4 * growth_rate
    maps when `bottleneck` (DenseNet-B)."""

    def __init__(self, in_channels: int, growth_rate: int, bottleneck: bool = False):
        super().__init__()
        self.bottleneck = bottleneck
        inner = 4 * growth_rate if bottleneck else in_channels
        if bottleneck:
            self.bn0 = BatchNorm(in_channels)
            self.conv0 = Conv2D(in_channels, inner, 1, bias=False)
        self.bn = BatchNorm(inner)
        self.conv = Conv2D(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        if self.bottleneck:
            x = self.conv0(F.relu(self.bn0(x)))
        return self.conv(F.relu(self.bn(x)))


class DenseBlock(Module):
    """`layers` DenseLayers; each reads every earlier map (the input's included) concatenated
    along the channels. Output: in_channels + layers * growth_rate channels, same height/width."""

    def __init__(self, in_channels: int, growth_rate: int, layers: int, bottleneck: bool = False):
        super().__init__()
        if layers < 1 or growth_rate < 1:
            raise ValueError(f"a dense block needs layers >= 1 and growth_rate >= 1, got {layers} "
                             f"and {growth_rate}")
        self.in_channels, self.growth_rate = in_channels, growth_rate
        self.out_channels = in_channels + layers * growth_rate
        self.layers = []
        for i in range(layers):
            layer = DenseLayer(in_channels + i * growth_rate, growth_rate, bottleneck)
            setattr(self, f"layer{i + 1}", layer)
            self.layers.append(layer)

    def forward(self, x):
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"DenseBlock expects (batch, {self.in_channels}, height, width) input, "
                             f"got shape {tuple(x.shape)}")
        for layer in self.layers:
            x = F.concat([x, layer(x)], axis=1)
        return x

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, growth_rate={self.growth_rate}"


class DenseTransition(Module):
    """BN-ReLU-conv1x1 to `out_channels`, then 2x2 average pooling."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.bn = BatchNorm(in_channels)
        self.conv = Conv2D(in_channels, out_channels, 1, bias=False)
        self.pool = AvgPool2D(2)

    def forward(self, x):
        return self.pool(self.conv(F.relu(self.bn(x))))


class DenseNet(Module):
    """A small DenseNet: 3x3 stem of 2 * growth_rate maps, dense blocks joined by transitions
    that halve the map and (with `compression` < 1) the channels, BN-ReLU, global average
    pooling, linear classifier."""

    def __init__(self, in_channels: int, classes: int, growth_rate: int = 12, blocks=(4, 4, 4),
                 bottleneck: bool = False, compression: float = 1.0):
        super().__init__()
        if not 0 < compression <= 1:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        channels = 2 * growth_rate
        self.stem = Conv2D(in_channels, channels, 3, padding=1, bias=False)
        self.stages = []
        for i, layers in enumerate(blocks):
            block = DenseBlock(channels, growth_rate, layers, bottleneck)
            setattr(self, f"dense{i + 1}", block)
            self.stages.append(block)
            channels = block.out_channels
            if i < len(blocks) - 1:
                out = max(1, int(channels * compression))
                transition = DenseTransition(channels, out)
                setattr(self, f"transition{i + 1}", transition)
                self.stages.append(transition)
                channels = out
        self.bn = BatchNorm(channels)
        self.fc = Linear(channels, classes)

    def forward(self, x):
        h = self.stem(x)
        for stage in self.stages:
            h = stage(h)
        return self.fc(F.mean(F.relu(self.bn(h)), axis=(2, 3)))
