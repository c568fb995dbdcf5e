"""Steady-state rates from a `workbench train` console log (gpu_check.sh's Pong part).

    python benchmarks/gpu_check_rates.py LOG [--frames-per-step 4] [--skip 0.25] [--from-step 0]

The progress lines give the recent steps/s and the learner's busy share each second; the lines
before step `--from-step` (DQN's: its actors fill the replay memory at full speed until learning
starts) and then the first `--skip` of the rest (start-up: actors compiling kernels, the first
rollouts) are left out, and the median of the others is reported, as env steps/s and as env
frames/s (ALE v5 repeats each action 4 frames).
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys

LINE = re.compile(r"^step ([\d,]+)/.*\|\s*([\d,]+) steps/s .*?(?:learner busy (\d+)%)?$")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--frames-per-step", type=int, default=4)
    parser.add_argument("--skip", type=float, default=0.25, help="share of the lines left out at the start")
    parser.add_argument("--from-step", type=int, default=0, help="leave out the lines before this step")
    args = parser.parse_args(argv)
    rates, busy = [], []
    with open(args.log) as f:
        for line in f:
            match = LINE.search(line.rstrip())
            if match and int(match.group(1).replace(",", "")) >= args.from_step:
                rates.append(float(match.group(2).replace(",", "")))
                if match.group(3):
                    busy.append(float(match.group(3)))
    rates, busy = rates[int(len(rates) * args.skip):-1], busy[int(len(busy) * args.skip):-1]
    if not rates:
        print(f"no progress lines with a rate in {args.log}")
        return 1
    steps = statistics.median(rates)
    print(f"steady state over {len(rates)} progress lines: {steps:,.0f} env steps/s = "
          f"{steps * args.frames_per_step:,.0f} env frames/s; learner busy "
          + (f"{statistics.median(busy):.0f}% (median)" if busy else "not reported"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
