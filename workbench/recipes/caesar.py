"""`caesar`: the seed essay's first network, 26-100-26, learns a shift cipher (a -> b, ..., z -> a).

One-hot letter in, a sigmoid hidden layer of 100, softmax over 26 letters out. The data are
random letters made from --seed, so the recipe needs no files: the smallest end-to-end example
of the workbench and its smoke test.
"""
from __future__ import annotations

import string

import numpy as np

import nets
from nets import F
from workbench import training
from workbench.recipes import Recipe, common, register

LETTERS = string.ascii_lowercase


class CaesarNet(nets.Module):
    def __init__(self, hidden: int = 100):
        super().__init__()
        self.hidden = nets.Linear(26, hidden, initializer=lambda s: nets.init.glorot_uniform(s, 4.0))
        self.out = nets.Linear(hidden, 26)

    def forward(self, x):
        return self.out(F.sigmoid(self.hidden(x)))


def one_hot(ids: np.ndarray) -> np.ndarray:
    return np.eye(26, dtype=np.float32)[ids]


def letters(n: int, shift: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n random letters (one-hot) and their shifted letters (ids)."""
    ids = rng.integers(0, 26, n)
    return one_hot(ids), (ids + shift) % 26


def encrypt(model: nets.Module, text: str) -> str:
    """Run `text` through the network letter by letter; other characters pass unchanged."""
    out = []
    with nets.no_grad():
        for ch in text:
            if ch.lower() in LETTERS:
                guess = LETTERS[int(model(one_hot(np.array([LETTERS.index(ch.lower())]))).data.argmax())]
                out.append(guess.upper() if ch.isupper() else guess)
            else:
                out.append(ch)
    return "".join(out)


def add_arguments(parser) -> None:
    group = parser.add_argument_group("caesar")
    common.flag(group, "--shift", default=1, type=int, help="the cipher's shift")
    common.flag(group, "--hidden", default=100, type=int, rule=">= 1", help="hidden sigmoid units")
    common.flag(group, "--samples", default=2600, type=int, rule=">= 1",
                help="random training letters per epoch set")
    common.flag(group, "--message", default="the quick brown fox jumps over the lazy dog",
                help="text to encrypt with the trained network at the end")
    common.add_training_flags(parser, epochs=10, batch_size=10, optimizer="sgd", lr=0.5, patience=3)


def run(args) -> int:
    common.setup(args)
    rng = np.random.default_rng(args.seed)
    splits = {"train": letters(args.samples, args.shift, rng),
              "val": letters(max(args.samples // 5, 26), args.shift, rng),
              "test": (one_hot(np.arange(26)), (np.arange(26) + args.shift) % 26)}
    model = CaesarNet(args.hidden)
    task = common.ClassificationTask(model, splits, args.batch_size)
    optimizer = common.make_optimizer(model, args)
    run_folder = common.open_run(args, "caesar")
    with common.events_for(run_folder) as events:
        result = training.fit(task, optimizer, common.fit_config(args), run_folder, events,
                              resume=bool(args.resume), meta={"recipe": "caesar", "hidden": args.hidden})
        ciphertext = encrypt(model, args.message)
        events.writer.add_text("caesar/message", f"{args.message} -> {ciphertext}", result.steps)
    common.report(run_folder, result, [f"alphabet: {LETTERS} -> {encrypt(model, LETTERS)}",
                                       f"message:  {args.message} -> {ciphertext}"])
    return 0


register(Recipe("caesar", "26-100-26 network learns a shift-1 Caesar cipher (no data needed; a smoke test)",
                add_arguments, run, details=__doc__))
