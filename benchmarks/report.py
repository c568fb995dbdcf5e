"""Tables, the results file and the comparison of two results files, for `python -m benchmarks`.

Pure functions over harness.Measure (and plain dicts read from JSON): nothing here times anything.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from harness import UsageError

FORMAT = "workbench-benchmarks"
VERSION = 1
NOISE_FLOOR = 0.10  # changes below 10% are never flagged: the machines we run on are shared


def _figure(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _cell(value, best) -> str:
    return _figure(value) + (f" (min {_figure(best)})" if value is not None and best is not None else "")


def _table(header: tuple, rows: list[tuple]) -> str:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 or i == len(header) - 1 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
             for row in (header, *rows)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def suite_table(measures) -> str:
    """measure | unit | workbench | peer (name) | ratio | note; medians with minima where timed."""
    rows = []
    for m in measures:
        if m.peer is not None:
            peer = _cell(m.peer, m.peer_min)
        else:  # a missing peer says so; a measure not run at all leaves both sides empty
            peer = "not installed" if m.workbench is not None and "not installed" in m.note else "-"
        ratio = m.ratio
        rows.append((m.name, m.unit, _cell(m.workbench, m.workbench_min), f"{m.peer_name}: {peer}",
                     "-" if ratio is None else f"{ratio:.2f}", m.note))
    return _table(("measure", "unit", "workbench", "peer", "ratio", "note"), rows)


def results_document(machine: dict, mode: str, suites: dict) -> dict:
    """`suites`: name -> (seconds taken, list of Measure)."""
    return {"format": FORMAT, "version": VERSION, "mode": mode, "machine": machine,
            "suites": {name: {"seconds": round(seconds, 1), "measures": [asdict(m) for m in measures]}
                       for name, (seconds, measures) in suites.items()}}


def write(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")


def load(path: Path) -> dict:
    """A results file, or a UsageError saying what is wrong with it."""
    try:
        document = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"--compare: no such file: {path}") from None
    except (OSError, ValueError) as error:
        raise UsageError(f"--compare: {path} is not a results file ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or "suites" not in document:
        raise UsageError(f"--compare: {path} is not a results file (no \"format\": \"{FORMAT}\"; "
                         "write one with python -m benchmarks --json PATH)")
    return document


def _threshold(old: dict, new: dict) -> float:
    """Twice the larger relative spread of the two runs' samples, at least NOISE_FLOOR."""
    spreads = [m.get("spread") or 0.0 for m in (old, new)]
    return max(NOISE_FLOOR, 2 * max(spreads))


def compare(old: dict, new: dict) -> list[dict]:
    """Per measure in both documents: old and new workbench figures, the change in percent and a
    flag ("slower"/"faster" for times, "worse"/"better" for rates, "" within noise)."""
    rows = []
    for suite, content in new["suites"].items():
        before = {m["name"]: m for m in old["suites"].get(suite, {}).get("measures", [])}
        for m in content["measures"]:
            o = before.get(m["name"])
            row = {"suite": suite, "name": m["name"], "unit": m["unit"],
                   "old": o["workbench"] if o else None, "new": m["workbench"], "change": None, "flag": ""}
            if o and o["workbench"] and m["workbench"] is not None:
                change = m["workbench"] / o["workbench"] - 1
                row["change"] = 100 * change
                if abs(change) > _threshold(o, m):
                    improved = (change < 0) == (m.get("better", "lower") == "lower")
                    if m.get("better", "lower") == "lower":
                        row["flag"] = "faster" if improved else "slower"
                    else:
                        row["flag"] = "better" if improved else "worse"
            rows.append(row)
    return rows


def comparison_table(rows: list[dict]) -> str:
    body = [(f"{r['suite']}: {r['name']}", r["unit"], _figure(r["old"]), _figure(r["new"]),
             "-" if r["change"] is None else f"{r['change']:+.1f}%", r["flag"]) for r in rows]
    return _table(("measure", "unit", "old", "new", "change", "beyond noise"), body)
