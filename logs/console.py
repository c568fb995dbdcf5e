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


def progress_line(step: int, total: int, fps: float, mean_return: float | None, episodes: int,
                  elapsed: float) -> str:
    """e.g. `step 12,000/30,000  40% | 9,870 steps/s | return 123.4 (last 100) | 310 episodes |
    0:04 elapsed, ETA 0:02`."""
    share = 100.0 * step / total if total else 100.0
    eta = (total - step) / fps if fps > 0 else math.inf
    ret = "return    - " if mean_return is None else f"return {mean_return:7.1f} (last 100)"
    return (f"step {step:,}/{total:,} {share:3.0f}% | {fps:8,.0f} steps/s | {ret} | "
            f"{episodes:,} episodes | {format_duration(elapsed)} elapsed, ETA {format_duration(eta)}")
