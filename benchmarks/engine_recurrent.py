"""Recurrent layers against PyTorch CPU: a char-level language-model train step.

    python benchmarks/engine_recurrent.py [--quick]
    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/engine_recurrent.py --cpu-time

Cases: one-hot characters (vocabulary 65) -> LSTM or GRU (hidden 256) -> dense to 65 logits at
every step, softmax cross-entropy over all 32 x 64 (batch x time) positions, backward through
time, Adam. PyTorch runs nn.LSTM / nn.GRU with as many threads as workbench uses. The GRUs differ
in where the reset gate acts (workbench: before the recurrent matmul, Cho et al. 2014; PyTorch:
after it, as cuDNN does); the work per step is the same three hidden x hidden matmuls.

`--cpu-time` times CPU seconds (time.process_time) instead of wall-clock seconds, one thread per
framework: on a machine other processes keep busy, wall-clock times swing by several times while
CPU times stay within a few percent.

`CASES` is imported by benchmarks/engine.py.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numba
import numpy as np

import nets
from nets import F
from harness import Case, Result, format_table, machine_line, run_case, torch_module

VOCAB, HIDDEN, BATCH, TIME = 65, 256, 32, 64


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    chars = rng.integers(0, VOCAB, (BATCH, TIME + 1))
    onehot = np.eye(VOCAB, dtype=np.float32)[chars[:, :-1]]
    return onehot, chars[:, 1:]


class CharModel(nets.Module):
    def __init__(self, layer):
        super().__init__()
        self.rnn = layer
        self.head = nets.Linear(HIDDEN, VOCAB)

    def forward(self, x):
        h, _ = self.rnn(x)
        return self.head(h)


def workbench_char(kind: str):
    def setup():
        nets.seed(0)
        model = CharModel(getattr(nets, kind)(VOCAB, HIDDEN))
        optimizer = nets.optim.Adam(model, lr=2e-3)
        x, y = _data()

        def step():
            optimizer.zero_grad()
            F.softmax_cross_entropy(model(x), y).backward()
            optimizer.step()
        return step
    return setup


def torch_char(kind: str):
    def setup():
        torch = torch_module()
        nn = torch.nn
        torch.manual_seed(0)
        rnn = getattr(nn, kind)(VOCAB, HIDDEN, batch_first=True)
        head = nn.Linear(HIDDEN, VOCAB)
        optimizer = torch.optim.Adam(list(rnn.parameters()) + list(head.parameters()), lr=2e-3)
        x, y = (torch.from_numpy(a) for a in _data())
        y = y.reshape(-1)

        def step():
            optimizer.zero_grad()
            h, _ = rnn(x)
            nn.functional.cross_entropy(head(h).reshape(-1, VOCAB), y).backward()
            optimizer.step()
        return step
    return setup


CASES = [
    Case(f"char-lstm train h={HIDDEN} b={BATCH} t={TIME}", workbench_char("LSTM"), torch_char("LSTM"),
         repeats=30),
    Case(f"char-gru train h={HIDDEN} b={BATCH} t={TIME}", workbench_char("GRU"), torch_char("GRU"),
         repeats=30),
]


def run_case_cpu_time(case: Case, quick: bool, torch_available: bool, block: int = 5) -> Result:
    """Like harness.run_case (warm-up, alternating blocks), timing CPU seconds of this process."""
    repeats = max(3, case.repeats // 5) if quick else case.repeats
    sides = {"workbench": case.workbench()}
    if torch_available and case.torch is not None:
        sides["torch"] = case.torch()
    times = {name: [] for name in sides}
    for step in sides.values():
        for _ in range(3):
            step()
    while len(times["workbench"]) < repeats:
        for name, step in sides.items():
            for _ in range(block):
                start = time.process_time()
                step()
                times[name].append((time.process_time() - start) * 1e3)
    return Result(case.name, times["workbench"], times.get("torch"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time CPU seconds, one thread per framework (set OPENBLAS_NUM_THREADS=1 "
                             "and NUMBA_NUM_THREADS=1 before starting)")
    args = parser.parse_args(argv)
    threads = numba.get_num_threads()
    if args.cpu_time and (threads != 1 or os.environ.get("OPENBLAS_NUM_THREADS") != "1"):
        parser.error("--cpu-time needs OPENBLAS_NUM_THREADS=1 and NUMBA_NUM_THREADS=1 in the "
                     "environment: CPU time of several threads counts their spinning too")
    torch = torch_module()
    if torch is not None:
        torch.set_num_threads(threads)
    print(machine_line(threads, args.cpu_time))
    run = run_case_cpu_time if args.cpu_time else run_case
    results = [run(case, args.quick, torch is not None) for case in CASES]
    print(format_table(results))
    print(("CPU " if args.cpu_time else "") + "ms per step; ratio = workbench median / torch median "
          "(<= 1.0: workbench as fast or faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
