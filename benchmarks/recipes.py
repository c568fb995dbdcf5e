"""Epoch time of the recipes' models: workbench against the same model in PyTorch CPU, in one run.

    python benchmarks/recipes.py [--quick] [--only TEXT] [--threads N] [--torch-threads N|best]

Each case times one training step (forward, loss, backward, update) of a recipe's default model at
its default batch size, on random data of the real shapes; an epoch is that many steps:
- mnist-mlp: 784-800-10 ReLU, dropout 0.2, SGD momentum, batch 128, 430 steps (55,000 images);
- mnist-cnn: LeNet conv 5x5x20, pool 2, conv 5x5x50, pool 2, dense 500, dropout 0.5, SGD
  momentum, batch 64, 860 steps;
- char-lstm: embedding 64, 2 x LSTM 256, dense softmax over 65 characters, Adam, gradient
  clipping at 5, batch 32 x 100 steps of BPTT, 313 steps (Tiny Shakespeare's 90% training part).
Each library is timed in a process of its own, as benchmarks/engine.py times its cases: workbench
on every core or `--threads N`, PyTorch at the faster of 1 thread and as many (or as
`--torch-threads` says); the ratios are by minimum, median and CPU time.
"""
from __future__ import annotations

import argparse
import statistics
import sys

from harness import threads_from_argv

if __name__ == "__main__":
    threads_from_argv()  # before NumPy loads OpenBLAS

import numba  # noqa: E402
import numpy as np  # noqa: E402

import nets  # noqa: E402
from nets import F  # noqa: E402
from harness import (RATIO_LEGEND, Case, Measure, add_thread_options, format_table,  # noqa: E402
                     machine_line, run_case_in_processes, run_cases, torch_module, torch_thread_counts)
from workbench.recipes.char_rnn import CharRNN  # noqa: E402
from workbench.recipes.mnist import MLP, LeNet  # noqa: E402

STEPS_PER_EPOCH = {"mnist-mlp b=128": 430, "mnist-cnn b=64": 860, "char-lstm 2x256 b=32 t=100": 313}


def _images(batch: int, flat: bool, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((batch, 1, 28, 28), dtype=np.float32)
    return (x.reshape(batch, -1) if flat else x), rng.integers(0, 10, batch)


def _chars(batch: int, time: int, vocab: int = 65, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, vocab, (batch, time)), rng.integers(0, vocab, (batch, time))


# -- workbench: the recipes' own model classes ----------------------------------------------------
def workbench_classifier(make_model, batch: int, flat: bool):
    def setup():
        nets.seed(0)
        model = make_model()
        optimizer = nets.optim.SGD(model, 0.05, momentum=0.9)
        x, y = _images(batch, flat)

        def step():
            optimizer.zero_grad()
            F.softmax_cross_entropy(model(x), y).backward()
            optimizer.step()
        return step
    return setup


def workbench_char_lstm():
    nets.seed(0)
    model = CharRNN(65, "lstm", 256, 2, 64, dropout=0.1)
    optimizer = nets.optim.Adam(model, 0.002)
    x, y = _chars(32, 100)
    state = [None]

    def step():
        optimizer.zero_grad()
        logits, new_state = model(x, state[0])
        F.softmax_cross_entropy(logits, y).backward()
        nets.optim.clip_grad_norm(optimizer, 5.0)
        optimizer.step()
        state[0] = nets.detach_state(new_state)
    return step


# -- PyTorch: the same models ---------------------------------------------------------------------
def torch_classifier(kind: str, batch: int, flat: bool):
    def setup():
        torch = torch_module()
        nn = torch.nn
        torch.manual_seed(0)
        if kind == "mlp":
            model = nn.Sequential(nn.Linear(784, 800), nn.ReLU(), nn.Dropout(0.2), nn.Linear(800, 10))
        else:
            model = nn.Sequential(nn.Conv2d(1, 20, 5), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(20, 50, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                  nn.Linear(800, 500), nn.ReLU(), nn.Dropout(0.5), nn.Linear(500, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        x, y = _images(batch, flat)
        x, y = torch.from_numpy(x), torch.from_numpy(y)
        loss_fn = nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad()
            loss_fn(model(x), y).backward()
            optimizer.step()
        return step
    return setup


def torch_char_lstm():
    torch = torch_module()
    nn = torch.nn
    torch.manual_seed(0)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(65, 64)
            self.rnn = nn.LSTM(64, 256, num_layers=2, batch_first=True, dropout=0.1)
            self.drop = nn.Dropout(0.1)
            self.head = nn.Linear(256, 65)

        def forward(self, ids, state=None):
            out, state = self.rnn(self.embed(ids), state)
            return self.head(self.drop(out)), state

    model = Model()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.002)
    x, y = (torch.from_numpy(a) for a in _chars(32, 100))
    loss_fn = nn.CrossEntropyLoss()
    state = [None]

    def step():
        optimizer.zero_grad()
        logits, new_state = model(x, state[0])
        loss_fn(logits.reshape(-1, 65), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        state[0] = tuple(s.detach() for s in new_state)
    return step


CASES = [
    Case("mnist-mlp b=128", workbench_classifier(lambda: MLP([784, 800, 10], "relu", 0.2), 128, True),
         torch_classifier("mlp", 128, True), repeats=60),
    Case("mnist-cnn b=64", workbench_classifier(lambda: LeNet((20, 50), 500, "relu", 0.5), 64, False),
         torch_classifier("cnn", 64, False), repeats=40),
    Case("char-lstm 2x256 b=32 t=100", workbench_char_lstm, torch_char_lstm, repeats=15),
]


def epoch_table(results) -> str:
    lines = ["case                         steps/epoch  workbench s/epoch  torch s/epoch  ratio",
             "---------------------------  -----------  -----------------  -------------  -----"]
    for r in results:
        steps = STEPS_PER_EPOCH[r.name]
        wb = statistics.median(r.workbench_ms) * steps / 1e3
        if r.torch_ms:
            th = statistics.median(r.torch_ms) * steps / 1e3
            torch_cells = f"{th:13.1f}  {wb / th:5.2f}"
        else:
            torch_cells = f"{'-':>13}  {'-':>5}"
        lines.append(f"{r.name:<27}  {steps:>11}  {wb:>17.1f}  {torch_cells}")
    return "\n".join(lines)


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list[Measure]:
    """Seconds per epoch of every case, for `python -m benchmarks recipes`."""
    return run_cases(CASES, quick, smoke, full, unit="s/epoch", scale=lambda name: STEPS_PER_EPOCH[name] / 1e3,
                     in_processes=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    parser.add_argument("--only", metavar="TEXT", help="run only cases whose name contains TEXT")
    add_thread_options(parser)
    args = parser.parse_args(argv)
    threads = numba.get_num_threads()
    torch_threads = torch_thread_counts(args, threads)
    print(machine_line(threads, torch_threads))
    results = []
    for case in (c for c in CASES if not args.only or args.only in c.name):
        results.append(run_case_in_processes(case, args.quick, threads, torch_threads))
        print(f"  done: {case.name}", file=sys.stderr, flush=True)
    print(format_table(results))
    print(RATIO_LEGEND + "\n")
    print(epoch_table(results))
    print("an epoch = steps/epoch x the median step (data loading and validation not included)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
