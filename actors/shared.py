"""The learner's published state in one shared-memory segment: weights, version, step, stop flag,
actor heartbeats.

Publishing is one copy into the segment and a pull is one copy out, with no pickling and no
message per actor. The version is a sequence lock: odd while a publish is being written, so a
reader that saw it change (or odd) during its copy tries again and never keeps a torn vector.
Word-sized aligned stores are atomic on the platforms we run on, and x86 keeps stores in order.
"""
from __future__ import annotations

import time

import numpy as np

from nets import backend

_ALIGN = 64  # sections start at cache-line offsets
_HEADER_WORDS = 8
VERSION, STEP, STOP = 0, 1, 2  # header slots


def _aligned(nbytes: int) -> int:
    return -(-nbytes // _ALIGN) * _ALIGN


class SharedState:
    """Views into a segment laid out as: int64 header, float64 heartbeat per actor slot, float32
    weights. Build with `size(...)` bytes, then wrap the buffer in each process."""

    def __init__(self, buffer, n_params: int, n_slots: int):
        self.n_params, self.n_slots = n_params, n_slots
        offset = 0
        self.header = np.ndarray((_HEADER_WORDS,), np.int64, buffer, offset)
        offset += _aligned(self.header.nbytes)
        self.heartbeats = np.ndarray((n_slots,), np.float64, buffer, offset)
        offset += _aligned(self.heartbeats.nbytes)
        self.weights = np.ndarray((n_params,), np.float32, buffer, offset)

    @staticmethod
    def size(n_params: int, n_slots: int) -> int:
        return (_aligned(_HEADER_WORDS * 8) + _aligned(n_slots * 8) + n_params * 4)

    # -- learner side ------------------------------------------------------------------------
    def publish(self, weights: np.ndarray, step: int) -> int:
        """Copy `weights` in and bump the version; returns the new (even) version."""
        header = self.header
        header[VERSION] += 1  # odd: writing
        backend.copy_to_host(self.weights, weights)  # from a GPU learner: one device-to-host copy
        header[STEP] = step
        header[VERSION] += 1
        return int(header[VERSION])

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

    def pull(self, out: np.ndarray, known_version: int) -> int:
        """Copy the weights into `out` if the version moved past `known_version`; returns the
        version `out` now holds. Waits out a publish in progress."""
        header = self.header
        while True:
            before = int(header[VERSION])
            if before == known_version:
                return known_version
            if before & 1:
                time.sleep(0)  # a publish is being written; let the learner finish
                continue
            np.copyto(out, self.weights)
            if int(header[VERSION]) == before:
                return before

    def beat(self, slot: int) -> None:
        self.heartbeats[slot] = time.monotonic()

