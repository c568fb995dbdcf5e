"""How many threads a recipe should use by default: epoch seconds of a few recipes at --threads 1,
2 and 0 (all cores), on an idle machine and beside busy processes, each epoch in a fresh process.

    python benchmarks/recipe_threads.py                    # 2 repeats, beside 0 and 2 spinners
    python benchmarks/recipe_threads.py --busy 0 1 2 --repeats 3

Prints the median epoch time per case. Run it alone (../shared/tools/quiet), as every benchmark.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare" / "input.txt"
MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def cases(text: Path) -> dict[str, list[str]]:
    return {  # each a few seconds an epoch on 2 cores
        "mnist-mlp": ["mnist-mlp", "--data", str(MNIST)],
        "mnist-cnn (10k images)": ["mnist-cnn", "--data", str(MNIST), "--validation", "50000"],
        "char-rnn 2x256 (200 kB)": ["char-rnn", "--text", str(text)],
    }


def spin(stop) -> None:
    while not stop.is_set():
        pass


def epoch_seconds(args: list[str], threads: int, logdir: str) -> float:
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "recipe", *args, "--epochs", "1",
                          "--threads", str(threads), "--no-progress", "--logdir", logdir],
                         capture_output=True, text=True, check=True).stdout
    return float(re.search(r"epoch 1/1 .* ([0-9.]+) s", out).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 2], help="spinning processes beside")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2, 0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logdir:
        text = Path(logdir) / "shakespeare-200k.txt"
        text.write_text(SHAKESPEARE.read_text()[:200_000])
        for name, recipe in cases(text).items():
            epoch_seconds(recipe, 1, logdir)  # compile the kernels into Numba's cache first
            for busy in args.busy:
                stop = multiprocessing.Event()
                spinners = [multiprocessing.Process(target=spin, args=(stop,)) for _ in range(busy)]
                for p in spinners:
                    p.start()
                try:
                    row = {t: statistics.median(epoch_seconds(recipe, t, logdir) for _ in range(args.repeats))
                           for t in args.threads}
                finally:
                    stop.set()
                    for p in spinners:
                        p.join()
                shown = "  ".join(f"--threads {t}: {s:6.2f} s" for t, s in row.items())
                print(f"{name:<26} beside {busy} busy: {shown}  (load {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
