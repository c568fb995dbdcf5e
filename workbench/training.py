"""The training loop every supervised recipe shares.

A recipe describes its problem as a `Task` (the model, one epoch of training batches, the loss of
a batch, evaluation of a split); `fit` does the rest: epochs with a fresh permutation each,
validation, early stopping, learning-rate annealing, gradient clipping, TensorBoard scalars and
histograms, the update-to-weight ratio, a checkpoint every epoch and resuming from it, and a stop
on request (`FitConfig.should_stop`) between two steps, mid-epoch, with a checkpoint from which a
resumed run continues exactly as an uninterrupted one would.

Early stopping follows the course slides' algorithm (Goodfellow et al., Deep Learning, alg. 7.1):
after each epoch the validation metric is compared with the best so far; an improvement saves
the parameters, `patience` epochs in a row without one stop training (never before
`min_epochs`), and the best parameters are restored at the end.

The run folder (`workbench.runs.RunDir`) and the TensorBoard writer (`logs.EventWriter`) are
passed in, as `workbench train` uses them: checkpoints go to the run's `checkpoints/latest.npz`
(written atomically after every epoch and at a stop, with everything needed to resume in its
meta) and `checkpoints/best.npz` (the best parameters so far).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol

import numpy as np
from tqdm import tqdm

import nets
from nets import backend, checkpoint
from nets import rng as nets_rng

BEST = "best.npz"


class TrainingError(RuntimeError):
    """Training cannot go on: the loss or the weights became NaN/Inf."""


class Stopped(Exception):
    """`fit` stopped because `FitConfig.should_stop` asked, after saving the checkpoint that
    resumes it. `result`: the run so far (the last epoch's validation, no test); `batches`: the
    batches done of the epoch in progress, of `steps_per_epoch`."""

    def __init__(self, result: "FitResult", batches: int, steps_per_epoch: int):
        super().__init__(f"stopped at step {result.steps:,}")
        self.result, self.batches, self.steps_per_epoch = result, batches, steps_per_epoch


class Task(Protocol):
    """What a recipe gives the loop.

    `model`: the Module being trained. `monitor`: the validation metric that picks the best
    epoch, and whether lower ('min') or higher ('max') is better.
    """

    model: nets.Module
    monitor: tuple[str, str]

    def steps_per_epoch(self) -> int: ...

    def batches(self, rng: np.random.Generator) -> Iterable[Any]:
        """One epoch of training batches (shuffled with `rng` where order does not matter)."""

    def loss(self, batch) -> nets.Tensor:
        """The scalar training loss of one batch (the model is in training mode)."""

    def evaluate(self, split: str) -> dict[str, float]:
        """Metrics on 'val' or 'test' (the model is in eval mode, no graph is recorded);
        must include 'loss'. Return {} for a split the task does not have."""

    # Optional: `end_of_epoch(events, epoch, step)`, called after validation in eval mode;
    # `cross_entropy = True` for a positive loss that training lowers (fit then warns if it climbs).


@dataclass
class FitConfig:
    epochs: int = 10
    patience: int | None = None  # epochs without improvement before stopping; None: never stop
    min_epochs: int = 0  # early stopping never stops before this many epochs
    schedule: str = "none"  # 'none', 'plateau' (halve on a validation plateau) or 'linear'
    lr_floor: float = 0.0  # the annealed learning rate never goes below this
    plateau_patience: int = 2
    plateau_factor: float = 0.5
    clip: float | None = None  # max global gradient norm
    log_every: int = 50  # steps between train/loss and update-ratio points
    histograms: bool = False  # weight/bias histograms each epoch
    restore_best: bool = True
    progress: bool = True
    seed: int = 0
    # Asked before every step with the steps done so far: True stops the run there (fit saves a
    # checkpoint, then raises Stopped). The recipe command's SIGINT/SIGTERM handler answers it.
    should_stop: Callable[[int], bool] = field(default=lambda step: False, repr=False, compare=False)


@dataclass
class FitResult:
    epochs: int  # epochs completed in total (resumed ones included)
    steps: int
    best_epoch: int  # 1-based; 0 when there was no validation
    best: float | None  # the monitored validation metric at best_epoch
    stopped_early: bool
    val: dict[str, float] = field(default_factory=dict)  # metrics of the returned parameters
    test: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # wall time of this call
    history: list[dict] = field(default_factory=list)  # per epoch: train loss, val metrics, lr, time


@dataclass
class _EarlyStopping:
    best: float | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def improved(self, value: float, mode: str) -> bool:
        if self.best is None:
            return True
        return value < self.best if mode == "min" else value > self.best


def make_schedule(optimizer: nets.optim.Optimizer, config: FitConfig):
    """The learning-rate schedule the config names, stepped once per epoch (None for 'none')."""
    if config.schedule == "none":
        return None
    if config.schedule == "plateau":
        return nets.optim.PlateauDecay(optimizer, factor=config.plateau_factor,
                                       patience=config.plateau_patience, min_lr=config.lr_floor)
    if config.schedule == "linear":
        # the last epoch trains at the floor
        return nets.optim.LinearDecay(optimizer, optimizer.lr, config.lr_floor, max(config.epochs - 1, 1))
    raise ValueError(f"unknown schedule {config.schedule!r}; expected 'none', 'plateau' or 'linear'")


def best_checkpoint(run) -> Path:
    """Where `fit` keeps the best parameters of a run (beside its latest.npz)."""
    return run.checkpoint_path().with_name(BEST)


def update_ratios(flat, before) -> dict[str, float]:
    """||delta|| / ||w|| of the last update, overall (`charts/update_ratio`) and per parameter
    (`update_ratio/<name>`). About 1e-3 is healthy; far above, the learning rate is too high;
    far below, too low."""
    xp = backend.get_array_module(flat.data)
    delta = flat.data - before
    ratios, offset = {}, 0
    for name, shape in zip(flat.names, flat.shapes):
        n = math.prod(shape)
        norm = float(xp.linalg.norm(before[offset:offset + n]))
        if norm > 0:
            ratios[f"update_ratio/{name}"] = float(xp.linalg.norm(delta[offset:offset + n])) / norm
        offset += n
    ratios["charts/update_ratio"] = float(xp.linalg.norm(delta)) / max(float(xp.linalg.norm(before)), 1e-12)
    return ratios


def _rng_state(generator: np.random.Generator) -> dict:
    return generator.bit_generator.state


def _set_rng_state(generator: np.random.Generator, state: dict) -> None:
    generator.bit_generator.state = state


def finished(meta: dict, epochs: int) -> str | None:
    """Why a run whose latest checkpoint holds `meta` has nothing left to train in `epochs`
    epochs, in words; None when it has."""
    stopping = meta["early_stopping"]
    if stopping["stopped"]:
        return (f"early stopping ended it at epoch {meta['epoch']} (best epoch "
                f"{stopping['best_epoch']}); nothing left to train")
    if meta["epoch"] >= epochs:
        return f"{meta['epoch']} of {epochs} epochs; pass --epochs N to train further"
    return None


def _val_of(record: dict) -> dict[str, float]:
    """The validation metrics of a `history` record."""
    return {k[4:]: v for k, v in record.items() if k.startswith("val_")}


DIVERGING = 2.0  # an epoch's mean training loss this many times the first step's: a warning
_END = object()  # the end of an epoch's batches


def fit(task: Task, optimizer: nets.optim.Optimizer, config: FitConfig, run, events,
        resume: bool = False, meta: dict | None = None, log=print) -> FitResult:
    """Train `task.model` with `optimizer`; write TensorBoard events through `events` (a
    logs.EventWriter) and checkpoints into `run` (a workbench.runs.RunDir). With `resume`,
    continue from the run's latest checkpoint: epoch, step, parameters, optimizer state,
    schedule, early-stopping state and random generators, and for a checkpoint of a stop the
    epoch's batches done and loss sums. When `config.should_stop` says so, save that checkpoint
    and raise Stopped.

    `meta` (JSON-ready) goes into every checkpoint, so that a checkpoint alone can rebuild its
    model (e.g. the architecture and vocabulary of a char-rnn for generation).
    """
    meta = dict(meta or {})
    started = time.perf_counter()
    model, monitor, mode = task.model, task.monitor[0], task.monitor[1]
    latest, best = run.checkpoint_path(), best_checkpoint(run)
    schedule = make_schedule(optimizer, config)
    stopping = _EarlyStopping()
    data_rng = np.random.default_rng(config.seed)
    epoch, step, history, best_state = 0, 0, [], None
    in_epoch = None  # from a checkpoint written mid-epoch (at a stop): how far that epoch got

    if resume:
        try:
            saved = checkpoint.load(latest, model, optimizer)
        except checkpoint.ModelMismatch as error:
            raise checkpoint.ModelMismatch(f"{error}; the run's model is built from its config.json "
                                           f"and the flags given again: leave out those that change "
                                           f"its sizes, or start a new run") from None
        epoch, step, history = saved["epoch"], saved["step"], saved["history"]
        if schedule is not None:
            if saved["schedule"] is None:
                raise checkpoint.CheckpointError(f"{latest} was written without a learning-rate "
                                                 f"schedule; resume with --schedule none")
            schedule.load_state_dict(saved["schedule"])
        stopping = _EarlyStopping(**saved["early_stopping"])
        _set_rng_state(data_rng, saved["data_rng"])
        _set_rng_state(nets_rng.generator(), saved["nets_rng"])
        in_epoch = saved.get("in_epoch")
        if best.exists():
            _, arrays = checkpoint.read(best)
            best_state = {k[len(checkpoint.MODEL):]: v for k, v in arrays.items()
                          if k.startswith(checkpoint.MODEL)}
        log(f"resumed from {latest}: epoch {epoch}, step {step}"
            + (f", {in_epoch['batches']} batches into epoch {epoch + 1}" if in_epoch else ""))
        if stopping.stopped:
            log(f"the run stopped early at epoch {epoch} (best epoch {stopping.best_epoch}); "
                f"nothing left to train")

    steps_per_epoch = task.steps_per_epoch()
    flat = model.flat()
    bar = tqdm(total=config.epochs * steps_per_epoch,
               initial=epoch * steps_per_epoch + (in_epoch["batches"] if in_epoch else 0),
               disable=not config.progress, unit="step", dynamic_ncols=True, mininterval=1.0)
    say = bar.write if config.progress else log  # lines printed through the bar keep it intact
    # This session's first training loss, what divergence rises from, for cross-entropy tasks
    # (positive, lowered by training; a GAN's generator loss rises as its discriminator learns).
    first_loss, warned = None, not getattr(task, "cross_entropy", False)

    def save_latest(data_rng_state: dict, progress_in_epoch: dict | None = None) -> None:
        checkpoint.save(latest, model, optimizer, meta={
            **meta, "epoch": epoch, "step": step, "history": history,
            "schedule": None if schedule is None else schedule.state_dict(),
            "early_stopping": asdict(stopping),
            "data_rng": data_rng_state, "nets_rng": _rng_state(nets_rng.generator()),
            **({"in_epoch": progress_in_epoch} if progress_in_epoch else {})})

    try:
        while epoch < config.epochs and not stopping.stopped:
            epoch_start = time.perf_counter()
            bar.set_description(f"epoch {epoch + 1}/{config.epochs}")
            model.train()
            epoch_rng = _rng_state(data_rng)  # a stop saves it: resuming rebuilds the same batches
            batches = iter(task.batches(data_rng))
            total, count, window = 0.0, 0, []
            if in_epoch:
                # The batches done are made again and skipped, which leaves the data generator (and
                # any a task keeps) where the stop left it; the engine's state saved at the stop
                # already counts their draws.
                engine = _rng_state(nets_rng.generator())
                for _ in range(in_epoch["batches"]):
                    next(batches)
                _set_rng_state(nets_rng.generator(), engine)
                total, count, window = in_epoch["loss_total"], in_epoch["batches"], in_epoch["window"]
                in_epoch = None
            while True:
                if config.should_stop(step):  # between steps, so the checkpoint holds whole ones
                    # at an epoch's start nothing is in progress: an epoch-end checkpoint
                    save_latest(epoch_rng, {"batches": count, "loss_total": total, "window": window}
                                if count else None)
                    raise Stopped(FitResult(epochs=epoch, steps=step, best_epoch=stopping.best_epoch,
                                            best=stopping.best, stopped_early=False,
                                            val=_val_of(history[-1]) if history else {},
                                            seconds=time.perf_counter() - started, history=history),
                                  count, steps_per_epoch)
                batch = next(batches, _END)
                if batch is _END:
                    break
                optimizer.zero_grad()
                loss = task.loss(batch)
                loss.backward()
                value = loss.item()  # read once the backward pass is queued: a GPU's queue stays full
                if not math.isfinite(value):
                    raise TrainingError(f"the training loss became {value} at step {step + 1} "
                                        f"(epoch {epoch + 1}); lower --lr or set --clip")
                if config.clip:
                    nets.optim.clip_grad_norm(optimizer, config.clip)
                measure = step % config.log_every == 0
                before = flat.data.copy() if measure else None
                optimizer.step()
                step += 1
                total, count = total + value, count + 1
                first_loss = value if first_loss is None else first_loss
                window.append(value)
                if measure:
                    events.scalars({"train/loss": float(np.mean(window)),
                                    "charts/learning_rate": optimizer.lr,
                                    **update_ratios(flat, before)}, step)
                    window = []
                bar.update(1)
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
            if not bool(backend.get_array_module(flat.data).isfinite(flat.data).all()):
                raise TrainingError(f"the weights became NaN/Inf in epoch {epoch + 1} (by step "
                                    f"{step}); lower --lr or set --clip")
            train_loss = total / max(count, 1)
            epoch += 1
            if not warned and first_loss is not None and train_loss > DIVERGING * first_loss:
                warned = True  # finite but climbing: the run goes on, the user hears it once
                say(f"warning: the training loss rose from {first_loss:.4g} (first step) to "
                    f"{train_loss:.4g} (epoch {epoch} mean); training is diverging: lower --lr or set --clip")

            model.eval()
            with nets.no_grad():
                val = task.evaluate("val")
            seconds = time.perf_counter() - epoch_start
            events.scalars({**{f"val/{name}": v for name, v in val.items()},
                            "charts/epoch": epoch, "charts/epoch_seconds": seconds}, step)
            end_of_epoch = getattr(task, "end_of_epoch", None)
            if end_of_epoch is not None:  # e.g. a text sample, an analogy score
                with nets.no_grad():
                    end_of_epoch(events, epoch, step)
            record = {"epoch": epoch, "step": step, "train_loss": train_loss, "lr": optimizer.lr,
                      "seconds": seconds, **{f"val_{k}": v for k, v in val.items()}}
            history.append(record)

            if val:
                current = val[monitor]
                if stopping.improved(current, mode):
                    stopping.best, stopping.best_epoch, stopping.bad_epochs = current, epoch, 0
                    best_state = model.state_dict()
                    checkpoint.save(best, model,
                                    meta={**meta, "epoch": epoch, "step": step, monitor: current})
                else:
                    stopping.bad_epochs += 1
                    if (config.patience is not None and stopping.bad_epochs >= config.patience
                            and epoch >= config.min_epochs):
                        stopping.stopped = True
            if isinstance(schedule, nets.optim.PlateauDecay):
                if val:
                    schedule.step(val["loss"])
            elif schedule is not None:
                schedule.step()
            if config.histograms:
                events.histograms(model, step)
            save_latest(_rng_state(data_rng))  # the next epoch's start
            shown = [f"train loss {train_loss:.4f}", *(f"val {k} {v:.4f}" for k, v in val.items()),
                     f"lr {record['lr']:.3g}", f"{seconds:.1f} s"]
            say(f"epoch {epoch}/{config.epochs}  " + "  ".join(shown)
                + ("  (best)" if stopping.best_epoch == epoch else ""))
            if stopping.stopped:
                say(f"early stopping: no improvement of val {monitor} for "
                    f"{stopping.bad_epochs} epochs; best was epoch {stopping.best_epoch}")
            events.writer.flush()
    finally:
        bar.close()

    model.eval()
    restore = config.restore_best and best_state is not None and stopping.best_epoch != epoch
    if restore:
        model.load_state_dict(best_state)
        log(f"restored the parameters of epoch {stopping.best_epoch} "
            f"(val {monitor} {stopping.best:.4f})")
    with nets.no_grad():
        trained_now = history and history[-1]["epoch"] == epoch and not restore
        val = _val_of(history[-1]) if trained_now else task.evaluate("val")
        test = task.evaluate("test")
    events.scalars({f"test/{name}": v for name, v in test.items()}, step)
    events.writer.flush()
    return FitResult(epochs=epoch, steps=step, best_epoch=stopping.best_epoch, best=stopping.best,
                     stopped_early=stopping.stopped, val=val, test=test,
                     seconds=time.perf_counter() - started, history=history)
