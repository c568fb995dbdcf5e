"""Steady-state rates from a `workbench train` console log (gpu_check.sh's Pong part), or with
--curve the learning curve (its learn part).

    python benchmarks/gpu_check_rates.py LOG [--frames-per-step 4] [--skip 0.25] [--from-step 0]
    python benchmarks/gpu_check_rates.py LOG --curve [--target 18]

The progress lines give the recent steps/s and the learner's busy share each second; the lines
before step `--from-step` (DQN's: its actors fill the replay memory at full speed until learning
starts) and then the first `--skip` of the rest (start-up: actors compiling kernels, the first
rollouts) are left out, and the median of the others is reported, as env steps/s and as env
frames/s (ALE v5 repeats each action 4 frames). --curve prints the last-10 mean return at each
whole minute of training and when it first reached --target.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys

LINE = re.compile(r"^step ([\d,]+)/.*\|\s*([\d,]+) steps/s .*?(?:learner busy (\d+)%)?$")
RETURNS = re.compile(r"^step ([\d,]+)/.*\| return\s+(-?[\d.]+) last 10\b.*\|\s*([\d:]+) elapsed")


def seconds(clock: str) -> int:
    """'7:41' or '1:02:03' (the progress line's elapsed) in seconds."""
    total = 0
    for part in clock.split(":"):
        total = 60 * total + int(part)
    return total


def curve(path: str, target: float) -> int:
    points = []  # (seconds of training, the line's clock, step, last-10 mean), in the log's order
    with open(path) as f:
        for line in f:
            match = RETURNS.search(line.rstrip())
            if match:
                points.append((seconds(match.group(3)), match.group(3),
                               int(match.group(1).replace(",", "")), float(match.group(2))))
    if not points:
        print(f"no progress lines with a last-10 mean in {path}")
        return 1
    marks = []
    for minute in range(1, points[-1][0] // 60 + 1):
        mean = [m for t, _, _, m in points if t <= 60 * minute][-1:]
        marks.append(f"{minute}:00 {mean[0]:.1f}" if mean else f"{minute}:00 -")
    print("last-10 mean at each minute of training: " + (" | ".join(marks) or "(under a minute)"))
    reached = next((point for point in points if point[3] >= target), None)
    best = max(point[3] for point in points)
    print(f"last-10 mean >= {target:g}: " + (f"at {reached[1]} of training (step {reached[2]:,})" if reached
                                          else f"not reached in {points[-1][1]} (best {best:.1f})"))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--frames-per-step", type=int, default=4)
    parser.add_argument("--skip", type=float, default=0.25, help="share of the lines left out at the start")
    parser.add_argument("--from-step", type=int, default=0, help="leave out the lines before this step")
    parser.add_argument("--curve", action="store_true", help="the last-10 mean return by minute instead")
    parser.add_argument("--target", type=float, default=18.0, help="with --curve: the mean to reach (default 18)")
    args = parser.parse_args(argv)
    if not os.path.isfile(args.log):
        parser.exit(2, f"gpu_check_rates.py: no log file at {args.log}\n")
    if args.curve:
        return curve(args.log, args.target)
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
