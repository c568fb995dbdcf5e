"""Learning curves: scalars read back from a run's TensorBoard event files, curves averaged over
seeds with a bootstrap interval, and a PNG of them drawn with Pillow (no plotting library).

Event files are TFRecord streams (a length, its CRC, an Event protobuf, its CRC, repeated); the
protobuf classes come with tensorboardX, which writes them.
"""
from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


@dataclass
class Curve:
    """One run's scalar: env steps, seconds since its first point, values."""

    steps: np.ndarray
    seconds: np.ndarray
    values: np.ndarray


def events(path):
    """The events of one TensorBoard event file, in the order written."""
    from tensorboardX.proto.event_pb2 import Event

    data = Path(path).read_bytes()
    offset = 0
    while offset + 12 <= len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        end = offset + 12 + length
        if end + 4 > len(data):  # a record cut short by a killed writer
            break
        yield Event.FromString(data[offset + 12:end])
        offset = end + 4


def scalar_tags(folder) -> list[str]:
    """The tags of the scalars in a run folder's event files, sorted."""
    return sorted({value.tag for path in Path(folder).glob("events.out.tfevents.*") for event in events(path)
                   for value in event.summary.value if value.HasField("simple_value")})


def read_scalars(folder, tag: str) -> Curve:
    """Every point of `tag` in the event files of a run folder, in step order."""
    points = []
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        for event in events(path):
            for value in event.summary.value:
                if value.tag == tag:
                    points.append((event.step, event.wall_time, value.simple_value))
    points.sort(key=lambda point: point[0])
    steps, times, values = (np.array(column, np.float64) for column in zip(*points)) if points else \
        (np.zeros(0),) * 3
    return Curve(steps, times - times[0] if len(times) else times, values)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """The mean of the last `window` values at each point (fewer at the start)."""
    sums = np.cumsum(np.concatenate([[0.0], values]))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def bootstrap_interval(samples, confidence: float = 0.95, resamples: int = 2000,
                       rng: np.random.Generator | None = None) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of `samples` (one value per seed)."""
    samples = np.asarray(samples, np.float64)
    rng = rng if rng is not None else np.random.default_rng(0)
    means = samples[rng.integers(0, len(samples), (resamples, len(samples)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def band(curves: list[Curve], x: str, points: int = 200, window: int = 100):
    """(grid, mean, low, high): each curve smoothed over `window` episodes and read at `points` x
    values up to the shortest run's end (x "steps" or "seconds"); low and high the bootstrap
    interval of the mean over the curves at each x (the mean itself for one curve)."""
    end = min(getattr(c, x)[-1] for c in curves)
    grid = np.linspace(0, end, points)
    rows = np.array([np.interp(grid, getattr(c, x), smooth(c.values, window)) for c in curves])
    mean = rows.mean(axis=0)
    if len(curves) == 1:
        return grid, mean, mean, mean
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(curves), (1000, len(curves)))
    means = rows[picks].mean(axis=1)  # (resamples, points)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return grid, mean, low, high


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    span = max(high - low, 1e-12)
    step = 10 ** np.floor(np.log10(span / count))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if span / (step * m) <= count)
    return [k * step for k in range(math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9) + 1)]


def _label(value: float) -> str:
    value = float(value) + 0.0  # no "-0"
    if abs(value) >= 1e6:
        return f"{value / 1e6:g}M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def draw(groups: dict[str, tuple], x_label: str, y_label: str, title: str, path,
         size: tuple[int, int] = (900, 560)) -> None:
    """A PNG at `path` of each group's (grid, mean, low, high): its mean as a line over a
    translucent band, with axes, ticks and a legend."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 80, 20, 40, 60
    font = ImageFont.load_default(size=14)
    image = Image.new("RGBA", size, "white")
    canvas = ImageDraw.Draw(image)
    xs = [g[0] for g in groups.values()]
    ys = [np.concatenate([g[2], g[3]]) for g in groups.values()]
    x_max = max(float(x[-1]) for x in xs) or 1.0
    y_min, y_max = min(float(y.min()) for y in ys), max(float(y.max()) for y in ys)
    if y_max - y_min < 1e-9:
        y_min, y_max = y_min - 1, y_max + 1
    pad = (y_max - y_min) * 0.05
    y_min, y_max = y_min - pad, y_max + pad

    def at(x, y):
        return (left + (width - left - right) * np.asarray(x) / x_max,
                top + (height - top - bottom) * (y_max - np.asarray(y)) / (y_max - y_min))

    canvas.rectangle([left, top, width - right, height - bottom], outline="black")
    for value in _ticks(0, x_max):
        px, _ = at(value, y_min)
        canvas.line([px, height - bottom, px, height - bottom + 5], fill="black")
        canvas.text((px, height - bottom + 8), _label(value), fill="black", font=font, anchor="ma")
    for value in _ticks(y_min, y_max):
        _, py = at(0, value)
        canvas.line([left - 5, py, left, py], fill="black")
        canvas.line([left, py, width - right, py], fill=(235, 235, 235))
        canvas.text((left - 8, py), _label(value), fill="black", font=font, anchor="rm")
    canvas.text((left + (width - left - right) / 2, height - 22), x_label, fill="black", font=font, anchor="ma")
    canvas.text((left, 12), f"{title}   ({y_label})", fill="black", font=font)
    for (name, (grid, mean, low, high)), color in zip(groups.items(), PALETTE * 3):
        shade = Image.new("RGBA", size, (0, 0, 0, 0))
        upper = list(zip(*at(grid, high)))
        lower = list(zip(*at(grid, low)))[::-1]
        ImageDraw.Draw(shade).polygon(upper + lower, fill=(*color, 60))
        image.alpha_composite(shade)
        canvas = ImageDraw.Draw(image)
        canvas.line(list(zip(*at(grid, mean))), fill=color, width=2)
    for row, (name, color) in enumerate(zip(groups, PALETTE * 3)):
        y = top + 10 + 20 * row
        canvas.line([left + 12, y + 7, left + 36, y + 7], fill=color, width=3)
        canvas.text((left + 42, y), name, fill="black", font=font)
    image.convert("RGB").save(path)
