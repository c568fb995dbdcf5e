"""Energy-based models: a restricted Boltzmann machine with binary units, trained by contrastive
divergence (CD-k, Hinton 2002) or persistent CD (PCD, Tieleman 2008), and a deep belief network
made of stacked RBMs (Hinton, Osindero & Teh 2006) that is pre-trained greedily, one layer at a
time, then fine-tuned as a sigmoid MLP (the course slides' recipe; the Deep Learning Tutorials'
rbm.py and DBN.py).

The RBM's energy is E(v, h) = -b.v - c.h - v W h, its free energy
    F(v) = -b.v - sum_j softplus(c_j + (v W)_j),
and the log-likelihood gradient is E_data[-dF/dtheta] - E_model[-dF/dtheta]. `cd_loss` returns
mean F(v_data) - mean F(v_model) with the model samples held constant: its gradient through the
engine's autodiff is exactly the CD / PCD update (positive statistics from p(h | v), as the
tutorials and Hinton's practical guide advise), so any optimizer and the shared training loop
apply. Gibbs sampling itself runs on plain arrays (no graph) with the engine's generator.
"""
from __future__ import annotations

import numpy as np

from . import backend, init
from . import functional as F
from . import rng as _rng
from .layers.dense import Linear
from .module import Module, Parameter
from .tensor import Tensor

_xp = backend.get_array_module


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _sigmoid(xp, x):
    return (xp.tanh(x * 0.5) * 0.5 + 0.5).astype(x.dtype, copy=False)


def bernoulli(p):
    """0/1 samples (p's dtype) with success probabilities p, drawn from the engine's generator."""
    draws = _rng.generator().random(p.shape, dtype=np.float32)
    return (backend.to_device(draws, backend.device_of(p)) < p).astype(p.dtype)


class RBM(Module):
    """Binary-binary RBM: weight (visible, hidden), visible_bias b, hidden_bias c.

    With `chains` > 0 the model keeps that many persistent Gibbs chains (`particles`, a buffer
    saved with the model) for PCD; with 0 it can only run CD-k (chains restart at the data).
    Weights start at U(+-4 sqrt(6 / (visible + hidden))), the tutorials' sigmoid initialisation.
    """

    def __init__(self, visible: int, hidden: int, chains: int = 0):
        super().__init__()
        if visible < 1 or hidden < 1 or chains < 0:
            raise ValueError(f"RBM needs visible, hidden >= 1 and chains >= 0, got {visible}, "
                             f"{hidden}, {chains}")
        self.visible, self.hidden, self.chains = visible, hidden, chains
        self.weight = Parameter(init.glorot_uniform((visible, hidden), gain=4.0))
        self.visible_bias = Parameter(init.zeros(visible))
        self.hidden_bias = Parameter(init.zeros(hidden))
        if chains:  # a fair coin per unit: the chains start far from any data
            self.register_buffer("particles", bernoulli(np.full((chains, visible), 0.5, np.float32)))

    def match_visible_bias(self, data) -> None:
        """Set b to log(p / (1 - p)) of the data's mean activation p (Hinton's practical guide,
        section 8): the visible units start at the data's marginals, so the first negative
        samples are not far denser than the data, which otherwise drives every hidden unit off."""
        data = self._here(data)
        self._check(data)
        p = _xp(data).clip(data.mean(axis=0), 1e-3, 1 - 1e-3)
        self.visible_bias.data[...] = _xp(p).log(p / (1 - p))

    def _here(self, x):
        """x's array on this model's device (host minibatches meet a GPU model here: the methods
        below are plain array code, which does not move arrays as ops do)."""
        return backend.to_device(_data(x), backend.device_of(self.weight.data))

    # -- conditionals and sampling (plain arrays, no graph) -------------------------------------
    def hidden_probs(self, v):
        """p(h = 1 | v) for v (n, visible)."""
        v = self._here(v)
        self._check(v)
        return _sigmoid(_xp(v), v @ self.weight.data + self.hidden_bias.data)

    def visible_probs(self, h):
        """p(v = 1 | h) for h (n, hidden)."""
        h = self._here(h)
        return _sigmoid(_xp(h), h @ self.weight.data.T + self.visible_bias.data)

    def gibbs(self, v, steps: int = 1):
        """`steps` rounds of v -> h -> v from visible states v: (last v sample, its probabilities)."""
        v = self._here(v)
        probs = v
        for _ in range(steps):
            probs = self.visible_probs(bernoulli(self.hidden_probs(v)))
            v = bernoulli(probs)
        return v, probs

    def reconstruct(self, v):
        """Mean-field reconstruction p(v | h = p(h | v)) (one deterministic up-down pass)."""
        return self.visible_probs(self.hidden_probs(v))

    # -- energies and training ------------------------------------------------------------------
    def free_energy(self, v):
        """F(v) per row of v (n, visible), differentiable in the parameters (and in v)."""
        self._check(v)
        hidden_term = F.sum(F.softplus(F.linear(v, self.weight, self.hidden_bias)), axis=1)
        return F.neg(F.linear(v, F.reshape(self.visible_bias, (self.visible, 1)))[:, 0] + hidden_term)

    def cd_loss(self, v, k: int = 1, persistent: bool = False):
        """mean F(v) - mean F(negative samples), the samples after k Gibbs steps from the data
        (CD-k) or from the persistent chains (PCD-k, which then advance). Its gradient is the
        CD / PCD estimate of the negative log-likelihood gradient."""
        if k < 1:
            raise ValueError(f"the number of Gibbs steps k must be >= 1, got {k}")
        v = self._here(v)
        self._check(v)
        if persistent:
            if not self.chains:
                raise ValueError("persistent CD needs chains: build the RBM with chains > 0")
            negative, _ = self.gibbs(self.particles, k)
            self.particles[...] = negative
        else:
            negative, _ = self.gibbs(v, k)
        return F.mean(self.free_energy(v)) - F.mean(self.free_energy(negative))

    def reconstruction_error(self, v) -> float:
        """Mean over rows of the cross-entropy of v under its mean-field reconstruction (the
        tutorials' monitor for CD; it is not the training objective)."""
        v = self._here(v)
        xp = _xp(v)
        p = xp.clip(self.reconstruct(v), 1e-7, 1 - 1e-7)
        return float(-(v * xp.log(p) + (1 - v) * xp.log(1 - p)).sum(axis=1).mean())

    def pseudo_likelihood(self, v, rng: np.random.Generator) -> float:
        """Stochastic pseudo-log-likelihood per row of binary v: visible * log sigmoid(F(v with
        one random bit flipped) - F(v)), one random bit per row (the tutorials' PCD monitor)."""
        v = self._here(v)
        xp = _xp(v)
        binary = (v > 0.5).astype(v.dtype)
        flipped = binary.copy()
        rows, bits = xp.arange(len(v)), xp.asarray(rng.integers(0, self.visible, len(v)))
        flipped[rows, bits] = 1 - flipped[rows, bits]
        gap = _data(self.free_energy(flipped)) - _data(self.free_energy(binary))
        return float(self.visible * -xp.logaddexp(0, -gap).mean())

    def _check(self, v) -> None:
        if v.ndim != 2 or v.shape[1] != self.visible:
            raise ValueError(f"RBM expects (batch, {self.visible}) visible states, got {tuple(v.shape)}")

    def extra_repr(self) -> str:
        return f"{self.visible}, {self.hidden}, chains={self.chains}"


class DBN(Module):
    """Stacked RBMs sizes[0] - sizes[1] - ... - sizes[-1] and a softmax classifier on top.

    Pre-training trains `rbms[i]` on `propagate(x, i)` (the mean-field activations of the layers
    below). As a network (`forward`) the DBN is the sigmoid MLP those RBMs define, each hidden
    layer sigmoid(x W + c), plus the classifier: fine-tuning trains it with backprop. The
    visible biases serve pre-training only.
    """

    def __init__(self, sizes, classes: int, chains: int = 0):
        super().__init__()
        sizes = list(sizes)
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"a DBN needs at least two positive layer sizes, got {sizes}")
        self.sizes = sizes
        self.rbms = []
        for i, (visible, hidden) in enumerate(zip(sizes[:-1], sizes[1:])):
            rbm = RBM(visible, hidden, chains)
            setattr(self, f"rbm{i + 1}", rbm)
            self.rbms.append(rbm)
        self.classifier = Linear(sizes[-1], classes)

    def propagate(self, x, layers: int):
        """The input seen by RBM number `layers` (0-based): x passed up through the ones below."""
        x = self.rbms[0]._here(x)
        for rbm in self.rbms[:layers]:
            x = rbm.hidden_probs(x)
        return x

    def forward(self, x):
        h = x
        for rbm in self.rbms:
            h = F.sigmoid(F.linear(h, rbm.weight, rbm.hidden_bias))
        return self.classifier(h)

