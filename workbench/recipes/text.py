"""Text helpers shared by the text recipes."""
from __future__ import annotations

import re

_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)
_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.MULTILINE | re.IGNORECASE)


def strip_gutenberg(text: str) -> str:
    """The book without Project Gutenberg's header and license, where their markers are present
    (otherwise the text unchanged): the license is not the author's prose."""
    start, end = _START.search(text), _END.search(text)
    body = text[start.end() if start else 0:end.start() if end else len(text)].strip("\n")
    return body + "\n" if body else ""
