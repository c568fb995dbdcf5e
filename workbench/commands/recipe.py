"""`workbench recipe`: list the supervised recipes, or run one with its own flags."""
from __future__ import annotations

import numpy as np

from nets import NonFiniteError
from nets.checkpoint import CheckpointError
from workbench.commands import HelpFormatter, failed
from workbench.datasets import DatasetError
from workbench.recipes import common, recipes
from workbench.runs import RunError, stop_signals, undone_if_failed
from workbench.training import Stopped, TrainingError

BAD_INPUT = (common.RecipeError, DatasetError, CheckpointError, RunError)  # exit 2
FAILURES = (TrainingError, NonFiniteError, OSError)  # at run time: exit 1


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "recipe", help="supervised recipes: MNIST MLP/CNN, char-RNN, embeddings, RBM/DBN, GAN, STN, "
                       "ResNet, sentiment, seq2seq, memory networks",
        description="Train a supervised recipe into a run folder under --logdir (TensorBoard events, "
                    "checkpoints every epoch, config.json, summary.txt). Ctrl-C or SIGTERM stops "
                    "after the current step with a checkpoint; --resume RUN continues it, mid-epoch. "
                    "`workbench recipe list` names them; `workbench recipe NAME --help` shows a "
                    "recipe's flags.",
        formatter_class=HelpFormatter)
    names = parser.add_subparsers(dest="recipe_command", metavar="NAME")
    names.add_parser("list", help="list the recipes", description="List the recipes.")
    for recipe in recipes().values():
        sub = names.add_parser(recipe.name, help=recipe.description.replace("%", "%%"),
                               description=recipe.details or recipe.description,
                               formatter_class=HelpFormatter)
        recipe.add_arguments(sub)
        sub.set_defaults(recipe=recipe, flag_defaults=common.defaults_of(sub))
    parser.set_defaults(recipe_parser=parser)
    return parser


def run(args) -> int:
    if args.recipe_command is None:
        args.recipe_parser.print_help()
        return 2
    if args.recipe_command == "list":
        table = recipes()
        width = max(len(name) for name in table)
        for name, recipe in table.items():
            print(f"{name:<{width}}  {recipe.description}")
        return 0
    try:
        # training reports a NaN/Inf itself, naming the step (and in check mode the op): NumPy's
        # warnings would only say that one appeared somewhere
        with stop_signals() as received, undone_if_failed(), \
                np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            args.should_stop = lambda step: bool(received)
            return args.recipe.run(args)
    except common.RunFinished as finished:  # a clean outcome: nothing was loaded or built
        print(finished, flush=True)
        return 0
    except Stopped as stop:  # a requested stop is no failure: the checkpoint resumes it exactly
        run = args.run_folder
        resume = f"workbench recipe {args.recipe_command} --resume {run.path}"
        run.write_summary(common.summary(run, stop.result, [
            f"stopped by {received[0]} at step {stop.result.steps:,}, {stop.batches:,} of "
            f"{stop.steps_per_epoch:,} batches into epoch {stop.result.epochs + 1}; continue with: {resume}"]))
        print(f"stopped by {received[0]} at step {stop.result.steps:,}; checkpoint saved. "
              f"Continue with: {resume}", flush=True)
        return 0
    except BAD_INPUT as error:
        return failed(f"recipe {args.recipe_command}", error)
    except FAILURES as error:
        return failed(f"recipe {args.recipe_command}", error, 1)
