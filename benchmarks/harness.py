"""Timing and reporting shared by the benchmarks: cases, repeated timing, the machine line, tables.

A Case names a workload and gives one setup function per framework; each setup builds its model
and data and returns a zero-argument `step` to time. Every timed step gives two figures from the
same run of it: its wall time and its process CPU time (every thread's, spinning included).

Two ways to time a case:
- `run_case_in_processes` (the engine tables): each library in a fresh process of its own, so
  that neither's threads (PyTorch's spin while they wait for work) slow the other down. The
  child re-imports the case by name from the `CASES` list of the module that defines it, with
  its thread count in its environment before NumPy or PyTorch load. The sides run one after the
  other, each warmed up first, so load from other processes can fall on one side and not the
  other: compare on a quiet machine. PyTorch can be timed at several thread counts, keeping the
  fastest by median.
- `run_case`: both sides in this process, in alternating blocks, so that outside load falls on
  both alike: for cases that hold live objects a child could not rebuild by name (the sharing
  suite's manager) and for the recipes suite.

Thread counts have to be fixed before NumPy loads OpenBLAS, so a benchmark script calls
`threads_from_argv()` before its other imports.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

import numpy as np

Step = Callable[[], object]


@dataclass
class Case:
    """A workload. `run_case_in_processes` finds it again by `name` in the `CASES` list of the
    module its workbench setup is defined in."""
    name: str
    workbench: Callable[[], Step]
    torch: Optional[Callable[[], Step]] = None  # None: no PyTorch counterpart (or other peer)
    repeats: int = 30  # timed steps per framework (a quick run takes a fifth)


@dataclass
class Result:
    """A timed case: ms per step of each side, wall time and process CPU time of the same steps;
    the torch lists are None when that side was not timed."""
    name: str
    workbench_ms: list[float]
    workbench_cpu_ms: list[float]
    torch_ms: Optional[list[float]]
    torch_cpu_ms: Optional[list[float]]
    torch_threads: Optional[int] = None  # PyTorch's thread count, when it was chosen for the case

    def ratios(self) -> Optional[tuple[float, float, float]]:
        """workbench / torch by minimum, by median and by median CPU time; None without torch."""
        if not self.torch_ms:
            return None
        median = statistics.median
        return (min(self.workbench_ms) / min(self.torch_ms),
                median(self.workbench_ms) / median(self.torch_ms),
                median(self.workbench_cpu_ms) / median(self.torch_cpu_ms))


@dataclass
class Measure:
    """One row of a suite's table and of the results file: workbench's figure and the peer's,
    from the same run. A figure is None when it was not measured; `note` then says why (the peer
    is not installed, the measure runs only with --full). `spread` is the relative noise of
    repeated samples (half the interquartile range over the median), None for single figures.
    `workbench_cpu` and `peer_cpu`: the median process CPU time of the same samples, where timed."""
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
    workbench_cpu: Optional[float] = None
    peer_cpu: Optional[float] = None

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
    """A timed case as a Measure: medians (and minima, and median CPU times) of both sides, times
    `scale` (e.g. steps per epoch / 1000 for seconds per epoch); the spread is the larger of the
    two sides'; the note names PyTorch's thread count where it was chosen."""
    wb, peer = result.workbench_ms, result.torch_ms
    median = statistics.median
    spreads = [relative_spread(wb)] + ([relative_spread(peer)] if peer else [])
    if not peer:
        note = torch_note
    elif result.torch_threads is not None:
        note = f"{peer_name} at {_threads_text(result.torch_threads)}"
    else:
        note = ""
    return Measure(result.name, unit, median(wb) * scale, median(peer) * scale if peer else None, peer_name,
                   workbench_min=min(wb) * scale, peer_min=min(peer) * scale if peer else None,
                   spread=max(spreads), note=note, workbench_cpu=median(result.workbench_cpu_ms) * scale,
                   peer_cpu=median(result.torch_cpu_ms) * scale if peer else None)


# Seconds of timing per case after which `python -m benchmarks` stops repeating (None: never),
# so that a suite keeps to its budget when other people's load slows every step down.
CASE_SECONDS = {"quick": 6.0, "default": 30.0, "full": None}


def run_cases(cases: list[Case], quick: bool, smoke: bool = False, full: bool = False,
              peer_name: str = "torch", unit: str = "ms/step",
              scale: Callable[[str], float] = lambda name: 1.0,
              peer_available: Optional[bool] = None, in_processes: bool = False) -> list[Measure]:
    """Every case as a Measure, each within CASE_SECONDS. `in_processes`: each library in a
    process of its own (`run_case_in_processes`), PyTorch at the faster of 1 thread and as many
    as workbench; otherwise both in this process (`run_case`), PyTorch (when it is the peer) on
    as many threads as workbench. `smoke` (for tests) times the first case only; the others stay
    in the list, empty."""
    import numba

    max_seconds = CASE_SECONDS["quick" if quick else "full" if full else "default"]
    threads = numba.get_num_threads()
    if peer_available is None:
        peer_available = torch_installed()
        if peer_available and not in_processes:
            torch_module().set_num_threads(threads)
    torch_threads = best_of_torch_threads(threads) if peer_available else ()
    measures = []
    for i, case in enumerate(cases):
        if smoke and i > 0:
            measures.append(Measure(case.name, unit, None, None, peer_name, note="not run with --smoke"))
            continue
        if in_processes:
            result = run_case_in_processes(case, quick, threads, torch_threads, max_seconds=max_seconds)
        else:
            result = run_case(case, quick, peer_available, max_seconds=max_seconds)
        measures.append(measure_from_result(result, peer_name, scale(case.name), unit))
    return measures


THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


class UsageError(SystemExit):
    """Bad input to a benchmark script: its one line on stderr and exit status 2, as argparse
    gives for its own errors."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message
        print(message, file=sys.stderr)

    def __str__(self) -> str:
        return self.message


def threads_from_argv(argv=None) -> Optional[int]:
    """The value of `--threads N` on the command line, exported to the BLAS, OpenMP and Numba
    thread variables (call before importing numpy); None when it is not given."""
    args = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(args):
        value = arg.split("=", 1)[1] if arg.startswith("--threads=") else (
            args[i + 1] if arg == "--threads" and i + 1 < len(args) else None)
        if value is not None:
            if not value.isdigit() or int(value) < 1:
                raise UsageError(f"--threads needs a positive integer, got {value!r}")
            for name in THREAD_VARIABLES:
                os.environ[name] = value
            return int(value)
    return None


def _torch_threads_value(value: str):
    if value == "best":
        return value
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"a positive integer or best, not {value!r}")
    return int(value)


def add_thread_options(parser: argparse.ArgumentParser) -> None:
    """--threads and --torch-threads, for the scripts that time cases in processes."""
    parser.add_argument("--threads", type=int, metavar="N",
                        help="workbench's threads (default: every core); PyTorch's too, unless "
                             "--torch-threads says otherwise")
    parser.add_argument("--torch-threads", type=_torch_threads_value, metavar="N|best",
                        help="PyTorch's threads: N, or best: the faster by median of 1 and "
                             "workbench's count (default: best without --threads, its N with it)")


def best_of_torch_threads(threads: int) -> tuple[int, ...]:
    """1 and `threads`: PyTorch's spinning threads can make one thread its fastest on few cores."""
    return tuple(sorted({1, threads}))


def torch_thread_counts(args: argparse.Namespace, threads: int) -> tuple[int, ...]:
    """The thread counts to time PyTorch at (the options of `add_thread_options`); none when it
    is not installed."""
    if not torch_installed():
        return ()
    setting = args.torch_threads or ("best" if args.threads is None else threads)
    return best_of_torch_threads(threads) if setting == "best" else (setting,)


def in_own_process(fn, *args):
    """fn(*args) in a fresh (spawned) process, so that a library's threads and state never meet
    another's (the peers' training runs); its exceptions reach the caller, and it ends with the
    caller (a benchmark stopped mid-run leaves no training run behind it)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_end_with_parent) as pool:
        return pool.submit(fn, *args).result()


def _end_with_parent() -> None:
    """SIGTERM this process when the one that started it dies (Linux's PR_SET_PDEATHSIG; a
    workbench run stops on it as on Ctrl-C). Elsewhere a worker ends after its task."""
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def torch_installed() -> bool:
    """Whether PyTorch is there, without importing it (its threads stay out of this process)."""
    return importlib.util.find_spec("torch") is not None


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


def _threads_text(*counts: int) -> str:
    """'1 thread', '2 threads', '1 and 2 threads'."""
    return " and ".join(map(str, counts)) + (" thread" if counts == (1,) else " threads")


def _version(package: str) -> str:
    try:
        return f"{package} {metadata.version(package)}"
    except metadata.PackageNotFoundError:
        return f"{package} not installed"


def machine_line(threads: int, torch_threads: tuple[int, ...] = ()) -> str:
    """The machine, the libraries' versions and their threads: `threads` per framework, or,
    given `torch_threads`, workbench's, then the counts PyTorch is timed at."""
    if torch_threads:
        threads_used = (f"workbench on {_threads_text(threads)}, torch on {_threads_text(*torch_threads)}"
                        + (" (the faster by median)" if len(torch_threads) > 1 else "")
                        + ", each library in its own process")
    else:
        threads_used = f"{_threads_text(threads)} per framework"
    versions = ", ".join(_version(name) for name in ("numpy", "numba", "torch"))
    return (f"{os.cpu_count()} cores ({cpu_model()}), {threads_used}; wall and process CPU time; "
            f"{versions}; python {platform.python_version()}; load average "
            f"{os.getloadavg()[0]:.1f} at start")


def _repeats(case: Case, quick: bool) -> int:
    return max(3, case.repeats // 5) if quick else case.repeats


def _time_steps(step: Step, count: int, wall_ms: list[float], cpu_ms: list[float]) -> None:
    """Time `count` steps, each by the wall clock and by this process's CPU time."""
    for _ in range(count):
        wall, cpu = time.perf_counter(), time.process_time()
        step()
        cpu_ms.append((time.process_time() - cpu) * 1e3)
        wall_ms.append((time.perf_counter() - wall) * 1e3)


def run_case(case: Case, quick: bool, torch_available: bool, warmup: int = 3, block: int = 5,
             max_seconds: Optional[float] = None) -> Result:
    """Both sides in this process: warm up each, then time `repeats` steps of each in alternating
    blocks. `max_seconds` ends the timing after the first round of blocks that passes it (fewer
    repeats, same alternation)."""
    repeats = _repeats(case, quick)
    sides = {"workbench": case.workbench()}
    if torch_available and case.torch is not None:
        sides["torch"] = case.torch()
    samples: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in sides}
    for step in sides.values():
        for _ in range(warmup):
            step()
    done, start = 0, time.monotonic()
    while done < repeats:
        count = min(block, repeats - done)
        for name, step in sides.items():
            _time_steps(step, count, *samples[name])
        done += count
        if max_seconds is not None and time.monotonic() - start > max_seconds:
            break
    return Result(case.name, *samples["workbench"], *samples.get("torch", (None, None)))


def run_case_in_processes(case: Case, quick: bool, threads: int, torch_threads: tuple[int, ...] = (),
                          warmup: int = 3, max_seconds: Optional[float] = None) -> Result:
    """Each side in a fresh process of its own, one after the other: workbench on `threads`
    threads, then PyTorch at each of `torch_threads` (none: not timed), keeping the count with
    the lowest median wall time. Each process warms up, then times `repeats` steps, or fewer once
    it has used its share of `max_seconds`."""
    runs = 1 + (len(torch_threads) if case.torch is not None else 0)
    seconds = None if max_seconds is None else max_seconds / runs
    job = {"module": _defining_module(case), "case": case.name, "repeats": _repeats(case, quick),
           "warmup": warmup, "max_seconds": seconds}
    workbench = _time_in_child(job, "workbench", threads)
    if case.torch is None or not torch_threads:
        return Result(case.name, *workbench, None, None)
    by_threads = {count: _time_in_child(job, "torch", count) for count in torch_threads}
    fastest = min(by_threads, key=lambda count: statistics.median(by_threads[count][0]))
    return Result(case.name, *workbench, *by_threads[fastest], torch_threads=fastest)


def _defining_module(case: Case) -> str:
    """The importable name of the module the case's workbench setup is defined in (a script run
    as __main__ goes by its file's name)."""
    name = case.workbench.__module__
    return Path(sys.modules["__main__"].__file__).stem if name == "__main__" else name


_CHILD = "import sys, harness; harness.time_side(sys.argv[1])"


def _time_in_child(job: dict, side: str, threads: int) -> tuple[list[float], list[float]]:
    """(wall ms, CPU ms) per step of one side, timed by `time_side` in a new process."""
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES},
           "PYTHONPATH": os.pathsep.join(sys.path)}  # the child imports what this process can
    done = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({**job, "side": side, "threads": threads})],
                          env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"timing {side} on {job['case']!r} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-3000:]}")
    samples = json.loads(done.stdout.splitlines()[-1])
    return samples["wall_ms"], samples["cpu_ms"]


def time_side(job_json: str) -> None:
    """In a process `run_case_in_processes` started, its thread variables already set: time one
    side of one case and print its samples as JSON, the last line of the output."""
    job = json.loads(job_json)
    case = next(c for c in importlib.import_module(job["module"]).CASES if c.name == job["case"])
    if job["side"] == "torch":
        torch_module().set_num_threads(job["threads"])
    step = getattr(case, job["side"])()
    for _ in range(job["warmup"]):
        step()
    wall_ms, cpu_ms = [], []
    start = time.monotonic()
    while len(wall_ms) < job["repeats"] and (
            job["max_seconds"] is None or time.monotonic() - start <= job["max_seconds"]):
        _time_steps(step, 1, wall_ms, cpu_ms)
    print(json.dumps({"wall_ms": wall_ms, "cpu_ms": cpu_ms}))


RATIO_LEGEND = (
    "ms per step: min and med(ian) of the wall time, cpu: median process CPU time (every thread's,\n"
    "spinning included); threads: PyTorch's. ratio = workbench / torch (<= 1.0: workbench as fast or\n"
    "faster, or using no more CPU) of the minima (each library at its best), of the medians (the\n"
    "typical step) and of the CPU times (the work the cores did)")


def format_table(results: list[Result], torch_note: str = "not installed") -> str:
    """case | workbench ms: min, median, CPU | torch: threads, ms | ratios by min, median, CPU
    (RATIO_LEGEND explains them)."""
    groups = (("", 1), ("workbench ms", 3), ("torch", 4), ("ratio", 3))
    header = ("case", "min", "med", "cpu", "threads", "min", "med", "cpu", "min", "med", "cpu")
    median = statistics.median
    rows = []
    for r in results:
        workbench = (min(r.workbench_ms), median(r.workbench_ms), median(r.workbench_cpu_ms))
        ratios = r.ratios()
        if ratios is None:
            torch_cells = (torch_note, *[""] * 6)
        else:
            torch = (min(r.torch_ms), median(r.torch_ms), median(r.torch_cpu_ms))
            torch_cells = ("" if r.torch_threads is None else str(r.torch_threads),
                           *(f"{ms:.3f}" for ms in torch), *(f"{ratio:.2f}" for ratio in ratios))
        rows.append((r.name, *(f"{ms:.3f}" for ms in workbench), *torch_cells))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    group_cells, first = [], 0
    for label, count in groups:
        group_cells.append(label.center(sum(widths[first:first + count]) + 2 * (count - 1)))
        first += count
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))) for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(["  ".join(group_cells).rstrip(), *lines])


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


class StepRate:
    """Steps/s over at least `seconds` from the first step marked, ending on a later step (never
    an empty sample): `mark(step)` says when the sample is long enough, `per_second` is its rate."""

    def __init__(self, seconds: float):
        self.seconds, self.first, self.last = seconds, None, None

    def mark(self, step: int) -> bool:
        now = time.monotonic()
        if self.first is None:
            self.first = (now, step)
            return False
        self.last = (now, step)
        return now - self.first[0] >= self.seconds and step > self.first[1]

    @property
    def per_second(self) -> float:
        (t0, s0), (t1, s1) = self.first, self.last
        return (s1 - s0) / (t1 - t0)


def training_steps_per_second(config, seconds: float, warmup: float) -> float:
    """Env steps/s of `workbench.rl.train(config)`, sampled over at least `seconds` from the first
    update after `warmup` seconds, so that start-up (process launch, JIT compiles, which a cold
    cache or a loaded machine stretches) is left out."""
    from workbench.rl import train

    rate = StepRate(seconds)

    def stop(progress):
        if rate.first is None and not (progress.elapsed >= warmup and progress.updates > 0):
            return False
        return rate.mark(progress.step)

    train(config, should_stop=stop, console=lambda line: None)
    return rate.per_second


def train_as_the_cli_does(config, should_stop):
    """`workbench.rl.train(config)` with its learner on the threads `workbench train` gives it,
    stopped by `should_stop(progress)`, printing nothing; its RunResult."""
    from nets import threads
    from workbench.rl import train

    with threads.limited(config.learner_threads):
        return train(config, should_stop=should_stop, console=lambda line: None)


def sb3_steps_per_second(make_model, args: tuple, seconds: float, warmup: float = 0.0) -> float:
    """Env steps/s of the stable-baselines3 model `make_model(*args)` learning, sampled over at
    least `seconds` after `warmup` seconds of learning (its set-up left out, as
    training_steps_per_second leaves out workbench's); its env is closed after."""
    model = make_model(*args)
    rate, start = StepRate(seconds), time.monotonic()

    def sampled(episodes) -> bool:
        if rate.first is None and time.monotonic() - start < warmup:
            return False
        return rate.mark(episodes.steps)

    try:
        SB3Episodes().learn(model, sampled)
    finally:
        model.get_env().close()
    return rate.per_second


def sb3_settings(make_model, args: tuple, seconds: float, warmup: float = 0.0,
                 console: Callable[[str], None] = print) -> dict[tuple[str, int], float]:
    """Env steps/s of `make_model(*args, vec_env, threads)` at every setting that leaves its
    learning per step alone: its envs in one process ("dummy", DummyVecEnv) or a process each
    ("subproc", SubprocVecEnv), PyTorch on 1 thread or a thread per core; each measured in a
    fresh process, so that none inherits another's threads. The peer runs at the fastest."""
    rates = {}
    for vec_env in ("dummy", "subproc"):
        for threads in sorted({1, os.cpu_count() or 1}):
            rates[vec_env, threads] = in_own_process(sb3_steps_per_second, make_model,
                                                     (*args, vec_env, threads), seconds, warmup)
            console(f"  {setting_name(vec_env, threads)}: {rates[vec_env, threads]:,.0f} env steps/s")
    return rates


def vec_env_options(vec_env: str) -> dict:
    """stable-baselines3's make_vec_env / make_atari_env arguments for a setting's envs: in one
    process ("dummy") or a process each ("subproc"; forked, so that they inherit the env ids the
    parent registered, ALE's among them)."""
    from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv

    if vec_env == "subproc":
        return {"vec_env_cls": SubprocVecEnv, "vec_env_kwargs": {"start_method": "fork"}}
    return {"vec_env_cls": DummyVecEnv}


def setting_name(vec_env: str, threads: int) -> str:
    where = "in subprocesses" if vec_env == "subproc" else "in one process"
    return f"envs {where}, torch {threads} thread{'s' * (threads > 1)}"


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
