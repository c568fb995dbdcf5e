"""A model's gradient computation replayed as one CUDA graph.

A small network's training step on the GPU is bound by launches, not arithmetic: each CuPy call
costs ~20 us of host time (measured on an H200: ~19 us an elementwise call, 21-24 us a product)
against a few microseconds of GPU work. Captured once into a CUDA graph, the step's hundred-odd
launches become one (`cudaGraphLaunch`), with no Python between them.

    gradients = nets.CapturedGradients(model, lambda x, y: F.softmax_cross_entropy(model(x), y))
    loss, = gradients(x, y)      # model.flat().grad now holds d loss / d parameters
    optimizer.step()

A call zeroes the model's gradient, runs `loss_fn(*inputs)` on the inputs moved to the model's
device and backpropagates its loss (a Tensor, or the first of a tuple whose other items, Tensors
or arrays, are returned too as arrays, e.g. TD errors). On the CPU, and on the GPU where capture
fails, that is all it does. On the GPU, for each input signature (shapes and dtypes): the first
call runs eagerly (kernels compile, cuBLAS and the pools warm up), the second is captured and the
two after it are each replayed and checked against an eager run of the same inputs, whose results
are the ones returned; after that every call copies its inputs into the graph's own input arrays
and replays it.

What a replay cannot see changes: numbers read on the host inside `loss_fn` are fixed at capture
(pass anything that changes between calls as an input array; constants are fine), and so is
random state; and it reads every array where it was at capture: another network the loss reads (a
target network) must be updated in place, not moved to new arrays (the model's own parameters may
move: that is a new capture). A capture that fails (a host read inside `loss_fn`, an op CUDA graphs
refuse) or a check that differs falls back to eager calls, with one warning that says why. Outside
the graph stay what reads the host: clipping by the gradient's norm and the optimizer step (Adam's
step size changes every step).

A replay returns the same output arrays each time, overwritten by the next call: copy what you
keep. Temporaries made during capture come from a memory pool of the graph's own, so no array
made afterwards can sit where a replay writes; scratch buffers are not shared with eager ops
for the same reason (kernels/workspace.unpooled).
"""
from __future__ import annotations

import warnings

import numpy as np

from . import backend
from .kernels import workspace
from .tensor import Tensor

CHECKED_REPLAYS = 2  # replays compared with an eager run before a graph is trusted
MAX_GRAPHS = 4  # input signatures captured by default; each graph holds its own memory, further ones run eagerly
_TOLERANCE = 1e-4  # relative to an array's largest magnitude: the same kernels in the same order


class CapturedGradients:
    """`gradients(*inputs)` -> `(loss, *extras)` arrays, `model.flat().grad` filled (see module)."""

    def __init__(self, model, loss_fn, capture: bool = True, max_graphs: int = MAX_GRAPHS):
        self.model, self.loss_fn, self.max_graphs = model, loss_fn, max_graphs
        self.device = backend.device_of(model.flat().data)
        self._graphs = _CudaGraphs() if capture and self.device == "gpu" else None  # tests pass their own
        self._plans: dict[tuple, _Plan] = {}  # never dropped: a graph's memory must outlive its arrays
        self.eager_reason = None if self._graphs else "capture=False" if not capture else "no GPU"

    @property
    def replaying(self) -> bool:
        """True while some input signature replays a checked graph."""
        return self.eager_reason is None and any(plan.checks_left == 0 for plan in self._plans.values())

    def __call__(self, *inputs):
        signature = _signature(inputs)  # checked in every mode: what runs on the CPU runs on a GPU
        if self.eager_reason is not None:
            return self._run(inputs)
        flat = self.model.flat()
        key = signature + (_address(flat.data), _address(flat.grad))
        plan = self._plans.get(key)
        if plan is None:  # first sight (or the parameters moved: the graph's addresses are stale)
            if len(self._plans) >= self.max_graphs:
                return self._run(inputs)
            plan = self._plans[key] = _Plan(inputs, self.device)
        plan.load(inputs)
        if plan.graph is None and plan.warm:
            try:
                plan.graph = self._graphs.capture(lambda: self._run(plan.inputs))
            except Exception as error:  # noqa: BLE001 - any refusal means eager calls
                return self._fall_back(f"capture failed ({type(error).__name__}: {error})", plan)
        if plan.graph is None:  # warm-up
            plan.warm = True
            return self._run(plan.inputs)
        if plan.checks_left == 0:
            plan.graph.launch()
            return plan.graph.outputs
        return self._checked_replay(plan)

    def _run(self, inputs):
        inputs = [backend.to_device(x, self.device) for x in inputs]  # the graph's own are there
        self.model.zero_grad()
        result = self.loss_fn(*inputs)
        loss, extras = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        loss.backward()
        return tuple(x.data if isinstance(x, Tensor) else x for x in (loss, *extras))

    def _checked_replay(self, plan):
        buffers = [b for _, b in self.model.named_buffers()]  # e.g. running statistics: update once
        before = [b.copy() for b in buffers]
        plan.graph.launch()
        grad = self.model.flat().grad
        replayed = [x.copy() for x in (*plan.graph.outputs, grad)]
        for b, value in zip(buffers, before):
            b[...] = value
        eager = self._run(plan.inputs)
        for name, got, want in zip(["the loss", *(f"output {i}" for i in range(1, len(eager))),
                                    "the gradient"], replayed, (*eager, grad)):
            if not _close(got, want):
                return self._fall_back(f"a replay's {name} differs from an eager run's (a host "
                                       f"number or random state inside loss_fn?)", plan, eager)
        plan.checks_left -= 1
        return eager

    def _fall_back(self, reason: str, plan, result=None):
        self.eager_reason = reason
        warnings.warn(f"CapturedGradients: {reason}; running eagerly", RuntimeWarning, stacklevel=3)
        return self._run(plan.inputs) if result is None else result


class _Plan:
    """One input signature: the graph's input arrays, its graph, and how many checks are left."""

    def __init__(self, inputs, device: str):
        xp = backend.xp_for(device)
        self.inputs = tuple(xp.empty(x.shape, x.dtype) for x in inputs)
        self.warm, self.graph, self.checks_left = False, None, CHECKED_REPLAYS

    def load(self, inputs) -> None:
        for into, x in zip(self.inputs, inputs):
            if backend.device_of(into) == "gpu" and backend.device_of(x) == "cpu":
                into.set(np.ascontiguousarray(x))
            else:
                into[...] = x


class _CudaGraphs:
    def capture(self, run):
        return _CudaGraph(run)


class _CudaGraph:
    """`run()` captured on a stream of its own, into memory of its own; `outputs` are run's."""

    def __init__(self, run):
        cp = backend.cupy_module()
        self.pool = cp.cuda.MemoryPool()  # kept as long as the graph: its addresses are baked in
        stream = cp.cuda.Stream(non_blocking=True)
        with cp.cuda.using_allocator(self.pool.malloc), stream, workspace.unpooled():
            stream.begin_capture()
            try:
                self.outputs = run()
            except BaseException:
                try:
                    stream.end_capture()
                except Exception:  # noqa: BLE001 - an invalidated capture may refuse to end
                    pass
                raise
            self._graph = stream.end_capture()

    def launch(self) -> None:
        self._graph.launch()  # on the current stream, after whatever was queued on it


def _signature(inputs) -> tuple:
    for x in inputs:
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise TypeError(f"CapturedGradients takes arrays, not {type(x).__name__}: pass a number "
                            "that changes between calls as an array, and keep constants in loss_fn")
    return tuple((x.shape, x.dtype.str) for x in inputs)


def _address(x) -> int:
    return x.data.ptr if backend.device_of(x) == "gpu" else x.ctypes.data


def _close(got, want) -> bool:
    xp = backend.get_array_module(want)
    scale = float(xp.abs(want).max()) if want.size else 0.0
    return got.shape == want.shape and bool(xp.all(xp.abs(got - want) <= _TOLERANCE * scale + 1e-7))
