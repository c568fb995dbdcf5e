"""TensorBoard events with CleanRL's tag names.

Per-update values (losses, gradient norms, policy lag) are averaged over a short window
(`Window`) and written once per window at the global step where it closed: one tensorboardX
scalar costs ~40 us, more than a CartPole env step. Episodes are rarer and are written one point
each (`charts/episodic_return` at the step the episode ended), as CleanRL and SB3 write them, so
curves overlay those libraries' curves.
"""
from __future__ import annotations

import logging
import sys
from collections import defaultdict

import numpy as np

from nets import backend

HISTOGRAM_RANGE = 1e12  # tensorboardX's histogram bins end here; it raises on values all beyond


class _GuardedFile:
    """tensorboardX's event file, whose first OSError (a full disk) is kept instead of raised;
    later events are dropped."""

    def __init__(self, events_file):
        self.events_file, self.error = events_file, None

    def write_event(self, event) -> None:
        self._guard(self.events_file.write_event, event)

    def flush(self) -> None:
        self._guard(self.events_file.flush)

    def close(self) -> None:
        try:
            self.events_file.close()  # closes the file even when its last flush fails
        except OSError as error:
            self.error = self.error or error

    def _guard(self, call, *args) -> None:
        if self.error is None:
            try:
                call(*args)
            except OSError as error:
                self.error = error


def _summary_writer_class():
    """tensorboardX's SummaryWriter, imported without PyTorch where it is not loaded yet:
    tensorboardX imports it when it can (a second at every run's start) only to recognise torch
    tensors, which workbench never passes. A None in sys.modules makes that import fail."""
    if "torch" in sys.modules:
        from tensorboardX import SummaryWriter
        return SummaryWriter
    sys.modules["torch"] = None
    try:
        from tensorboardX import SummaryWriter
    finally:
        del sys.modules["torch"]
    return SummaryWriter


class EventWriter:
    """tensorboardX SummaryWriter (imported on first use: it is slow to import) for one folder.

    tensorboardX writes from a background thread: an OSError there would end the thread with a
    traceback, and the writer's next call would block forever on the thread's full queue. So its
    event file is a `_GuardedFile`, and the error it keeps is raised here, in the caller's thread."""

    def __init__(self, logdir: str, flush_secs: int = 5):
        self.writer = _summary_writer_class()(logdir, flush_secs=flush_secs)
        # it logs a warning for each NaN/Inf value it writes; training reports those itself
        logging.getLogger("tensorboardX.x2num").setLevel(logging.ERROR)
        file_writer = self.writer.file_writer.event_writer  # the private names: see the docstring
        self._file = _GuardedFile(file_writer._ev_writer)  # noqa: SLF001
        file_writer._ev_writer = file_writer._worker._record_writer = self._file  # noqa: SLF001

    def check(self) -> None:
        """Raise the OSError that stopped the event file, if one did."""
        if self._file.error is not None:
            raise self._file.error

    def scalars(self, values: dict[str, float], step: int, wall_time: float | None = None) -> None:
        self.check()
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step, walltime=wall_time)

    def histograms(self, module, step: int) -> None:
        """weights/<name> and biases/<name> for every parameter of `module`, except those with a
        NaN/Inf or beyond HISTOGRAM_RANGE (a diverging run, which training reports)."""
        self.check()
        for name, parameter in module.named_parameters():
            values = backend.to_host(parameter.data)
            if not np.abs(values).max() < HISTOGRAM_RANGE:
                continue
            group = "biases" if name.rsplit(".", 1)[-1].startswith("bias") else "weights"
            self.writer.add_histogram(f"{group}/{name}", values, step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def close(self) -> None:
        self.writer.close()
        self.check()


class Window:
    """Means of values added since the last `drain()`, by tag."""

    def __init__(self):
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def add(self, tag: str, value: float) -> None:
        self.sums[tag] += value
        self.counts[tag] += 1

    def add_all(self, prefix: str, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.add(f"{prefix}/{name}", value)

    def drain(self) -> dict[str, float]:
        means = {tag: total / self.counts[tag] for tag, total in self.sums.items()}
        self.sums.clear()
        self.counts.clear()
        return means
