"""Checkpoints of trained recipe runs, for commands that use a model without training it
(char-rnn --generate, sentiment --predict, seq2seq --translate)."""
from __future__ import annotations

from pathlib import Path

from nets import checkpoint
from workbench import training
from workbench.recipes import common
from workbench.runs import RunDir


def find(source: str | Path, recipe: str) -> tuple[Path, dict, RunDir | None]:
    """(checkpoint path, its meta, the run folder or None) of `source`: a run folder (its best
    checkpoint, else its latest) or a checkpoint file, written by `recipe`."""
    path, run = Path(source), None
    if path.is_dir():
        run = RunDir.existing(path)
        best = training.best_checkpoint(run)
        path = best if best.exists() else run.checkpoint_path()
    elif (path.parent.parent / "config.json").is_file():
        run = RunDir(path.parent.parent)
    meta = checkpoint.read(path)[0]["meta"]
    if meta.get("recipe") != recipe:
        written = (f"{meta['recipe']}'s" if meta.get("recipe") else
                   f"{meta['agent']}'s on {meta['env']}, of workbench train" if "agent" in meta else "no recipe's")
        raise common.RecipeError(f"--from {source}: {path} is not a {recipe} checkpoint but {written}; "
                                 f"name a run of workbench recipe {recipe}")
    return path, meta, run
