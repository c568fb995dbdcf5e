"""Recurrent layers against PyTorch CPU: a char-level language-model train step.

    python benchmarks/engine_recurrent.py [--quick] [--threads N] [--torch-threads N|best]

Cases: one-hot characters (vocabulary 65) -> LSTM or GRU (hidden 256) -> dense to 65 logits at
every step, softmax cross-entropy over all 32 x 64 (batch x time) positions, backward through
time, Adam. PyTorch runs nn.LSTM / nn.GRU. The GRUs differ in where the reset gate acts
(workbench: before the recurrent matmul, Cho et al. 2014; PyTorch: after it, as cuDNN does); the
work per step is the same three hidden x hidden matmuls.

Timed as benchmarks/engine.py times its cases (which imports `CASES`): each library in its own
process, by wall and process CPU time, PyTorch by default at the faster of 1 thread and as many
as workbench. On a machine other processes keep busy, wall times swing by several times while
CPU times at one thread each (`--threads 1`) stay within a few percent.
"""
from __future__ import annotations

import argparse
import sys

from harness import threads_from_argv

if __name__ == "__main__":
    threads_from_argv()  # before NumPy loads OpenBLAS

import numba  # noqa: E402
import numpy as np  # noqa: E402

import nets  # noqa: E402
from nets import F  # noqa: E402
from harness import (RATIO_LEGEND, Case, add_thread_options, format_table, machine_line,  # noqa: E402
                     run_case_in_processes, torch_module, torch_thread_counts)

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    add_thread_options(parser)
    args = parser.parse_args(argv)
    threads = numba.get_num_threads()
    torch_threads = torch_thread_counts(args, threads)
    print(machine_line(threads, torch_threads))
    results = [run_case_in_processes(case, args.quick, threads, torch_threads) for case in CASES]
    print(format_table(results))
    print(RATIO_LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
