"""What the recipes share: flags whose defaults a resumed run can tell apart from given ones, the
optimizer and training settings every recipe offers, the run folder, a classification task.
"""
from __future__ import annotations

import argparse
import contextlib
import math
from pathlib import Path

import numpy as np

import nets
from nets import F, checkpoint, settings
from logs import EventWriter
from workbench import training
from workbench.datasets import minibatches
from workbench.runs import RunDir, default_name

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "rmsprop", "adagrad")
# What the command puts in the namespace besides flags: the recipe, its parser, the stop request
# (`should_stop`) and the run folder `open_run` opened.
_INTERNAL = ("command", "run", "recipe", "recipe_command", "recipe_parser", "flag_defaults", "should_stop",
             "run_folder")


# -- flags ------------------------------------------------------------------------------------------
def flag(parser, *names: str, default, help: str, rule: str | None = None, path: bool = False,
         **options) -> None:
    """Add a flag (to a parser or an argument group) whose default is applied after parsing (see
    `resolve`), so that a resumed run knows which flags were given again. `rule` is its range in
    nets.settings' terms (">= 1", "in [0, 1)"), checked by `setup`; a `path` (a file or folder,
    or a dataset's name) is saved absolute where it names one. --help shows the default unless it
    is None, empty or a switch's False (then `help` says what leaving the flag out means, if
    anything)."""
    if default is not None and default != "" and not isinstance(default, bool) and "(default" not in help:
        shown = repr(default) if isinstance(default, str) and default != default.strip() else default
        help = f"{help} (default: {shown})"
    action = parser.add_argument(*names, default=None, help=help, **options)
    action.workbench_default = default
    action.workbench_rule, action.workbench_path = rule, path


def defaults_of(parser: argparse.ArgumentParser) -> dict:
    """dest -> default of every `flag` of a parser, its groups included."""
    return {a.dest: a.workbench_default for a in parser._actions if hasattr(a, "workbench_default")}


def recipe_flags(args: argparse.Namespace) -> list[argparse.Action]:
    """The `flag`s of the recipe being run. Its parser is the `workbench recipe` subcommand of
    that name: the namespace holds only the parent parser (`recipe_parser`)."""
    names = next(a for a in args.recipe_parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in names.choices[args.recipe_command]._actions if hasattr(a, "workbench_default")]


def resolve(args: argparse.Namespace, saved: dict | None = None) -> argparse.Namespace:
    """Fill every flag not given on the command line: from `saved` (a resumed run's config), else
    from the recipe's default."""
    for name, default in args.flag_defaults.items():
        if getattr(args, name, None) is None:
            setattr(args, name, (saved or {}).get(name, default))
    return args


def config_of(args: argparse.Namespace) -> dict:
    """The flags of a run, as saved in its config.json: a path relative to this folder saved
    absolute, so that --resume finds the data from any folder."""
    config = {k: v for k, v in vars(args).items() if k not in _INTERNAL}
    for action in recipe_flags(args):
        value = config.get(action.dest)
        if action.workbench_path and isinstance(value, str) and value and Path(value).exists():
            config[action.dest] = str(Path(value).resolve())
    return config


def add_training_flags(parser, *, epochs: int, batch_size: int, optimizer: str, lr: float,
                       patience: int | None = None, min_epochs: int = 0, schedule: str = "none",
                       lr_floor: float = 0.0, plateau_patience: int = 1, weight_decay: float = 0.0,
                       clip: float | None = None, momentum: float = 0.9) -> None:
    """The flags of the shared training loop, with this recipe's defaults."""
    group = parser.add_argument_group("training")
    flag(group, "--epochs", default=epochs, type=int, rule=">= 1", help="passes over the training data")
    flag(group, "--batch-size", default=batch_size, type=int, rule=">= 1", help="examples per minibatch")
    flag(group, "--optimizer", default=optimizer, choices=OPTIMIZERS, metavar="RULE",
         help=f"update rule: {', '.join(OPTIMIZERS)}")
    flag(group, "--lr", default=lr, type=float, rule=">= 0", help="learning rate")
    flag(group, "--momentum", default=momentum, type=float, rule="in [0, 1)",
         help="momentum of sgd momentum/nesterov")
    flag(group, "--weight-decay", default=weight_decay, type=float, rule=">= 0",
         help="L2 penalty coefficient")
    flag(group, "--l1", default=0.0, type=float, rule=">= 0", help="L1 penalty coefficient")
    flag(group, "--clip", default=clip, type=float, rule="> 0",
         help="clip the global gradient norm to this" + ("" if clip else " (default: no clipping)"))
    flag(group, "--schedule", default=schedule, choices=("none", "plateau", "linear"),
         help="learning-rate annealing: halve on a validation-loss plateau, or linear to --lr-floor")
    flag(group, "--lr-floor", default=lr_floor, type=float, rule=">= 0",
         help="annealing never goes below this")
    flag(group, "--plateau-patience", default=plateau_patience, type=int, rule=">= 0",
         help="epochs without a better validation loss before --schedule plateau halves the rate")
    flag(group, "--patience", default=patience, type=int, rule=">= 0",
         help="stop after this many epochs without a better validation metric"
              + ("" if patience else " (default: never stop early)"))
    flag(group, "--min-epochs", default=min_epochs, type=int, rule=">= 0",
         help="early stopping never stops before this many epochs")
    flag(group, "--seed", default=0, type=int, help="seed of initial weights, shuffling and dropout")
    # 1 by default: on 2 cores two threads ran an epoch 1.1-1.5x faster idle and 2.1-6.4x slower
    # beside two busy processes (benchmarks/recipe_threads.py): BLAS waits on preempted threads
    flag(group, "--threads", default=1, type=int, rule=">= 0",
         help="Numba and BLAS threads; 1 keeps a run steady on a shared machine, more pay on an idle "
              "one with many cores (0: all cores)")
    flag(group, "--device", default="cpu", choices=nets.backend.DEVICES,
         help="where the model trains: cpu, or gpu (CuPy and an NVIDIA GPU: pip install -e \".[gpu]\")")
    run = parser.add_argument_group("run folder")
    flag(run, "--logdir", default="runs", help="parent folder of run folders")
    flag(run, "--name", default="", help="run folder name (default: RECIPE-DATE-TIME)")
    flag(run, "--resume", default="", metavar="RUN",
         help="continue the run in folder RUN (or RUN/config.json) from its last checkpoint, "
              "mid-epoch where it was stopped; its config.json supplies every flag not given "
              "again (e.g. --epochs 20 trains further)")
    flag(run, "--log-every", default=50, type=int, rule=">= 1", help="steps between train/loss points")
    flag(run, "--no-progress", default=False, action="store_true", help="no progress bar")
    flag(run, "--histograms", default=False, action="store_true",
         help="weight/bias histograms in TensorBoard each epoch (default: none, so that TensorBoard "
              "opens on the curves)")
    flag(run, "--check", default=False, action="store_true",
         help="engine check mode: stop at the first NaN/Inf and name the op and layer, or the "
              "parameter, where it appeared (slower)")


def make_optimizer(model, args) -> nets.optim.Optimizer:
    """The --optimizer over `model` (a Module, moved to --device first, or FlatParameters)."""
    if isinstance(model, nets.Module):
        model.to(args.device)
    decay = dict(weight_decay=args.weight_decay, l1=args.l1)
    if args.optimizer == "sgd":
        return nets.optim.SGD(model, args.lr, **decay)
    if args.optimizer in ("momentum", "nesterov"):
        return nets.optim.SGD(model, args.lr, momentum=args.momentum,
                              nesterov=args.optimizer == "nesterov", **decay)
    if args.optimizer == "adam":
        return nets.optim.Adam(model, args.lr, **decay)
    if args.optimizer == "rmsprop":
        return nets.optim.RMSProp(model, args.lr, **decay)
    return nets.optim.Adagrad(model, args.lr, **decay)


def fit_config(args) -> training.FitConfig:
    return training.FitConfig(
        epochs=args.epochs, patience=args.patience, min_epochs=args.min_epochs,
        schedule=args.schedule, lr_floor=args.lr_floor, plateau_patience=args.plateau_patience,
        clip=args.clip, log_every=args.log_every,
        histograms=args.histograms, progress=not args.no_progress, seed=args.seed,
        should_stop=args.should_stop)


def set_threads(args) -> None:
    """--threads limits Numba and BLAS alike: on a shared machine one thread each keeps a run's
    speed steady, where multi-threaded BLAS waits on preempted threads."""
    if args.threads:
        nets.threads.limit(args.threads)


# -- run folder -------------------------------------------------------------------------------------
class RecipeError(ValueError):
    """A flag or input the recipe cannot use; the message says which and what would work."""


class RunFinished(Exception):
    """The run to --resume has nothing left to train; the message says so, and how to go on."""


def saved_config(run: str | Path, recipe: str) -> dict:
    """The flags saved in a `recipe` run folder's config.json (for --resume)."""
    folder = RunDir.resumed(run)
    config = folder.read_config()
    if "agent" in config:
        raise RecipeError(f"--resume {run}: a `workbench train` run; continue it with workbench train "
                          f"--resume {folder.path}")
    if "recipe" not in config or "args" not in config:
        raise RecipeError(f"--resume {run}: its config.json was not written by `workbench recipe`")
    if config["recipe"] != recipe:
        raise RecipeError(f"--resume {run}: a {config['recipe']} run; continue it with workbench recipe "
                          f"{config['recipe']} --resume {folder.path}")
    return config["args"]


def setup(args) -> argparse.Namespace:
    """Fill the flags (from the resumed run's config.json where not given again, so a resumed
    run's saved values are checked too), check every flag's rule and the device, set the thread
    count and check mode, and seed the engine. Call before loading data and building the model:
    a resumed run with nothing left to train raises RunFinished here, before either."""
    resolve(args, saved_config(args.resume, args.recipe_command) if args.resume else None)
    try:
        for action in recipe_flags(args):
            if action.workbench_rule:
                settings.check(action.option_strings[0], getattr(args, action.dest), action.workbench_rule)
        nets.backend.check_device(args.device)
    except ValueError as error:
        raise RecipeError(str(error)) from None
    if args.resume:
        run = RunDir.resumed(args.resume)
        latest = run.latest_checkpoint()
        reason = latest and training.finished(checkpoint.read_meta(latest), args.epochs)
        if reason:
            raise RunFinished(f"run {run.name} is finished: {reason}")
    set_threads(args)
    nets.set_check_mode(args.check)
    nets.seed(args.seed)
    return args


def open_run(args, recipe: str) -> RunDir:
    """The resumed run folder, or a new one holding this run's config.json; also `args.run_folder`,
    where the command finds it when the run stops."""
    if args.resume:  # flags given again (e.g. more --epochs) hold for later resumes too
        run = RunDir.resumed(args.resume).claim()  # held until the process ends
        run.remove_stale_temporaries()
    else:
        run = RunDir.create(args.logdir, args.name or default_name(recipe), chosen=bool(args.name)).claim()
    run.write_config({"recipe": recipe, "args": {**config_of(args), "resume": ""}})
    args.run_folder = run
    return run


@contextlib.contextmanager
def events_for(run: RunDir):
    """The run's TensorBoard writer, closed (and flushed) however the block ends."""
    events = EventWriter(str(run.path))
    try:
        yield events
    finally:
        events.close()


# -- classification ---------------------------------------------------------------------------------
class ClassificationTask:
    """Inputs -> class logits with softmax cross-entropy; metrics: loss and accuracy.

    `splits` maps 'train', 'val' and optionally 'test' to (inputs, labels) arrays.
    """

    monitor = ("loss", "min")
    cross_entropy = True  # a loss that training lowers: fit warns when it climbs

    def __init__(self, model: nets.Module, splits: dict, batch_size: int, eval_batch: int = 1000):
        if batch_size < 1:
            raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
        self.model, self.splits = model, splits
        self.batch_size, self.eval_batch = batch_size, eval_batch

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.splits["train"][0]) / self.batch_size)

    def batches(self, rng):
        return minibatches(self.splits["train"], self.batch_size, rng)

    def loss(self, batch):
        x, y = batch
        return F.softmax_cross_entropy(self.model(x), y)

    def logits(self, x) -> np.ndarray:
        """Logits of many inputs, in evaluation batches (host array)."""
        return np.concatenate([nets.backend.to_host(self.model(x[i:i + self.eval_batch]).data)
                               for i in range(0, len(x), self.eval_batch)])

    def evaluate(self, split: str) -> dict[str, float]:
        if split not in self.splits:
            return {}
        x, y = self.splits[split]
        logits = self.logits(x)
        return {"loss": softmax_loss(logits, y), "accuracy": float((logits.argmax(axis=1) == y).mean())}


def softmax_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of integer labels under softmax(logits), on host arrays (evaluation)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -float(log_probs[np.arange(len(labels)), labels].mean())


def report(run: RunDir, result: training.FitResult, extra: list[str] = ()) -> list[str]:
    """The closing lines of a run: printed, and written to the run's summary.txt."""
    lines = summary(run, result, extra)
    print("\n".join(lines))
    run.write_summary(lines)
    return lines


def summary(run: RunDir, result: training.FitResult, extra: list[str] = ()) -> list[str]:
    """A run's summary.txt lines: its folder, epochs and steps, best epoch, metrics, then `extra`."""
    lines = [f"run folder: {run.path}",
             f"epochs: {result.epochs} ({result.steps} steps)"
             + (", stopped early" if result.stopped_early else "")
             + f"; {result.seconds:.1f} s in this session"]
    if result.best_epoch:
        lines.append(f"best epoch: {result.best_epoch}")
    for split, metrics in (("val", result.val), ("test", result.test)):
        if metrics:
            lines.append(f"{split}: " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
    lines.extend(extra)
    return lines
