"""Subcommands of the `workbench` CLI, one module each."""
from __future__ import annotations

import argparse
import sys
import textwrap


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog to the terminal's width, and keeps
    indented lines (examples) as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        lines, prose = [], []

        def end_paragraph():
            if prose:
                lines.append(textwrap.fill(" ".join(prose), width, initial_indent=indent,
                                           subsequent_indent=indent))
                prose.clear()

        for line in text.splitlines():
            if not line.strip() or line[0].isspace():
                end_paragraph()
                lines.append(indent + line if line.strip() else "")
            else:
                prose.append(line.strip())
        end_paragraph()
        return "\n".join(lines)


class CommandParser(argparse.ArgumentParser):
    """The parser of `workbench` and of each (sub)command: a bad argument is one line naming the
    command whose flags to look at, e.g. `workbench recipe mnist-cnn: error: unrecognized
    arguments: --limt 9 (see workbench recipe mnist-cnn --help)`. argparse would print the usage
    block first, and leave an unknown argument to the top parser, which names no subcommand; so
    here parse_known_args leaves nothing unknown (no caller wants extras)."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def failed(command: str, error, code: int = 2) -> int:
    """Say `error` on one line, as argparse does ("workbench train: error: ..."); return `code`
    (2: bad input, 1: a failure at run time)."""
    print(f"workbench {command}: error: {error}", file=sys.stderr)
    return code
