"""Run workbench's benchmark suites against their peers, in one run on this machine.

    python -m benchmarks                          # every suite, default budgets
    python -m benchmarks engine sharing --quick   # the named suites, a smoke run
    python -m benchmarks --full                   # long measures too (3 CartPole seeds, ...)
    python -m benchmarks --compare old.json       # run, then the change per measure
    python -m benchmarks --compare old.json new.json   # compare two results files, run nothing
    python -m benchmarks suite                    # the generalization suite (hours; by name only)
    python -m benchmarks seeds                    # documented examples over 5-20 seeds (by name only)

Suites: engine (layers and train steps vs PyTorch CPU), sharing (weight publish + pull: shared
memory vs a manager.dict), rl (whole-system throughput vs raw env.step; CartPole time-to-solve vs
stable-baselines3 A2C), scaling (gradients on the actors vs on the learner: learner headroom,
actor cost, projected throughput on more cores, CartPole throughput and time to solve), recipes
(epoch time vs the same model in PyTorch CPU); and, run only when named, suite (every agent on
Gymnasium's small envs over seeds against stable-baselines3's A2C and PPO) and seeds (the share of
seeds on which the documented examples reach their stated results, idle and beside busy processes).
Each table shows workbench's figure, the peer's
from the same run, and workbench / peer. Results always go to a JSON file (default
benchmarks/results/latest.json).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
from importlib import metadata
from pathlib import Path

from harness import threads_from_argv

if __name__ == "__main__":
    threads_from_argv()  # before NumPy loads OpenBLAS

# NumPy and Numba load here, before any suite: rl.py sets one-thread defaults for the processes
# it starts, which must not shrink the engine and recipes suites run in this process.
import numba  # noqa: E402,F401
import numpy  # noqa: E402,F401

import report  # noqa: E402
from harness import cpu_model  # noqa: E402

SUITES = ("engine", "sharing", "rl", "scaling", "recipes")  # run in this order
NAMED_ONLY = ("suite", "seeds")  # too long for a default run
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
LIBRARIES = ("numpy", "numba", "torch", "stable-baselines3", "multiprocess", "gymnasium", "ale-py")


def machine() -> dict:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "threads": numba.get_num_threads(),
            "python": sys.version.split()[0], "versions": versions,
            "load_average": round(os.getloadavg()[0], 1),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def machine_text(info: dict) -> str:
    versions = ", ".join(f"{name} {version}" for name, version in info["versions"].items())
    return (f"{info['cores']} cores ({info['cpu']}), {info['threads']} threads per framework, wall "
            f"time; python {info['python']}; {versions}; load average {info['load_average']} at start")


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"any of {', '.join(SUITES + NAMED_ONLY)} (default: all but {', '.join(NAMED_ONLY)})")
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="a smoke run: each suite under a minute")
    budget.add_argument("--full", action="store_true", help="the long measures too")
    budget.add_argument("--smoke", action="store_true",
                        help="for tests: --quick timing only the first case of each timed suite")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help="write the results here (default benchmarks/results/latest.json)")
    parser.add_argument("--compare", nargs="+", type=Path, metavar="FILE",
                        help="OLD: compare this run with OLD; OLD NEW: compare two results files, run nothing")
    parser.add_argument("--threads", type=int, metavar="N", help="threads per framework (default: every core)")
    args = parser.parse_args(argv)
    unknown = [name for name in args.suites if name not in SUITES + NAMED_ONLY]
    if unknown:
        parser.error(f"unknown suite {', '.join(map(repr, unknown))}; the suites are "
                     f"{', '.join(SUITES + NAMED_ONLY)}")
    if args.compare and len(args.compare) > 2:
        parser.error("--compare takes OLD, or OLD NEW")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    old = report.load(args.compare[0]) if args.compare else None  # a bad file fails before the run
    if args.compare and len(args.compare) == 2:
        print(report.comparison_table(report.compare(old, report.load(args.compare[1]))))
        return 0
    mode = "smoke" if args.smoke else "quick" if args.quick else "full" if args.full else "default"
    info = machine()
    print(machine_text(info), flush=True)
    results = {}
    for name in (s for s in SUITES + NAMED_ONLY if s in args.suites or (not args.suites and s in SUITES)):
        start = time.monotonic()
        measures = importlib.import_module(name).run(quick=args.quick or args.smoke, full=args.full,
                                                              smoke=args.smoke)
        results[name] = (time.monotonic() - start, measures)
        print(f"\n{name} ({mode}, {results[name][0]:.0f} s); ratio = workbench / peer", flush=True)
        print(report.suite_table(measures), flush=True)
    document = report.results_document(info, mode, results)
    report.write(args.json, document)
    print(f"\nresults in {args.json}")
    if old is not None:
        print(f"\nchange since {args.compare[0]} (flagged beyond noise: twice the samples' relative "
              f"spread, at least {report.NOISE_FLOOR:.0%})")
        print(report.comparison_table(report.compare(old, document)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
