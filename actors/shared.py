"""The learner's published state in one block of shared memory: a header (version, step, stop
flag, the published weight slots), per actor a heartbeat and the slots it acts from, a ring of
weight slots, and gradient slots for actors that compute gradients.

Weights are never copied. The learner's optimizer writes each step out of place into a free weight
slot (`next_weights`, `Optimizer.step(into=...)`), and publishing it only rewrites the header. An
actor takes the newest slot (`acquire`) and rebinds its network's parameters to it
(`FlatParameters.rebind`). (A GPU learner steps on the device; its publish is one device-to-host
copy into a free slot.) A slot is never written while it is published or while an actor holds
it, so an actor acts from one complete set of weights for as long as it likes: there is room for
every actor to hold one slot (two with a target network) and the learner still finds a free one.

Torn reads: the header is a sequence lock (the version is odd while a publish is written, and a
reader that saw it change retries), and an actor's claim on a slot is checked against it. The
claim is a Dekker-style handshake: the actor stores its claim and then reads the version, the
learner stores the version and then reads the claims; x86 may let a load pass an earlier store,
so both put a full fence in between (`fence`) and at least one of them sees the other.
Word-sized aligned stores are atomic on the platforms we run on.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from nets import backend

_ALIGN = 64  # sections and slots start at cache-line offsets
_HEADER_WORDS = 8
VERSION, STEP, STOP, WEIGHTS, TARGET = range(5)  # header words; WEIGHTS, TARGET: slot or -1
NONE = -1


@intrinsic
def _fence_intrinsic(typingctx):
    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()
    return types.void(), codegen


@njit(cache=True)
def fence() -> None:
    """A full memory barrier (x86: a locked instruction): no load moves above an earlier store."""
    _fence_intrinsic()


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


@dataclass(frozen=True)
class Layout:
    """The sizes the learner and its actors agree on."""

    n_params: int
    n_actors: int
    targets: bool = False  # a target network is published with the weights (to gradient actors)
    gradients_per_actor: int = 0  # gradient slots per actor: max_in_flight for gradient actors

    @property
    def weight_slots(self) -> int:
        """Enough that a free slot always exists: each actor and the published state hold one
        (two with a target network), and a publish needs one more (two: new weights and target)."""
        per_holder = 2 if self.targets else 1
        return (self.n_actors + 1) * per_holder + per_holder

    @property
    def stride(self) -> int:
        """float32 elements from one slot to the next."""
        return _aligned(self.n_params * 4) // 4

    @property
    def nbytes(self) -> int:
        slots = self.weight_slots + self.n_actors * self.gradients_per_actor
        return (_aligned(_HEADER_WORDS * 8) + _aligned(self.n_actors * 8) + _aligned(self.n_actors * 16)
                + slots * self.stride * 4)


class SharedState:
    """Views into a block of `layout.nbytes` bytes, made in every process; the learner calls
    `initialize` once before any actor starts."""

    def __init__(self, buffer, layout: Layout):
        self.layout = layout
        n, stride = layout.n_actors, layout.stride
        offset = 0

        def section(shape, dtype):
            nonlocal offset
            view = np.ndarray(shape, dtype, buffer, offset)
            offset += _aligned(view.nbytes)
            return view

        self.header = section((_HEADER_WORDS,), np.int64)
        self.heartbeats = section((n,), np.float64)
        self.holding = section((n, 2), np.int64)  # per actor: (weights slot, target slot) or -1
        self._weights = section((layout.weight_slots, stride), np.float32)
        self.gradients = section((n * layout.gradients_per_actor, stride), np.float32)[:, :layout.n_params]
        self.weights = self._weights[:, :layout.n_params]
        self._target = None  # learner: the target vector last published (a new one is copied in)

    def initialize(self) -> None:
        self.header[WEIGHTS] = self.header[TARGET] = NONE
        self.holding[:] = NONE

    # -- learner side ------------------------------------------------------------------------
    def next_weights(self) -> np.ndarray:
        """A free weight slot, for the optimizer to write the next weights into."""
        return self.weights[self._free_slot()]

    def publish(self, weights: np.ndarray, step: int, target: np.ndarray | None = None) -> int:
        """Make `weights` (and the agent's `target` network) the newest. A vector in a slot (from
        `next_weights`) is published where it lies; any other (a GPU learner's) is copied into a
        free slot, and a target only when it is a new vector. Returns the new (even) version."""
        header = self.header
        slot = self._place(weights)
        target_slot = NONE
        if target is not None:
            target_slot = int(header[TARGET]) if target is self._target else self._place(target, slot)
            self._target = target
        header[VERSION] += 1  # odd: writing
        header[WEIGHTS], header[TARGET], header[STEP] = slot, target_slot, step
        header[VERSION] += 1
        fence()  # before the next _free_slot reads the actors' claims
        return int(header[VERSION])

    def _place(self, vector, *taken: int) -> int:
        slot = self.slot_of(vector)
        if slot is None:
            slot = self._free_slot(*taken)
            backend.copy_to_host(self.weights[slot], vector)  # a GPU vector: one device-to-host copy
        return slot

    def slot_of(self, vector) -> int | None:
        """The weight slot `vector` is, or None (also for a GPU vector)."""
        if not isinstance(vector, np.ndarray):
            return None
        address = vector.__array_interface__["data"][0] - self._weights.__array_interface__["data"][0]
        slot, rest = divmod(address, self.layout.stride * 4)
        if rest == 0 and 0 <= slot < self.layout.weight_slots and vector.shape == (self.layout.n_params,):
            return slot
        return None

    def _free_slot(self, *taken: int) -> int:
        busy = {int(self.header[WEIGHTS]), int(self.header[TARGET]), *self.holding.ravel().tolist(),
                *taken}
        return next(slot for slot in range(self.layout.weight_slots) if slot not in busy)

    def release(self, actor: int) -> None:
        """Free the slots a dead actor held (before its replacement starts)."""
        self.holding[actor] = NONE

    def request_stop(self) -> None:
        self.header[STOP] = 1

    # -- actor side --------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self.header[VERSION])

    @property
    def step(self) -> int:
        return int(self.header[STEP])

    @property
    def stopping(self) -> bool:
        return bool(self.header[STOP])

    def acquire(self, actor: int) -> tuple[int, np.ndarray, np.ndarray | None]:
        """(version, weights, target or None) of the newest publish, held by `actor` until its
        next `acquire`: the learner writes neither while the actor holds them. Waits out a
        publish in progress."""
        header, holding = self.header, self.holding[actor]
        while True:
            version = int(header[VERSION])
            if version & 1:
                time.sleep(0)  # a publish is being written; let the learner finish
                continue
            slot, target = int(header[WEIGHTS]), int(header[TARGET])
            holding[0], holding[1] = slot, target
            fence()  # the claim is visible before the version is read again
            if int(header[VERSION]) == version:  # no publish since: the learner sees the claim
                return version, self.weights[slot], None if target == NONE else self.weights[target]

    def gradient(self, actor: int, index: int) -> np.ndarray:
        """An actor's `index`-th gradient slot (index < layout.gradients_per_actor)."""
        return self.gradients[actor * self.layout.gradients_per_actor + index]

    def beat(self, actor: int) -> None:
        self.heartbeats[actor] = time.monotonic()
