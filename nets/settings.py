"""Settings: each one's type and range declared once, beside its default, and checked in one place.

    @dataclass
    class Config(Settings):
        lr: float = setting(1e-2, ">= 0")
        gamma: float = setting(0.99, "in [0, 1]")
        optimizer: str = setting("adam", "one of adam, rmsprop")

A rule is ">= x", "> x", "<= x", "< x", "in [a, b]" (either bracket round for an open end) or
"one of a, b, c"; a tuple's entries are checked one by one. Ranges are checked whenever a
Settings dataclass is made; `from_dict` builds one from JSON values (a list stands for a tuple)
and also checks names and types. Every failure is a one-line ValueError naming the setting, the
value and what would be right ("gamma must be in [0, 1], got 1.5"). `check` is the range check
alone: the recipes' command-line flags use it.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import re
import typing

_COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_INTERVAL = re.compile(r"in ([\[(])\s*(\S+),\s*(\S+)\s*([\])])$")
_EXPECTED = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
             dict: "a JSON object"}


def setting(default, rule: str | None = None, **options) -> dataclasses.Field:
    """A dataclass field with its range rule (a mutable default, e.g. a dict, is copied for each
    instance)."""
    metadata = {"rule": rule} if rule else {}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata, **options)
    return dataclasses.field(default=default, metadata=metadata, **options)


def satisfies(value, rule: str) -> bool:
    """Whether `value` (a number, a string, or a tuple of them, each checked) keeps `rule`;
    None keeps every rule (an optional setting left out). NaN keeps none."""
    if value is None:
        return True
    if isinstance(value, (tuple, list)):
        return all(satisfies(v, rule) for v in value)
    if rule.startswith("one of "):
        return str(value) in [choice.strip() for choice in rule[len("one of "):].split(",")]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    interval = _INTERVAL.match(rule)
    if interval:
        opening, low, high, closing = interval.groups()
        above = value >= float(low) if opening == "[" else value > float(low)
        below = value <= float(high) if closing == "]" else value < float(high)
        return above and below
    symbol, _, bound = rule.partition(" ")
    if symbol not in _COMPARISONS:
        raise ValueError(f"unknown rule {rule!r}")
    return _COMPARISONS[symbol](value, float(bound))


def check(name: str, value, rule: str) -> None:
    """A one-line ValueError unless `value` keeps `rule` (an infinite number keeps no range)."""
    if isinstance(value, float) and not math.isfinite(value) and not rule.startswith("one of "):
        raise ValueError(f"{name} must be a finite number {rule}, got {value}")
    if not satisfies(value, rule):
        what = f"{name} entries" if isinstance(value, (tuple, list)) else name
        shown = list(value) if isinstance(value, tuple) else value
        raise ValueError(f"{what} must be {rule}, got {shown!r}")


class Settings:
    """Base of settings dataclasses: every field with a rule is checked when one is made.
    `label(field)` is how messages name a field (command-line settings show their flag's form)."""

    @staticmethod
    def label(name: str) -> str:
        return name

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if "rule" in f.metadata:
                check(self.label(f.name), getattr(self, f.name), f.metadata["rule"])


def from_dict(settings_class, values: dict, what: str | None = None):
    """A settings dataclass from a dict of JSON values: unknown keys, values of the wrong type
    and values out of range are one-line ValueErrors; `what` names the settings' owner in them
    (e.g. "a3c"; default: the class's name)."""
    fields = sorted(f.name for f in dataclasses.fields(settings_class))
    label = getattr(settings_class, "label", Settings.label)
    unknown = sorted(set(values) - set(fields))
    if unknown:  # keys are named as they are written (a config file's), not by their flag's form
        close = [match for key in unknown for match in difflib.get_close_matches(key, fields, n=1)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        owner, plural = what or settings_class.__name__, "s" if len(unknown) > 1 else ""
        raise ValueError(f"{owner} has no setting{plural} {', '.join(unknown)}{hint}; its "
                         f"settings: {', '.join(fields)}")
    hints = typing.get_type_hints(settings_class)
    return settings_class(**{key: typed(label(key), value, hints[key]) for key, value in values.items()})


def typed(name: str, value, hint):
    """`value` as the type `hint` names (int, float, bool, str, dict, tuple[int, ...], X | None)."""
    optional = type(None) in typing.get_args(hint)
    if optional:
        if value is None:
            return None
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and number:
        return float(value)
    if hint is int and number and float(value).is_integer():
        return int(value)
    if hint in (bool, str, dict) and isinstance(value, hint):
        return value
    if typing.get_origin(hint) is tuple and isinstance(value, (list, tuple)) \
            and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return tuple(value)
    expected = "a list of integers like [64, 64]" if typing.get_origin(hint) is tuple else _EXPECTED[hint]
    raise ValueError(f"{name} must be {expected}{' or null' if optional else ''}, got {value!r}")
