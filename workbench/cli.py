"""`workbench` console script: one subcommand per module in workbench.commands."""
from __future__ import annotations

import argparse
import importlib
import sys

from workbench.commands import HelpFormatter

# Each module defines `add_parser(subparsers)` (registering its flags) and `run(args) -> int`.
COMMANDS = ["doctor", "train", "agents", "play", "plot", "recipe"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Parallel reinforcement learning and supervised recipes on a NumPy/Numba/CuPy engine.",
        formatter_class=HelpFormatter)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"workbench.commands.{name.replace('-', '_')}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(run=module.run)
    return parser


def _interrupted(error: BaseException | None) -> bool:
    """Whether a Ctrl-C is behind `error`: Python 3.11 wraps a KeyboardInterrupt raised while a
    dataclass is made (its fields' __set_name__) in a RuntimeError, and an import cut short by one
    can fail again, with another error, while it is handled."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach a pipe or log file as they come
        sys.stdout.reconfigure(line_buffering=True)
    try:  # a Ctrl-C while the commands import (the first second) is one line too
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return args.run(args) or 0
    except (KeyboardInterrupt, Exception) as error:
        if not _interrupted(error):
            raise
        print("interrupted", file=sys.stderr)
        # A Ctrl-C that lands inside an exec() (a namedtuple or dataclass made while the commands
        # import) leaves CPython marking the interrupt unhandled, and `python -m` then ends by
        # SIGINT instead of exiting 130, caught or not; an exec that ends normally clears the mark.
        exec("")
        return 130


if __name__ == "__main__":
    sys.exit(main())
