"""Optimizers over a model's flat parameter vector, gradient clipping and learning-rate schedules.

An optimizer updates `flat.data` from `flat.grad` in one fused kernel per step
(nets/kernels/optim.py). Its per-parameter state (moments, squared averages, gains) is a set of
float32 vectors as long as the parameter vector, named in `state`, so it can be checkpointed
(`state_dict`) and placed in shared memory (`share_state`) for asynchronous training.

Every rule uses the effective gradient d = g + weight_decay * p + l1 * sign(p), computed inside
the same pass (coupled L2 / L1 penalties, as in PyTorch's `weight_decay`).

Build the optimizer after moving the model to its device: it holds the model's flat vector.
`step(into=vector)` writes the update out of place and moves the parameters there.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

from . import backend
from .kernels import optim as K
from .module import FlatParameters, Module
from .tensor import NonFiniteError, is_check_mode

_f32 = np.float32


def _flat_of(params) -> FlatParameters:
    if isinstance(params, Module):
        return params.flat()
    if isinstance(params, FlatParameters):
        return params
    raise TypeError(f"params must be a Module or FlatParameters, not {type(params).__name__}")


def _non_negative(**values) -> None:
    for name, value in values.items():
        if not value >= 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


def _fraction(**values) -> None:
    for name, value in values.items():
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")


class Optimizer:
    """Base class. Subclasses name their state vectors and hyperparameters and pick a kernel.

    Attributes: `flat` (the FlatParameters updated), `lr` (a float; schedules set it), `steps`
    (updates applied so far), `state` (name -> state vector).
    """

    kernel = ""  # name of the update in nets/kernels/optim.py
    hyperparameters: tuple[str, ...] = ()  # float settings saved in state_dict, besides lr/decays
    structure: tuple[str, ...] = ()  # settings that decide which state vectors exist

    def __init__(self, params, lr: float, weight_decay: float = 0.0, l1: float = 0.0):
        _non_negative(lr=lr, weight_decay=weight_decay, l1=l1)
        self.flat = _flat_of(params)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.l1 = float(l1)
        self.steps = 0
        self._update = K.for_array(self.kernel, self.flat.data)
        xp = backend.get_array_module(self.flat.data)
        self.state = {name: xp.full(len(self.flat), value, dtype=backend.float32)
                      for name, value in self._state_init().items()}
        self._unused = xp.empty(0, dtype=backend.float32)  # stands in for absent state vectors

    def _state_init(self) -> dict[str, float]:
        """Name -> initial value of each state vector this configuration uses."""
        return {}

    def _kernel_args(self) -> tuple:
        """State vectors and float32 hyperparameters after (p, g, lr, weight_decay, l1)."""
        raise NotImplementedError

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def step(self, into=None) -> None:
        """Apply one update from the current gradient, over the parameters or, with `into` (a
        vector like them), out of place: the new parameters are written into `into` and the
        parameters move there (`FlatParameters.rebind`), leaving the vector they were in as it
        was, for whoever still reads it (actors acting with published weights, actors/shared.py).
        Out of place is still one pass over each element, a little slower than in place (1.2x
        on 678k parameters here: the destination is not in cache) and much cheaper than a copy."""
        self.steps += 1
        state, hyper = self._kernel_args()
        self._update(self.flat.data, self.flat.grad, into, *state, _f32(self.lr),
                     _f32(self.weight_decay), _f32(self.l1), *hyper)
        if into is not None:
            self.flat.rebind(data=into)
        if is_check_mode():
            self._check_parameters()

    def _check_parameters(self) -> None:
        """Check mode: name the first parameter this step made NaN/Inf (a finite gradient times
        a huge learning rate, an overflowing moment), before the next forward pass meets it."""
        xp, offset = backend.get_array_module(self.flat.data), 0
        for name, shape in zip(self.flat.names, self.flat.shapes):
            values = self.flat.data[offset:offset + math.prod(shape)]
            offset += values.size
            if not bool(xp.isfinite(values).all()):
                bad = "NaN" if bool(xp.isnan(values).any()) else "Inf"
                raise NonFiniteError(f"{bad} first appeared in parameter {name}, after "
                                     f"{type(self).__name__} step {self.steps} (lr {self.lr:g})")

    def _vector(self, name: str):
        return self.state.get(name, self._unused)

    # -- shared state ----------------------------------------------------------------------
    def share_state(self, make_buffer: Callable[[str, int], object], copy: bool = True) -> None:
        """Replace each state vector with `make_buffer(name, length)`, e.g. a float32 NumPy view of
        shared memory, so several processes update one set of statistics (A3C's shared RMSProp).

        The buffer must be a 1-D C-contiguous float32 array of `length` on the parameters'
        device. With `copy=True` the current values are copied in (the process that creates the
        buffers); pass `copy=False` to attach to buffers that already hold the shared values.
        The step count stays per instance.
        """
        buffers = {}
        for name, current in self.state.items():
            buffer = make_buffer(name, current.size)
            self._check_buffer(name, buffer, current)
            buffers[name] = buffer
        for name, buffer in buffers.items():
            if copy:
                buffer[...] = self.state[name]
            self.state[name] = buffer

    def _check_buffer(self, name, buffer, current) -> None:
        where = backend.get_array_module(current)
        if backend.get_array_module(buffer) is not where:
            raise TypeError(f"buffer for {name!r} must be a {where.__name__} array like the parameters")
        if buffer.dtype != current.dtype or buffer.shape != current.shape or not buffer.flags.c_contiguous:
            raise ValueError(f"buffer for {name!r} must be C-contiguous {current.dtype} of shape "
                             f"{current.shape}, got {buffer.dtype} {buffer.shape}"
                             f"{'' if buffer.flags.c_contiguous else ' (not contiguous)'}")

    # -- checkpointing ---------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Host arrays only (np.savez-able without pickle): the state vectors, `steps`, `type`,
        and every hyperparameter as a 0-d array."""
        out = {"type": np.array(type(self).__name__), "steps": np.array(self.steps, dtype=np.int64)}
        for name in ("lr", "weight_decay", "l1", *self.hyperparameters, *self.structure):
            out[name] = np.array(getattr(self, name))
        out.update({name: backend.to_host(v).copy() for name, v in self.state.items()})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Restore vectors, step count and hyperparameters (lr included) from `state_dict()`.

        Everything is checked before anything is changed; errors are one-line ValueErrors.
        """
        kind = type(self).__name__
        scalars = ("type", "steps", "lr", "weight_decay", "l1", *self.hyperparameters, *self.structure)
        expected = set(scalars) | set(self.state)
        missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
        saved_kind = str(state["type"]) if "type" in state else None
        if saved_kind is not None and saved_kind != kind:
            raise ValueError(f"optimizer state is for {saved_kind}, not {kind}")
        for name in self.structure:
            if name in state and state[name].item() != getattr(self, name):
                raise ValueError(f"optimizer state has {name}={state[name].item()!r}, this {kind} "
                                 f"has {name}={getattr(self, name)!r}")
        if missing or unexpected:
            raise ValueError(f"optimizer state does not fit {kind}: missing {missing}, "
                             f"unexpected {unexpected}")
        for name, vector in self.state.items():
            value = state[name]
            if value.shape != vector.shape:
                raise ValueError(f"optimizer state {name!r} has shape {value.shape}, this {kind} over "
                                 f"{len(self.flat)} parameters needs {vector.shape}")
        xp = backend.get_array_module(self.flat.data)
        for name, vector in self.state.items():
            vector[...] = xp.asarray(state[name], dtype=vector.dtype)
        self.steps = int(state["steps"])
        for name in ("lr", "weight_decay", "l1", *self.hyperparameters):
            setattr(self, name, float(state[name]))

    def __repr__(self):
        settings = ", ".join(f"{n}={getattr(self, n)!r}" for n in
                             ("lr", *self.hyperparameters, *self.structure, "weight_decay", "l1"))
        return f"{type(self).__name__}({settings}, parameters={len(self.flat)})"


class SGD(Optimizer):
    """Plain SGD, classical momentum or Nesterov momentum (PyTorch's formulation):
    v = momentum * v + d;  p -= lr * v   (Nesterov: p -= lr * (d + momentum * v))."""

    kernel = "sgd"
    hyperparameters = ("momentum",)
    structure = ("nesterov",)

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, l1: float = 0.0):
        _fraction(momentum=momentum)
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum, self.nesterov = float(momentum), bool(nesterov)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"velocity": 0.0} if self.momentum else {}

    def load_state_dict(self, state: dict) -> None:
        if "momentum" in state and (float(state["momentum"]) == 0) != (self.momentum == 0):
            raise ValueError(f"optimizer state has momentum={float(state['momentum'])}, this SGD has "
                             f"momentum={self.momentum}: one keeps a velocity vector, the other not")
        super().load_state_dict(state)

    def _kernel_args(self):
        return (self._vector("velocity"),), (_f32(self.momentum), self.nesterov)


class Adagrad(Optimizer):
    """Duchi et al. 2011: h += d^2;  p -= lr * d / (sqrt(h) + eps)."""

    kernel = "adagrad"
    hyperparameters = ("eps",)

    def __init__(self, params, lr: float, eps: float = 1e-8, weight_decay: float = 0.0,
                 l1: float = 0.0):
        self.eps = float(eps)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"sum_sq": 0.0}

    def _kernel_args(self):
        return (self.state["sum_sq"],), (_f32(self.eps),)


class AdaDelta(Optimizer):
    """Zeiler 2012: Eg = rho Eg + (1-rho) d^2;  delta = sqrt(Edx + eps) / sqrt(Eg + eps) * d;
    Edx = rho Edx + (1-rho) delta^2;  p -= lr * delta."""

    kernel = "adadelta"
    hyperparameters = ("rho", "eps")

    def __init__(self, params, lr: float = 1.0, rho: float = 0.95, eps: float = 1e-6,
                 weight_decay: float = 0.0, l1: float = 0.0):
        _fraction(rho=rho)
        self.rho, self.eps = float(rho), float(eps)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"grad_sq_avg": 0.0, "delta_sq_avg": 0.0}

    def _kernel_args(self):
        return ((self.state["grad_sq_avg"], self.state["delta_sq_avg"]),
                (_f32(self.rho), _f32(self.eps)))


class RMSProp(Optimizer):
    """Tieleman & Hinton 2012: ms = alpha * ms + (1 - alpha) * d^2, then

        p -= lr * d / (sqrt(ms) + eps)          eps_inside_sqrt=False (PyTorch, Keras)
        p -= lr * d / sqrt(ms + eps)            eps_inside_sqrt=True

    A3C (Mnih et al. 2016; ChainerRL's RMSpropAsync) uses the second form with alpha=0.99 and
    eps=0.1: `RMSProp(model, lr=7e-4, alpha=0.99, eps=0.1, eps_inside_sqrt=True)`, with the state
    shared between workers through `share_state`.
    `centered=True` also tracks mg = alpha * mg + (1 - alpha) * d and uses ms - mg^2 in place of
    ms (Graves 2013, with eps inside the root there).
    """

    kernel = "rmsprop"
    hyperparameters = ("alpha", "eps")
    structure = ("centered", "eps_inside_sqrt")

    def __init__(self, params, lr: float, alpha: float = 0.99, eps: float = 1e-8,
                 centered: bool = False, eps_inside_sqrt: bool = False,
                 weight_decay: float = 0.0, l1: float = 0.0):
        _fraction(alpha=alpha)
        self.alpha, self.eps = float(alpha), float(eps)
        self.centered, self.eps_inside_sqrt = bool(centered), bool(eps_inside_sqrt)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"square_avg": 0.0, **({"grad_avg": 0.0} if self.centered else {})}

    def _kernel_args(self):
        return ((self.state["square_avg"], self._vector("grad_avg")),
                (_f32(self.alpha), _f32(self.eps), self.centered, self.eps_inside_sqrt))


class Adam(Optimizer):
    """Kingma & Ba 2015, with bias correction:
    m = b1 m + (1-b1) d;  v = b2 v + (1-b2) d^2;  p -= lr * m_hat / (sqrt(v_hat) + eps),
    m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t), t = `steps`."""

    kernel = "adam"
    hyperparameters = ("beta1", "beta2", "eps")

    def __init__(self, params, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0, l1: float = 0.0):
        _fraction(beta1=beta1, beta2=beta2)
        self.beta1, self.beta2, self.eps = float(beta1), float(beta2), float(eps)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"m": 0.0, "v": 0.0}

    def _kernel_args(self):
        t = self.steps  # already counts this step
        step_size = self.lr / (1.0 - self.beta1 ** t)
        root2 = math.sqrt(1.0 - self.beta2 ** t)
        return ((self.state["m"], self.state["v"]),
                (_f32(self.beta1), _f32(self.beta2), _f32(self.eps), _f32(step_size), _f32(root2)))


class SignAdaptive(Optimizer):
    """Per-weight adaptive gains (Hinton, Neural Networks for Machine Learning, lecture 6c):
    where d has the sign of the previous step's d, gain += increase (additive); where the sign
    flips, gain *= decrease (multiplicative); a zero on either side leaves the gain alone. Gains
    start at 1 and stay within `gain_range`; the update is p -= lr * gain * d.
    The slides advise full batches or large minibatches, so that sign flips are not noise."""

    kernel = "sign_adaptive"
    hyperparameters = ("increase", "decrease", "min_gain", "max_gain")

    def __init__(self, params, lr: float, increase: float = 0.05, decrease: float = 0.95,
                 gain_range: tuple[float, float] = (0.1, 10.0), weight_decay: float = 0.0,
                 l1: float = 0.0):
        _non_negative(increase=increase)
        if not 0 < decrease <= 1:
            raise ValueError(f"decrease must be in (0, 1], got {decrease}")
        low, high = gain_range
        if not 0 < low <= 1 <= high:
            raise ValueError(f"gain_range must satisfy 0 < low <= 1 <= high, got {gain_range}")
        self.increase, self.decrease = float(increase), float(decrease)
        self.min_gain, self.max_gain = float(low), float(high)
        super().__init__(params, lr, weight_decay, l1)

    def _state_init(self):
        return {"gain": 1.0, "prev_grad": 0.0}

    def _kernel_args(self):
        return ((self.state["gain"], self.state["prev_grad"]),
                (_f32(self.increase), _f32(self.decrease), _f32(self.min_gain), _f32(self.max_gain)))


def sum_of_squares(vector) -> float:
    """The sum of a float32 vector's squares in one pass, accumulated in float64: NaN or Inf
    exactly where an element is (float32 values cannot overflow it)."""
    return float(K.for_array("sum_of_squares", vector)(vector))


def clip_grad_norm(params, max_norm: float) -> float:
    """Scale the flat gradient in place so its global L2 norm is at most `max_norm`.

    `params` is a Module, FlatParameters or Optimizer. Returns the norm before clipping. A
    non-finite norm is returned with the gradient left as it is (scaling would hide the NaN).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    flat = params.flat if isinstance(params, Optimizer) else _flat_of(params)
    norm = math.sqrt(sum_of_squares(flat.grad))
    if math.isfinite(norm) and norm > max_norm:
        flat.grad *= _f32(max_norm / norm)
    return norm


# -- learning-rate schedules --------------------------------------------------------------------
class _Schedule:
    """Sets `optimizer.lr`. state_dict() holds plain Python numbers (JSON-ready for checkpoint meta)."""

    _fields: tuple[str, ...] = ()

    def __init__(self, optimizer: Optimizer):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"a schedule drives an Optimizer, not {type(optimizer).__name__}")
        self.optimizer = optimizer

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._fields} | {"lr": self.optimizer.lr}

    def load_state_dict(self, state: dict) -> None:
        missing = sorted((set(self._fields) | {"lr"}) - set(state))
        if missing:
            raise ValueError(f"{type(self).__name__} state is missing {missing}")
        for name in self._fields:
            setattr(self, name, type(getattr(self, name))(state[name]))
        self.optimizer.lr = float(state["lr"])


class StepDecay(_Schedule):
    """lr = base_lr * gamma ** (count // step_size), where count is the number of `step()` calls."""

    _fields = ("base_lr", "count")

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float):
        super().__init__(optimizer)
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1, got {step_size}")
        self.step_size, self.gamma = int(step_size), float(gamma)
        self.base_lr, self.count = float(optimizer.lr), 0

    def step(self) -> float:
        self.count += 1
        self.optimizer.lr = self.base_lr * self.gamma ** (self.count // self.step_size)
        return self.optimizer.lr


class LinearDecay(_Schedule):
    """lr goes linearly from `start` to `end` over `steps` calls of `step()`, then stays at `end`
    (A3C anneals its learning rate to 0 this way). Sets lr = start on construction."""

    _fields = ("count",)

    def __init__(self, optimizer: Optimizer, start: float, end: float, steps: int):
        super().__init__(optimizer)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.start, self.end, self.steps = float(start), float(end), int(steps)
        self.count = 0
        optimizer.lr = self.start

    def step(self) -> float:
        self.count += 1
        fraction = min(self.count / self.steps, 1.0)
        self.optimizer.lr = self.start + (self.end - self.start) * fraction
        return self.optimizer.lr


class PlateauDecay(_Schedule):
    """Multiply lr by `factor` (never below `min_lr`) when the metric passed to `step(metric)` has
    not improved for more than `patience` calls. mode='min' for losses, 'max' for returns."""

    _fields = ("best", "bad_steps")

    def __init__(self, optimizer: Optimizer, factor: float = 0.5, patience: int = 10,
                 min_lr: float = 0.0, mode: str = "min"):
        super().__init__(optimizer)
        if not 0 < factor < 1:
            raise ValueError(f"factor must be in (0, 1), got {factor}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.factor, self.patience, self.min_lr, self.mode = float(factor), int(patience), float(min_lr), mode
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_steps = 0

    def step(self, metric: float) -> float:
        metric = float(metric)
        if metric < self.best if self.mode == "min" else metric > self.best:
            self.best, self.bad_steps = metric, 0
        else:
            self.bad_steps += 1
            if self.bad_steps > self.patience:
                self.optimizer.lr = max(self.optimizer.lr * self.factor, self.min_lr)
                self.bad_steps = 0
        return self.optimizer.lr
