"""Define-by-run autodiff: a Tensor records the Function that made it; backward() replays in reverse.

A Function is one op: `forward(*arrays)` computes with plain array code (or a kernel) and keeps
what backward needs on `self`; `backward(*grads)` returns one gradient per input (None where an
input needs none). Gradients arrive already shaped like the inputs: ops that broadcast call
`unbroadcast`. The graph is freed as backward passes through it.
"""
from __future__ import annotations

import contextlib
import heapq
import itertools
import weakref
from typing import Iterator

import numpy as np

from . import backend


class NonFiniteError(FloatingPointError):
    """Raised in check mode where a NaN or Inf first appears."""


class _State:
    grad_enabled = True
    check = False
    numpy_errors: dict = {}  # NumPy's floating-point error handling from before check mode
    scopes: list[tuple[str, str]] = []  # (attribute name, class) of modules being called, outermost first


@contextlib.contextmanager
def no_grad():
    """Record no graph inside this block (acting, evaluation, weight updates)."""
    previous, _State.grad_enabled = _State.grad_enabled, False
    try:
        yield
    finally:
        _State.grad_enabled = previous


def is_grad_enabled() -> bool:
    return _State.grad_enabled


@contextlib.contextmanager
def check_mode(enabled: bool = True):
    """Verify every op's output, every gradient and the parameters after every optimizer step are
    finite; name the op and layer, or the parameter, of the first NaN/Inf (after Theano's
    NanGuardMode). Costs one reduction per op, so it is opt-in."""
    previous = _State.check
    set_check_mode(enabled)
    try:
        yield
    finally:
        set_check_mode(previous)


def set_check_mode(enabled: bool) -> None:
    """Turn check mode on or off. While on, NumPy's overflow and invalid-value warnings are off:
    the check's error names where the NaN/Inf came from, the warning only that one did."""
    if enabled and not _State.check:
        _State.numpy_errors = np.seterr(over="ignore", invalid="ignore", divide="ignore")
    elif not enabled and _State.check:
        np.seterr(**_State.numpy_errors)
    _State.check = enabled


def is_check_mode() -> bool:
    return _State.check


@contextlib.contextmanager
def scope(label: str, kind: str):
    """Name the layer an op runs in, for check-mode errors (Module.__call__ enters one)."""
    _State.scopes.append((label, kind))
    try:
        yield
    finally:
        _State.scopes.pop()


def _check_finite(array, what: str) -> None:
    xp = backend.get_array_module(array)
    if array.dtype.kind == "f" and not bool(xp.isfinite(array).all()):
        bad = "NaN" if bool(xp.isnan(array).any()) else "Inf"
        if _State.scopes:
            path = ".".join(label for label, _ in _State.scopes if label) or "<model>"
            layer = f"layer {path} ({_State.scopes[-1][1]})"
        else:
            layer = "no layer"
        raise NonFiniteError(f"{bad} first appeared in {what}, in {layer}")


class Tensor:
    """An array (`data`), its gradient (`grad`) and the Function that produced it (`creator`)."""

    __array_priority__ = 100  # make `ndarray + Tensor` call Tensor.__radd__ (NumPy)
    __array_ufunc__ = None  # ... and `cupy.ndarray + Tensor` (CuPy defers only to this)
    __slots__ = ("data", "grad", "creator", "requires_grad", "name", "__weakref__")

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        self.data = data
        self.grad = None
        self.creator: Function | None = None
        self.requires_grad = requires_grad
        self.name = name

    # -- array-like surface --------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    dtype = property(lambda self: self.data.dtype)
    size = property(lambda self: self.data.size)

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        label = f", name={self.name!r}" if self.name else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{label})"

    def numpy(self) -> np.ndarray:
        return backend.to_host(self.data)

    def item(self) -> float:
        return float(self.data.reshape(()))

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    # -- autodiff ------------------------------------------------------------------------
    def gradient_buffer(self):
        """An array an op may add this tensor's gradient into in place, or None: only a
        Parameter's preallocated gradient is one (nets/module.py)."""
        return None

    def _accumulate(self, g) -> None:
        # Out of place: `g` may be shared with another input's gradient (add returns the same array).
        self.grad = g if self.grad is None else self.grad + g

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf that requires grad, then free the graph."""
        if grad is None:
            grad = backend.get_array_module(self.data).ones_like(self.data)
        self._accumulate(grad)
        if self.creator is None:
            return
        pending = {id(self): self}  # intermediates holding a gradient, alive until their creator runs
        for fn in _reverse_topological(self.creator):
            outputs = [ref() for ref in fn.outputs]
            grads = [None if o is None else o.grad for o in outputs]
            for o in outputs:  # intermediate gradients are not kept
                if o is not None:
                    o.grad = None
                    pending.pop(id(o), None)
            if all(g is None for g in grads):
                fn.release()
                continue
            if len(grads) > 1:  # multi-output ops get zeros for outputs nobody used
                grads = [g if g is not None else fn.xp.zeros(shape, dtype)
                         for g, (shape, dtype) in zip(grads, fn.output_specs)]
            input_grads = fn.backward(*grads)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for x, g in zip(fn.inputs, input_grads):
                if g is None or not x.requires_grad:
                    continue
                if _State.check:
                    _check_finite(g, f"the gradient of {type(fn).__name__}")
                x._accumulate(g)
                if x.creator is not None:
                    pending[id(x)] = x
            fn.release()

    # -- operators (implemented in nets.functional) ----------------------------------------
    def __add__(self, other): return _f().add(self, other)
    def __radd__(self, other): return _f().add(other, self)
    def __sub__(self, other): return _f().sub(self, other)
    def __rsub__(self, other): return _f().sub(other, self)
    def __mul__(self, other): return _f().mul(self, other)
    def __rmul__(self, other): return _f().mul(other, self)
    def __truediv__(self, other): return _f().div(self, other)
    def __rtruediv__(self, other): return _f().div(other, self)
    def __neg__(self): return _f().neg(self)
    def __pow__(self, exponent): return _f().pow(self, exponent)
    def __matmul__(self, other): return _f().matmul(self, other)
    def __rmatmul__(self, other): return _f().matmul(other, self)
    def __getitem__(self, index): return _f().getitem(self, index)

    def reshape(self, *shape): return _f().reshape(self, shape[0] if len(shape) == 1 else shape)
    def transpose(self, *axes): return _f().transpose(self, axes or None)
    T = property(lambda self: _f().transpose(self, None))
    def sum(self, axis=None, keepdims=False): return _f().sum(self, axis, keepdims)
    def mean(self, axis=None, keepdims=False): return _f().mean(self, axis, keepdims)
    def max(self, axis=None, keepdims=False): return _f().max(self, axis, keepdims)


def _f():
    from . import functional  # functional imports this module; resolve the cycle lazily
    return functional


def _reverse_topological(root: "Function") -> Iterator["Function"]:
    """Functions reachable from `root`, newest generation first, so that each runs only after
    every function that consumes its outputs (Chainer's ordering)."""
    heap, seen = [(-root.generation, 0, root)], {id(root)}
    tiebreak = itertools.count(1)
    while heap:
        fn = heapq.heappop(heap)[2]
        for x in fn.inputs:
            parent = x.creator
            if parent is not None and id(parent) not in seen:
                seen.add(id(parent))
                heapq.heappush(heap, (-parent.generation, next(tiebreak), parent))
        yield fn


class Function:
    """One differentiable op. Subclasses define forward(*arrays) and backward(*grads)."""

    inputs: tuple[Tensor, ...] = ()
    outputs: tuple = ()
    generation = 0  # 1 + the newest generation among the inputs' creators

    def __call__(self, *args):
        inputs = tuple(a if isinstance(a, Tensor) else Tensor(a) for a in args)
        result = self.forward(*backend.same_device([t.data for t in inputs]))
        multi = isinstance(result, tuple)
        arrays = result if multi else (result,)
        if _State.check:
            for array in arrays:
                _check_finite(array, f"the output of {type(self).__name__}")
        needs_grad = _State.grad_enabled and any(t.requires_grad for t in inputs)
        outs = tuple(Tensor(a, requires_grad=needs_grad) for a in arrays)
        if needs_grad:
            self.generation = 1 + max(
                (t.creator.generation for t in inputs if t.creator is not None), default=0)
            self.inputs = inputs
            self.outputs = tuple(weakref.ref(o) for o in outs)
            if multi:
                self.xp = backend.get_array_module(arrays[0])
                self.output_specs = [(a.shape, a.dtype) for a in arrays]
            for o in outs:
                o.creator = self
        return outs if multi else outs[0]

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *grads):
        raise NotImplementedError

    def release(self) -> None:
        """Drop references to inputs and saved arrays so the graph can be freed."""
        self.__dict__.clear()


def unbroadcast(grad, shape):
    """Sum `grad` down to `shape`, undoing NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad
