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
    """A subcommand's parser (and its own subcommands'): an argument it does not know is its
    error, under its own usage line. argparse leaves it to the top parser, whose usage names no
    subcommand and whose message does not say which one's flags to look at."""

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


def failed(command: str, error, code: int = 2) -> int:
    """Say `error` on one line, as argparse does ("workbench train: error: ..."); return `code`
    (2: bad input, 1: a failure at run time)."""
    print(f"workbench {command}: error: {error}", file=sys.stderr)
    return code
