"""TensorBoard events with CleanRL's tag names.

Per-update values (losses, gradient norms, policy lag) are averaged over a short window
(`Window`) and written once per window at the global step where it closed: one tensorboardX
scalar costs ~40 us, more than a CartPole env step. Episodes are rarer and are written one point
each (`charts/episodic_return` at the step the episode ended), as CleanRL and SB3 write them, so
curves overlay those libraries' curves.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np


class EventWriter:
    """tensorboardX SummaryWriter (imported on first use: it is slow to import) for one folder."""

    def __init__(self, logdir: str, flush_secs: int = 5):
        from tensorboardX import SummaryWriter

        self.writer = SummaryWriter(logdir, flush_secs=flush_secs)

    def scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def histograms(self, module, step: int) -> None:
        """weights/<name> and biases/<name> for every parameter of `module`."""
        for name, parameter in module.named_parameters():
            group = "biases" if name.rsplit(".", 1)[-1].startswith("bias") else "weights"
            self.writer.add_histogram(f"{group}/{name}", np.asarray(parameter.data), step)

    def text(self, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, 0)

    def close(self) -> None:
        self.writer.close()


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
