"""One-line console progress: steps, env frames/s, mean episode return, ETA."""
from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def progress_line(step: int, total: int, fps: float, returns: list[float], episodes: int,
                  elapsed: float, eta: float, busy: float | None = None) -> str:
    """e.g. `step 12,000/30,000  40% | 9,870 steps/s | return 201.3 last 10, 123.4 last 100 |
    310 episodes | 0:04 elapsed, ETA 0:02 | learner busy 35%`; `returns` are the latest episodes'
    returns, `fps` the recent rate, `eta` seconds (inf when unknown), `busy` the recent share of
    the learner's time spent updating and publishing (near 100%: the learner is the bottleneck)."""
    share = 100.0 * step / total if total else 100.0
    if returns:
        recent, window = returns[-10:], returns[-100:]
        ret = (f"return {sum(recent) / len(recent):5.1f} last {len(recent)}, "
               f"{sum(window) / len(window):5.1f} last {len(window)}")
    else:
        ret = "return - (no episode has ended yet)"
    return (f"step {step:,}/{total:,} {share:3.0f}% | {fps:7,.0f} steps/s | {ret} | "
            f"{episodes:,} episodes | {format_duration(elapsed)} elapsed, ETA {format_duration(eta)}"
            + ("" if busy is None else f" | learner busy {100 * busy:.0f}%"))
