"""Supervised recipes, run with `workbench recipe NAME [flags]`.

Each recipe module registers one or more `Recipe`s: a name, a one-line description (what
`workbench recipe list` shows), a function adding its own flags to an argparse parser and a
function that runs it. Modules are imported on demand by `recipes()`.
"""
from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from typing import Callable

MODULES = ["caesar", "mnist", "char_rnn", "cbow", "energy", "gan", "stn", "resnet", "sentiment", "seq2seq", "dmn", "mnist_sequence"]


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    details: str = ""  # longer --help text: the model, its published anchor, the data it reads


_REGISTRY: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    if recipe.name in _REGISTRY:
        raise ValueError(f"recipe {recipe.name!r} is registered twice")
    _REGISTRY[recipe.name] = recipe
    return recipe


def recipes() -> dict[str, Recipe]:
    """Every registered recipe by name, in the order of MODULES."""
    for module in MODULES:
        importlib.import_module(f"{__name__}.{module}")
    order = {f"{__name__}.{module}": i for i, module in enumerate(MODULES)}
    # by module, not by registration: a caller may have imported some modules first
    return {r.name: r for r in sorted(_REGISTRY.values(), key=lambda r: order[r.run.__module__])}
