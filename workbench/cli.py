"""`workbench` console script: one subcommand per module in workbench.commands."""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

import workbench
from workbench.commands import CommandParser, HelpFormatter

# Each module defines `add_parser(subparsers)` (registering its flags) and `run(args) -> int`.
COMMANDS = ["doctor", "train", "agents", "play", "plot", "recipe"]


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog="workbench",
        description="Parallel reinforcement learning and supervised recipes on a NumPy/Numba/CuPy engine.",
        formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"workbench {workbench.__version__}")
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


def _build_parser_noting_ctrl_c(noted: list) -> argparse.ArgumentParser:
    """build_parser, with a Ctrl-C while the commands import noted in `noted`: a C extension's
    module init (Numba's) turns the KeyboardInterrupt into an ImportError that keeps no trace
    of it. The handler raises KeyboardInterrupt as Python's own does, and is put back after."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return build_parser()  # Ctrl-C ignored, or handled by someone else: theirs to keep

    def note(signum, frame):
        noted.append(signum)
        signal.default_int_handler(signum, frame)
    signal.signal(signal.SIGINT, note)
    try:
        return build_parser()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def main(argv: list[str] | None = None) -> int:
    if hasattr(sys.stdout, "reconfigure"):  # progress lines reach a pipe or log file as they come
        sys.stdout.reconfigure(line_buffering=True)
    ctrl_c = []
    try:  # a Ctrl-C while the commands import (the first second) is one line too
        parser = _build_parser_noting_ctrl_c(ctrl_c)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help()
            return 2
        return args.run(args) or 0
    except (KeyboardInterrupt, Exception) as error:
        if not (ctrl_c or _interrupted(error)):
            raise
        print("interrupted", file=sys.stderr)
        # A Ctrl-C that lands inside an exec() (a namedtuple or dataclass made while the commands
        # import) leaves CPython marking the interrupt unhandled, and `python -m` then ends by
        # SIGINT instead of exiting 130, caught or not; an exec that ends normally clears the mark.
        exec("")
        return 130


if __name__ == "__main__":
    sys.exit(main())
