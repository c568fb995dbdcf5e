"""The learner loop: take rollouts (or gradients), update, publish, supervise actors, log,
checkpoint.

Everything arriving together is learned from in one update and one publish: when the learner is
the bottleneck its batches grow instead of the queue and the policy lag. Where actors compute
gradients, an update clips and steps the optimizer with each in turn, as each of the A3C paper's
threads steps the shared weights with its own: no forward or backward pass in the learner.
"""
from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from agents import Agent, Gradient, Rollout, join
from logs import EventWriter, Window, format_duration, progress_line
from nets import backend, optim

RECENT_EPISODES = 100  # CartPole's "solved" is judged on the last 100 episodes
CHART_STATS = ("grad_norm", "learning_rate", "clip_range", "q_values", "action_std")  # update statistics that are not losses
NONFINITE_IN_A_ROW = 3  # updates with a NaN/Inf loss or gradient (each skipped) before the run stops
SQUARED_LOSSES = ("value_loss", "q_loss")  # never negative, so their growth measures divergence
# Steps of each env without a finished episode before the run says so: past any time limit
# Gymnasium's envs have but Atari's (27,000), whose first episodes end within ~1,000 (Pong's at -21).
NO_EPISODE_STEPS_PER_ENV = 10_000
EXPLODED = 1e4  # a squared loss this many times its first value means the run diverges (CartPole's
                # grow up to ~600 times as the returns grow)


@dataclass
class Progress:
    """The counters a checkpoint keeps, so that a resumed run continues them."""

    step: int = 0          # env steps learned from, all actors together
    updates: int = 0
    episodes: int = 0
    elapsed: float = 0.0   # seconds of training, over every session of the run
    recent_returns: deque = field(default_factory=lambda: deque(maxlen=RECENT_EPISODES))

    def mean_return(self) -> float | None:
        return float(np.mean(self.recent_returns)) if self.recent_returns else None

    def to_meta(self) -> dict:
        return {"step": self.step, "updates": self.updates, "episodes": self.episodes,
                "elapsed": self.elapsed, "recent_returns": list(self.recent_returns)}

    @classmethod
    def from_meta(cls, meta: dict) -> "Progress":
        return cls(step=int(meta["step"]), updates=int(meta["updates"]), episodes=int(meta["episodes"]),
                   elapsed=float(meta["elapsed"]),
                   recent_returns=deque(meta["recent_returns"], maxlen=RECENT_EPISODES))


class ActorFailure(RuntimeError):
    """An actor slot keeps dying before it sends anything (a broken env or config)."""


class Diverged(RuntimeError):
    """The weights became NaN/Inf, or the loss or gradient did in several updates in a row.
    Raised before those weights are published or checkpointed."""


class Learner:
    """Drives one run. `checkpoint(progress, periodic)` is called every `checkpoint_every` steps
    (periodic=True) and at the end (False); `events` receives TensorBoard scalars and
    histograms; `console` gets text lines."""

    def __init__(self, agent: Agent, transport, total_steps: int, *, progress: Progress | None = None,
                 events: EventWriter | None = None, console: Callable[[str], None] = print,
                 checkpoint: Callable[[Progress, bool], None] | None = None, checkpoint_every: int = 0,
                 histogram_every: int = 0, log_every: float = 2.0, scalar_every: float = 1.0,
                 supervise_every: float = 0.5, max_startup_failures: int = 3):
        self.agent, self.transport, self.total_steps = agent, transport, total_steps
        self.progress = progress or Progress()
        self.events, self.console, self.checkpoint = events, console, checkpoint
        self.checkpoint_every, self.histogram_every = checkpoint_every, histogram_every
        self.log_every, self.scalar_every, self.supervise_every = log_every, scalar_every, supervise_every
        self.max_startup_failures = max_startup_failures
        self.window = Window()
        # (step, return, length, wall time) to log: the time the update took it, not the write's,
        # which comes once a second (scalar_every) and would stack that second's episodes at its time
        self.finished_episodes: list[tuple[int, float, int, float]] = []
        self.startup_failures = [0] * transport.n_actors  # deaths in a row before a first rollout
        self.restarts = 0
        self.nonfinite = 0  # updates in a row with a NaN/Inf statistic
        self.loss_start: dict[str, float] = {}  # each squared loss in the first update (>= 1)
        self.exploded: set[str] = set()  # squared losses already warned about
        self.warnings: list[str] = []
        self.no_episode_steps = NO_EPISODE_STEPS_PER_ENV * transport.n_actors * transport.spec.envs_per_actor
        self.busy_seconds = 0.0  # updating and publishing, this session
        self._busy_logged = 0.0  # busy_seconds at the last progress line

    def run(self, should_stop: Callable[[Progress], bool] = lambda progress: False) -> str:
        """Train until `total_steps` or until `should_stop(progress)`; returns "finished" or
        "stopped". Actors are stopped and a final checkpoint is written either way."""
        p, transport = self.progress, self.transport
        begin = time.monotonic()
        base_elapsed = p.elapsed
        started = transport.start()
        self.console("started actors: " + ", ".join(f"{slot} ({where})"
                                                    for slot, where in enumerate(started)))
        self._publish()
        now = time.monotonic()
        self._last_scalars = p.step, now
        self._session = None  # (step, time) of this session's first update: ETAs leave start-up out
        next_log, next_scalars, next_supervise = now + self.log_every, now + self.scalar_every, now
        next_checkpoint = self._next_multiple(p.step, self.checkpoint_every)
        last_log_step, last_log_time = p.step, now
        outcome, pending = "finished", []
        try:
            while p.step < self.total_steps:
                if should_stop(p):
                    outcome = "stopped"
                    break
                pending += transport.receive(timeout=0.05)
                if pending and self.agent.ready(pending, transport.n_actors):
                    self.update(pending)  # an agent may wait for more (synchronous PPO: every actor's)
                    pending = []
                    self._session = self._session or (p.step, time.monotonic())
                now = time.monotonic()
                p.elapsed = base_elapsed + now - begin
                if now >= next_supervise:
                    self._supervise()
                    next_supervise = now + self.supervise_every
                if now >= next_scalars:
                    self._write_scalars(now)
                    next_scalars = now + self.scalar_every
                if now >= next_log:
                    self._progress_line(p.step - last_log_step, now - last_log_time)
                    last_log_step, last_log_time, next_log = p.step, now, now + self.log_every
                if self.checkpoint_every and p.step >= next_checkpoint:
                    self._checkpoint(periodic=True)
                    next_checkpoint = self._next_multiple(p.step, self.checkpoint_every)
        finally:
            end = time.monotonic()  # stopping the actors is not training time
            transport.stop()
        p.elapsed = base_elapsed + end - begin
        self._progress_line(p.step - last_log_step, end - last_log_time)
        self._write_scalars(end)
        self._checkpoint(periodic=False)
        return outcome

    def update(self, arrived: list[Rollout | Gradient]) -> None:
        """One update from what arrived, checked, published and recorded: all the learner does
        per update (benchmarks/scaling.py times it)."""
        p = self.progress
        started = time.perf_counter()
        stats, steps = self._learn(arrived)
        p.step += steps
        p.updates += 1
        self._check_finite(stats, self.agent.network.flat().data)
        version = self._publish()
        self.busy_seconds += time.perf_counter() - started
        self._record(arrived, stats, version)
        if self.histogram_every and p.updates % self.histogram_every == 0 and self.events:
            self.events.histograms(self.agent.network, p.step)

    def _learn(self, arrived: list[Rollout | Gradient]) -> tuple[dict[str, float], int]:
        """One update from what arrived: rollouts, whose gradient the agent computes, or the
        gradients actors computed, summed. (statistics, env steps learned from)"""
        agent, progress, flat = self.agent, self.progress.step / self.total_steps, self.agent.network.flat()
        on_host = backend.device_of(flat.data) == "cpu"
        # The step goes out of place into weights no actor reads: publishing copies nothing. A GPU
        # learner steps in place on the device; its publish is one device-to-host copy.
        into = self.transport.next_weights(flat.data) if on_host else None
        if not isinstance(arrived[0], Gradient):
            agent.remember(arrived)
            batch = join(arrived)
            return agent.update(batch, progress, into), batch.steps
        # One step per gradient, as each of the A3C paper's threads steps the shared weights with
        # its own: a sum of k in one step would be clipped as one and move them as one.
        steps = sum(g.steps for g in arrived)
        stats = {name: sum(g.stats[name] * g.steps for g in arrived) / steps for name in arrived[0].stats}
        step_stats = {}
        for gradient in arrived:
            if on_host:  # stepped from where it lies: no copy
                flat.rebind(grad=gradient.grad)
            else:  # one host-to-device copy
                backend.copy_from_host(flat.grad, gradient.grad)
            # the first step writes the new weights into `into`; the rest step them there
            for name, value in agent.step(progress, None if flat.data is into else into, gradient.moments).items():
                step_stats[name] = step_stats.get(name, 0.0) + value / len(arrived)
        return {**stats, **step_stats}, steps

    def _publish(self) -> int:
        # An actor reads the target network only in the loss: those that compute none never get it.
        target = self.agent.target if self.transport.spec.compute_gradients else None
        return self.transport.publish(self.agent.network.flat().data, self.progress.step,
                                      None if target is None else target.flat().data)

    def _progress_line(self, steps: int, seconds: float) -> None:
        p = self.progress
        if self._session is None:
            self.console(f"step {p.step:,}/{self.total_steps:,} | waiting for the actors' first rollouts "
                         f"({format_duration(p.elapsed)}): they start and compile kernels, which "
                         f"takes up to a minute on a new install")
            return
        first_step, start = self._session
        fps = steps / seconds if seconds > 0 else 0.0
        busy = min(1.0, (self.busy_seconds - self._busy_logged) / seconds) if seconds > 0 else None
        self._busy_logged = self.busy_seconds
        rate = (p.step - first_step) / max(time.monotonic() - start, 1e-9)
        eta = max(0, self.total_steps - p.step) / rate if rate > 0 else math.inf
        self.console(progress_line(p.step, self.total_steps, fps, list(p.recent_returns), p.episodes,
                                   p.elapsed, eta, busy))

    @staticmethod
    def _next_multiple(step: int, every: int) -> int:
        return (step // every + 1) * every if every else 0

    def _record(self, arrived, stats: dict, version: int) -> None:
        p, window = self.progress, self.window
        charts = {k: v for k, v in stats.items() if k in CHART_STATS}
        for name in SQUARED_LOSSES:
            if math.isfinite(stats.get(name, math.nan)):
                self.loss_start.setdefault(name, max(stats[name], 1.0))
        window.add_all("losses", {k: v for k, v in stats.items() if k not in CHART_STATS})
        window.add_all("charts", charts)
        for r in arrived:
            self.startup_failures[r.actor] = 0
            window.add("charts/policy_lag", (version - 2 - r.version) / 2)  # publishes behind
            window.add_all("charts", r.scalars)
            for ret, length in zip(r.episode_returns, r.episode_lengths):
                self.finished_episodes.append((p.step, ret, length, time.time()))
                p.recent_returns.append(ret)
            p.episodes += len(r.episode_returns)
        window.add("charts/batch_steps", sum(r.steps for r in arrived))
        if p.episodes == 0 and p.step >= self.no_episode_steps and self.no_episode_steps:
            self.no_episode_steps = 0  # said once
            self.warnings.append(f"no episode has ended in the first {p.step:,} env steps: if the env has no "
                                 f"time limit, give it one with --env-option max_episode_steps=N")
            self.console("warning: " + self.warnings[-1])

    def _check_finite(self, stats: dict, weights: np.ndarray) -> None:
        """Stop on NaN/Inf weights at once (they cannot be taken back); a NaN/Inf loss or gradient
        norm means the agent skipped that step (Agent.step), so stop only after
        NONFINITE_IN_A_ROW of them."""
        p = self.progress
        where = f"training diverged at step {p.step:,} (update {p.updates:,})"
        lr = stats.get("learning_rate")
        advice = "lower --lr" + ("" if lr is None else f" (it was {lr:g})")
        if not math.isfinite(optim.sum_of_squares(weights)):
            raise Diverged(f"{where}: the update made the weights NaN/Inf; {advice}")
        bad = [f"{name} {value}" for name, value in stats.items() if not math.isfinite(value)]
        self.nonfinite = self.nonfinite + 1 if bad else 0
        if self.nonfinite >= NONFINITE_IN_A_ROW:
            raise Diverged(f"{where}: {', '.join(bad)} in {self.nonfinite} updates in a row "
                           f"(each skipped); {advice}")

    def _watch_losses(self, means: dict[str, float]) -> None:
        """Warn once per loss that has grown by orders of magnitude: divergence without a NaN."""
        for name, start in self.loss_start.items():
            value = means.get(f"losses/{name}", math.nan)
            if value > EXPLODED * start and name not in self.exploded:
                self.exploded.add(name)
                self.warnings.append(f"losses/{name} is {value:.3g} at step {self.progress.step:,}, "
                                     f"{value / start:.0e} times its {start:.3g} in the first update: "
                                     f"the run is diverging; lower --lr")
                self.console("warning: " + self.warnings[-1])

    def _write_scalars(self, now: float) -> None:
        means = self.window.drain()
        self._watch_losses(means)
        step, (last_step, last_time) = self.progress.step, self._last_scalars
        if now > last_time:
            means["charts/fps"] = (step - last_step) / (now - last_time)
        self._last_scalars = step, now
        if self.events:
            self.events.scalars(means, step)
            for episode_step, ret, length, wall_time in self.finished_episodes:  # one point per
                self.events.scalars({"charts/episodic_return": ret,  # episode, as CleanRL and SB3 log them
                                     "charts/episodic_length": length}, episode_step, wall_time)
        self.finished_episodes.clear()

    def _supervise(self) -> None:
        for slot, reason in self.transport.dead_actors().items():
            self.startup_failures[slot] += 1
            if self.startup_failures[slot] > self.max_startup_failures:
                raise ActorFailure(f"actor {slot} {reason}, {self.startup_failures[slot]} times in a "
                                   f"row before sending a rollout")
            where = self.transport.restart(slot)
            self.restarts += 1
            self.console(f"actor {slot} {reason}; replaced it ({where})")

    def _checkpoint(self, periodic: bool) -> None:
        if self.checkpoint:
            self.checkpoint(self.progress, periodic)
