"""Timing and reporting shared by the benchmarks: cases, repeated timing, the machine line, tables.

A Case names a workload and gives one setup function per framework; each setup builds its model
and data and returns a zero-argument `step` to time. The frameworks are timed in alternating
blocks, so that load from other processes on the machine falls on both columns alike.

Thread counts have to be fixed before NumPy loads OpenBLAS, so a benchmark script calls
`threads_from_argv()` before its other imports.
"""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

Step = Callable[[], object]


@dataclass
class Case:
    name: str
    workbench: Callable[[], Step]
    torch: Optional[Callable[[], Step]] = None  # None: no PyTorch counterpart (or other peer)
    repeats: int = 30  # timed steps per framework (a quick run takes a fifth)


@dataclass
class Result:
    name: str
    workbench_ms: list[float]
    torch_ms: Optional[list[float]]  # None when PyTorch is missing or the case has no torch side


@dataclass
class Measure:
    """One row of a suite's table and of the results file: workbench's figure and the peer's,
    from the same run. A figure is None when it was not measured; `note` then says why (the peer
    is not installed, the measure runs only with --full). `spread` is the relative noise of
    repeated samples (half the interquartile range over the median), None for single figures."""
    name: str
    unit: str
    workbench: Optional[float]
    peer: Optional[float]
    peer_name: str
    better: str = "lower"  # "lower" for times, "higher" for rates
    workbench_min: Optional[float] = None
    peer_min: Optional[float] = None
    spread: Optional[float] = None
    note: str = ""

    @property
    def ratio(self) -> Optional[float]:
        """workbench / peer (None when either is missing)."""
        if self.workbench is None or not self.peer:
            return None
        return self.workbench / self.peer


def relative_spread(samples: list[float]) -> float:
    if len(samples) < 4:
        return 0.0
    q1, _, q3 = statistics.quantiles(samples, n=4)
    return (q3 - q1) / 2 / statistics.median(samples)


def measure_from_result(result: Result, peer_name: str = "torch", scale: float = 1.0,
                        unit: str = "ms/step", torch_note: str = "not installed") -> Measure:
    """A timed case as a Measure: medians (and minima) of both sides, times `scale` (e.g. steps
    per epoch / 1000 for seconds per epoch); the spread is the larger of the two sides'."""
    wb, peer = result.workbench_ms, result.torch_ms
    spreads = [relative_spread(wb)] + ([relative_spread(peer)] if peer else [])
    return Measure(result.name, unit, statistics.median(wb) * scale,
                   statistics.median(peer) * scale if peer else None, peer_name,
                   workbench_min=min(wb) * scale, peer_min=min(peer) * scale if peer else None,
                   spread=max(spreads), note="" if peer else torch_note)


# Seconds of timing per case after which `python -m benchmarks` stops repeating (None: never),
# so that a suite keeps to its budget when other people's load slows every step down.
CASE_SECONDS = {"quick": 6.0, "default": 30.0, "full": None}


def run_cases(cases: list[Case], quick: bool, smoke: bool = False, full: bool = False,
              peer_name: str = "torch", unit: str = "ms/step",
              scale: Callable[[str], float] = lambda name: 1.0,
              peer_available: Optional[bool] = None) -> list[Measure]:
    """Every case as a Measure, PyTorch (when it is the peer) on as many threads as workbench,
    each within CASE_SECONDS. `smoke` (for tests) times the first case only; the others stay in
    the list, empty."""
    max_seconds = CASE_SECONDS["quick" if quick else "full" if full else "default"]
    if peer_available is None:
        torch = torch_module()
        if torch is not None:
            import numba
            torch.set_num_threads(numba.get_num_threads())
        peer_available = torch is not None
    measures = []
    for i, case in enumerate(cases):
        if smoke and i > 0:
            measures.append(Measure(case.name, unit, None, None, peer_name, note="not run with --smoke"))
        else:
            result = run_case(case, quick, peer_available, max_seconds=max_seconds)
            measures.append(measure_from_result(result, peer_name, scale(case.name), unit))
    return measures


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def threads_from_argv(argv=None) -> Optional[int]:
    """The value of `--threads N` on the command line, exported to the BLAS, OpenMP and Numba
    thread variables (call before importing numpy); None when it is not given."""
    args = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            args[i + 1] if arg == "--threads" and i + 1 < len(args) else None)
        if value is not None:
            if not value.isdigit() or int(value) < 1:
                raise SystemExit(f"--threads needs a positive integer, got {value!r}")
            for name in THREAD_VARIABLES:
                os.environ[name] = value
            return int(value)
    return None


def torch_module():
    """PyTorch, or None when it is not installed (imported only here, only for benchmarks)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line(threads: int, cpu_time: bool = False) -> str:
    import numba
    import numpy
    torch = torch_module()
    versions = f"numpy {numpy.__version__}, numba {numba.__version__}, " + (
        f"torch {torch.__version__}" if torch else "torch not installed")
    clock = "process CPU time" if cpu_time else "wall time"
    return (f"{os.cpu_count()} cores ({cpu_model()}), {threads} threads per framework, {clock}; "
            f"{versions}; python {platform.python_version()}; load average "
            f"{os.getloadavg()[0]:.1f} at start")


def _time_block(step: Step, count: int, into: list[float], clock) -> None:
    for _ in range(count):
        start = clock()
        step()
        into.append((clock() - start) * 1e3)


def run_case(case: Case, quick: bool, torch_available: bool, warmup: int = 3, block: int = 5,
             cpu_time: bool = False, max_seconds: Optional[float] = None) -> Result:
    """Warm up each side, then time `repeats` steps of each in alternating blocks.

    `cpu_time` measures process CPU time instead of wall time: with one thread per framework it
    leaves out the time other processes on a shared machine hold the core. `max_seconds` ends
    the timing after the first round of blocks that passes it (fewer repeats, same alternation).
    """
    clock = time.process_time if cpu_time else time.perf_counter
    repeats = max(3, case.repeats // 5) if quick else case.repeats
    sides = {"workbench": case.workbench()}
    if torch_available and case.torch is not None:
        sides["torch"] = case.torch()
    times: dict[str, list[float]] = {name: [] for name in sides}
    for step in sides.values():
        for _ in range(warmup):
            step()
    done, start = 0, time.monotonic()
    while done < repeats:
        count = min(block, repeats - done)
        for name, step in sides.items():
            _time_block(step, count, times[name], clock)
        done += count
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            break
    return Result(case.name, times["workbench"], times.get("torch"))


def format_table(results: list[Result], torch_note: str = "not installed") -> str:
    """case | workbench ms (min, median) | torch ms (min, median) | ratio of medians."""
    header = ("case", "workbench min", "workbench med", "torch min", "torch med", "ratio")
    rows = []
    for r in results:
        wb_min, wb_med = min(r.workbench_ms), statistics.median(r.workbench_ms)
        if r.torch_ms:
            t_min, t_med = min(r.torch_ms), statistics.median(r.torch_ms)
            torch_cells = (f"{t_min:.3f}", f"{t_med:.3f}", f"{wb_med / t_med:.2f}")
        else:
            torch_cells = (torch_note, "", "")
        rows.append((r.name, f"{wb_min:.3f}", f"{wb_med:.3f}", *torch_cells))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def random_steps(env, seconds: float, seed: int, chunk: int) -> int:
    """Step `env` with pre-drawn random actions for `seconds` (resetting at episode ends); returns
    the steps taken. Actions are drawn `chunk` at a time so drawing costs nothing in the loop."""
    actions = np.random.default_rng(seed).integers(env.action_space.n, size=chunk).tolist()
    steps, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        for action in actions:
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                env.reset()
        steps += len(actions)
    return steps


def training_steps_per_second(config, seconds: float, warmup: float) -> float:
    """Env steps/s of `workbench.rl.train(config)`, sampled over at least `seconds` from the first
    update after `warmup` seconds, so that start-up (process launch, JIT compiles, which a cold
    cache or a loaded machine stretches) is left out; the sample ends on a step, never empty."""
    from workbench.rl import train

    marks = {}

    def stop(progress):
        now = time.monotonic()
        if "first" not in marks:
            if progress.elapsed >= warmup and progress.updates > 0:
                marks["first"] = (now, progress.step)
            return False
        marks["last"] = (now, progress.step)
        return now - marks["first"][0] >= seconds and progress.step > marks["first"][1]

    train(config, should_stop=stop, console=lambda line: None)
    (t0, s0), (t1, s1) = marks["first"], marks["last"]
    return (s1 - s0) / (t1 - t0)


class SB3Episodes:
    """Training episodes of a stable-baselines3 model, for its peers' runs in these benchmarks:
    `learn(model, should_stop)` trains until `should_stop(self)` is true after a step. `returns`
    holds every finished episode's return, `best` the best mean of `window` returns in a row so
    far (None until there are that many), `steps` the model's env steps."""

    def __init__(self, window: int = 100):
        self.window, self.returns, self.best, self.steps = window, [], None, 0

    def mean(self) -> float | None:
        """The mean of the last `window` returns, None until there are that many."""
        return float(np.mean(self.returns[-self.window:])) if len(self.returns) >= self.window else None

    def learn(self, model, should_stop: Callable[["SB3Episodes"], bool],
              total_timesteps: int = 10**9) -> "SB3Episodes":
        """`total_timesteps`: what the model's schedules anneal over (a run stops by `should_stop`)."""
        from stable_baselines3.common.callbacks import BaseCallback

        episodes = self

        class Callback(BaseCallback):
            def _on_step(self):
                episodes.steps = self.num_timesteps
                for info in self.locals["infos"]:
                    if "episode" in info:
                        episodes.returns.append(float(info["episode"]["r"]))
                        mean = episodes.mean()
                        if mean is not None:
                            episodes.best = mean if episodes.best is None else max(episodes.best, mean)
                return not should_stop(episodes)

        model.learn(total_timesteps=total_timesteps, callback=Callback())
        return self
