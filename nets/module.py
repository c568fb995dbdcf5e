"""Modules: parameters registered by name, state dicts, and all parameters as one flat vector.

`Module.flat()` gathers every parameter of a model into one contiguous float32 vector (and one
for gradients) and makes each Parameter's `data` and `grad` views into them. Optimizers update
that vector in one fused pass; the actor system shares weights by rebinding a model's parameters
to another vector (`FlatParameters.rebind`), e.g. one in shared memory, without copying.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from . import backend
from .tensor import Tensor, is_check_mode, scope, _State


class Parameter(Tensor):
    """A trainable tensor. Its gradient buffer is preallocated and accumulated in place."""

    __slots__ = ()

    def __init__(self, data, name: str | None = None):
        super().__init__(data, requires_grad=True, name=name)
        self.grad = backend.get_array_module(data).zeros_like(data)

    def _accumulate(self, g) -> None:
        self.grad += g

    def gradient_buffer(self):
        """The gradient, for an op to add its part into in place (a product added by BLAS as it
        is made, kernels/dense.add_matmul); None in check mode, where each part is checked."""
        return None if is_check_mode() else self.grad


@dataclass
class FlatParameters:
    """One vector holding every parameter, one for their gradients, and where each one sits."""

    data: object
    grad: object
    names: list[str]
    shapes: list[tuple[int, ...]]
    parameters: list[Parameter]  # whose `data` and `grad` are views into the two vectors

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def rebind(self, data=None, grad=None) -> None:
        """Move the parameters (and/or their gradients) to other storage without copying: each
        Parameter's `data` becomes a view into `data`, its `grad` into `grad`. Another process's
        published weights or a gradient slot in shared memory becomes the model's own this way."""
        if data is not None:
            self.data = self._check(data, self.data, "data")
        if grad is not None:
            self.grad = self._check(grad, self.grad, "grad")
        offset = 0
        for p, shape in zip(self.parameters, self.shapes):
            n = p.data.size
            if data is not None:
                p.data = data[offset:offset + n].reshape(shape)
            if grad is not None:
                p.grad = grad[offset:offset + n].reshape(shape)
            offset += n

    def _check(self, vector, current, what: str):
        if vector.shape != current.shape or vector.dtype != current.dtype or not vector.flags.c_contiguous:
            raise ValueError(f"cannot rebind {what} to a {vector.dtype} vector of shape {vector.shape}: "
                             f"needs a contiguous {current.dtype} vector of shape {current.shape}")
        return vector

    def __len__(self) -> int:
        return self.data.size


class Module:
    """Base class: assign Parameters and Modules as attributes and they are registered."""

    training = True
    _label = ""  # attribute name under its parent, for check-mode messages

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_flat", None)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() first")
        for registry in (self._parameters, self._modules):
            registry.pop(name, None)
        if isinstance(value, (Parameter, Module)):  # a re-assigned buffer (`self.count += 1`) stays one
            self._buffers.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
            self._invalidate_flat()
        elif isinstance(value, Module):
            self._modules[name] = value
            object.__setattr__(value, "_label", name)
            self._invalidate_flat()
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """Non-trainable state saved in the state dict (e.g. batch-norm running statistics)."""
        self._buffers[name] = True
        object.__setattr__(self, name, array)

    def _invalidate_flat(self) -> None:
        object.__setattr__(self, "_flat", None)

    # -- calling -------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        if _State.check:
            with scope(self._label, type(self).__name__):
                return self.forward(*args, **kwargs)
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    # -- traversal -----------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        return (m for _, m in self.named_modules())

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for path, module in self.named_modules():
            for name, p in module._parameters.items():
                yield (f"{path}.{name}" if path else name), p

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for path, module in self.named_modules():
            for name in module._buffers:
                yield (f"{path}.{name}" if path else name), getattr(module, name)

    # -- the flat vector -------------------------------------------------------------------
    def flat(self) -> FlatParameters:
        """All parameters as one contiguous float32 vector (made once, then reused)."""
        if self._flat is not None:
            return self._flat
        named = list(self.named_parameters())
        if not named:
            raise ValueError(f"{type(self).__name__} has no parameters to flatten")
        xp = backend.get_array_module(named[0][1].data)
        total = sum(p.data.size for _, p in named)
        data = xp.empty(total, dtype=backend.float32)
        grad = xp.zeros(total, dtype=backend.float32)
        offset = 0
        for _, p in named:
            n = p.data.size
            data[offset:offset + n] = p.data.ravel()
            p.data = data[offset:offset + n].reshape(p.data.shape)
            p.grad = grad[offset:offset + n].reshape(p.data.shape)
            offset += n
        flat = FlatParameters(data, grad, [n for n, _ in named], [p.shape for _, p in named],
                              [p for _, p in named])
        for module in self.modules():  # a submodule flattened on its own would now be stale
            module._invalidate_flat()
        object.__setattr__(self, "_flat", flat)
        return flat

    def zero_grad(self) -> None:
        if self._flat is not None:
            self._flat.zero_grad()
        else:
            for p in self.parameters():
                p.grad.fill(0)

    def num_parameters(self) -> int:
        return sum(p.data.size for p in self.parameters())

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """Host copies of every parameter and buffer, by dotted name."""
        state = {name: backend.to_host(p.data).copy() for name, p in self.named_parameters()}
        state.update({name: backend.to_host(b).copy() for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into this model's parameters and buffers; names and shapes must match."""
        own_params = dict(self.named_parameters())
        own_buffers = dict(self.named_buffers())
        expected = set(own_params) | set(own_buffers)
        if strict:
            missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
            if missing or unexpected:
                raise KeyError(f"state does not fit {type(self).__name__}: missing {missing}, "
                               f"unexpected {unexpected}")
        for name, value in state.items():
            if name not in expected:
                continue
            target = own_params[name].data if name in own_params else own_buffers[name]
            if tuple(target.shape) != tuple(value.shape):
                raise ValueError(f"shape mismatch for {name!r}: checkpoint has {tuple(value.shape)}, "
                                 f"model expects {tuple(target.shape)}")
            xp = backend.get_array_module(target)
            target[...] = xp.asarray(value, dtype=target.dtype)

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to 'cpu' or 'gpu' (one call for the whole model)."""
        was_flat = self._flat is not None
        for module in self.modules():
            for p in module._parameters.values():
                p.data = backend.to_device(p.data, device)
                p.grad = backend.to_device(p.grad, device)
            for name in module._buffers:
                object.__setattr__(module, name, backend.to_device(getattr(module, name), device))
            module._invalidate_flat()
        if was_flat:
            self.flat()
        return self

    @property
    def device(self) -> str:
        params = self.parameters()
        return backend.device_of(params[0].data) if params else "cpu"

    def __repr__(self):
        children = "".join(f"\n  ({n}): " + repr(m).replace("\n", "\n  ") for n, m in self._modules.items())
        return f"{type(self).__name__}({self.extra_repr()}{children}{chr(10) if children else ''})"

    def extra_repr(self) -> str:
        return ""


class Sequential(Module):
    """Modules (or plain callables like `functional.relu`) applied in order."""

    def __init__(self, *layers):
        super().__init__()
        self.layers = list(layers)
        for i, layer in enumerate(layers):
            if isinstance(layer, Module):
                setattr(self, str(i), layer)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)
