"""Every seed: the documented training examples over many seeds, idle and beside busy processes,
and the share of runs that reach each example's stated result, with a 95% bootstrap interval.

    python benchmarks/seeds.py                       # every example, idle then busy
    python benchmarks/seeds.py --examples cartpole-a3c --seeds 20 --busy 0
    python -m benchmarks seeds                       # the same, in the benchmark report

A run stops as soon as its last-100 mean reaches the example's bar (CartPole's 475) or at the
example's steps. "Busy" starts one spinning process per core beside the run (the load a shared
machine gives), at the same priority.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


@dataclass(frozen=True)
class Example:
    env: str
    agent: str
    steps: int
    bar: float  # the last-100 mean the docs say it reaches
    seeds: int  # how many seeds by default (fewer for the long ones)


EXAMPLES = {
    "cartpole-a3c": Example("CartPole-v1", "a3c", 150_000, 475, 20),  # README command 1
    "cartpole-ppo": Example("CartPole-v1", "ppo", 100_000, 475, 10),
    "cartpole-impala": Example("CartPole-v1", "impala", 100_000, 475, 10),
    # every other agent's CartPole example (docs/training.md), to the result its docstring states
    "cartpole-a3c-lstm": Example("CartPole-v1", "a3c-lstm", 250_000, 475, 10),
    "cartpole-nstep-q": Example("CartPole-v1", "nstep-q", 300_000, 475, 10),
    "cartpole-onestep-q": Example("CartPole-v1", "onestep-q", 200_000, 195, 10),
    "cartpole-reinforce": Example("CartPole-v1", "reinforce", 150_000, 195, 10),
    "cartpole-dqn": Example("CartPole-v1", "dqn", 100_000, 475, 10),
    "pendulum-ppo": Example("Pendulum-v1", "ppo", 200_000, -250, 5),
    "pendulum-a3c": Example("Pendulum-v1", "a3c", 1_000_000, -250, 5),
}


def spin() -> None:
    while True:
        pass


def one_run(example: Example, seed: int) -> dict:
    from actors.learner import RECENT_EPISODES
    from harness import train_as_the_cli_does
    from workbench.rl import TrainConfig

    def reached(progress) -> bool:
        return len(progress.recent_returns) == RECENT_EPISODES and progress.mean_return() >= example.bar

    start = time.monotonic()
    result = train_as_the_cli_does(TrainConfig(env=example.env, agent=example.agent, steps=example.steps,
                                               seed=seed, logdir=tempfile.mkdtemp(prefix="seeds-")), reached)
    return {"seed": seed, "reached": reached(result.progress), "steps": result.progress.step,
            "seconds": round(time.monotonic() - start, 1), "final": result.mean_return}


def share(outcomes: list[bool]) -> str:
    from logs.curves import bootstrap_interval

    low, high = bootstrap_interval([float(o) for o in outcomes])
    return f"{sum(outcomes)}/{len(outcomes)} (95% interval {low:.2f}-{high:.2f})"


def over_seeds(names: list[str], seeds: int | None, busy_modes: list[int]) -> dict:
    results: dict = {"load_average_before": os.getloadavg()[0], "examples": {}}
    for name in names:
        example = EXAMPLES[name]
        for busy in busy_modes:
            spinners = [multiprocessing.Process(target=spin, daemon=True) for _ in range(busy)]
            for p in spinners:
                p.start()
            try:
                runs = [one_run(example, seed) for seed in range(seeds or example.seeds)]
            finally:
                for p in spinners:
                    p.terminate()
            key = f"{name} busy={busy}"
            results["examples"][key] = runs
            reached = [r for r in runs if r["reached"]]
            times = f", median {np.median([r['seconds'] for r in reached]):.1f} s" if reached else ""
            finals = [r["final"] for r in runs if r["final"] is not None]
            final = f"; final last-100 median {np.median(finals):.1f}" if finals else ""
            print(f"{key}: reached {example.bar:g} by {example.steps:,} steps on "
                  f"{share([r['reached'] for r in runs])}{times}{final}", flush=True)
    results["load_average_after"] = os.getloadavg()[0]
    return results


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list:
    """`python -m benchmarks seeds`: the share of seeds reaching each example's bar (higher is
    better; no peer). --quick/--smoke: README command 1 on 3 seeds, idle."""
    from harness import Measure

    names, seeds, busy = (["cartpole-a3c"], 3, [0]) if quick or smoke else (list(EXAMPLES), None, [0, os.cpu_count()])
    results = over_seeds(names, seeds, busy)
    return [Measure(f"{key}: share reaching {EXAMPLES[key.split()[0]].bar:g}", "share",
                    float(np.mean([r["reached"] for r in runs])), None, "-", better="higher",
                    note="no peer: the share of seeds")
            for key, runs in results["examples"].items()]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", default=",".join(EXAMPLES),
                        help=f"comma-separated, of {', '.join(EXAMPLES)} (default: all)")
    parser.add_argument("--seeds", type=int, help="seeds per example (default: the example's, 5 to 20)")
    parser.add_argument("--busy", default=f"0,{os.cpu_count()}",
                        help="comma-separated counts of spinning processes beside the runs (default: 0 and one per core)")
    parser.add_argument("--json", type=Path, help="also write every run's outcome here")
    args = parser.parse_args(argv)
    names = args.examples.split(",")
    unknown = [n for n in names if n not in EXAMPLES]
    if unknown:
        parser.error(f"unknown example {unknown[0]!r}; choose from {', '.join(EXAMPLES)}")
    results = over_seeds(names, args.seeds, [int(b) for b in args.busy.split(",")])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
