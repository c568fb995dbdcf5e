"""What the image recipes share (mnist-mlp, mnist-cnn, mnist-rbm, mnist-dbn, mnist-gan,
mnist-stn, resnet, mnist-sequence): IDX data flags and loading, a training subset for quick runs,
image logging, and run stages (several training phases in one run folder, each with its own
checkpoints and events)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from logs import EventWriter
from nets import backend
from logs.images import add_image, png, tile
from workbench import downloads
from workbench.datasets import load_mnist, split_indices
from workbench.recipes import common


def add_data_flags(parser, validation: int = 5000) -> None:
    group = parser.add_argument_group("data")
    common.flag(group, "--data", default=None, metavar="FOLDER", path=True,
                help="folder with IDX files named like MNIST's (train-images-idx3-ubyte[.gz], "
                     f"train-labels-idx1-ubyte[.gz], t10k-...); default: MNIST, downloaded once "
                     f"into {downloads.where('mnist')}")
    common.flag(group, "--validation", default=validation, type=int, rule=">= 1",
                help="training images held out for validation")
    common.flag(group, "--limit", default=0, type=int, rule=">= 0",
                help="train on only this many of the remaining training images (0: all)")


def load(args, images: bool) -> dict:
    """Train/val/test splits with pixels in [0, 1]: (n, pixels) rows or (n, 1, h, w) images."""
    splits = _mnist_splits(args.data, args.validation, args.seed, images=images)
    if args.limit:
        x, y = splits["train"]
        splits["train"] = (x[:args.limit], y[:args.limit])
    return splits


def _mnist_splits(folder, validation: int, seed: int, images: bool) -> dict:
    """Train/val/test splits as float32 in [0, 1]: (n, 784) rows, or (n, 1, 28, 28) images."""
    if folder is None:
        folder = downloads.fetch("mnist")
    x_train, y_train = load_mnist(folder, "train")
    x_test, y_test = load_mnist(folder, "test")
    if not 0 < validation < len(x_train):
        raise common.RecipeError(f"--validation must be between 1 and {len(x_train) - 1}, "
                                 f"got {validation}")
    share = validation / len(x_train)
    train_idx, val_idx = split_indices(len(x_train), (1 - share, share), seed)
    shape = (-1, 1, *x_train.shape[1:]) if images else (-1, int(np.prod(x_train.shape[1:])))

    def prepare(x):
        return (x.astype(np.float32) / np.float32(255)).reshape(shape)

    return {"train": (prepare(x_train[train_idx]), y_train[train_idx]),
            "val": (prepare(x_train[val_idx]), y_train[val_idx]),
            "test": (prepare(x_test), y_test)}


def sizes(text: str, flag: str) -> list[int]:
    """Comma-separated positive integers (layer sizes, channel widths) from a flag's value."""
    try:
        values = [int(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise common.RecipeError(f"{flag} takes comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise common.RecipeError(f"{flag} takes positive integers, got {text!r}")
    return values


def image_shape(x: np.ndarray) -> tuple[int, int]:
    """(height, width) of a split stored as images or as rows of a square image."""
    if x.ndim == 4:
        return x.shape[2], x.shape[3]
    side = int(round(np.sqrt(x.shape[1])))
    if side * side != x.shape[1]:
        raise common.RecipeError(f"rows of {x.shape[1]} pixels are not square images")
    return side, side


def log_images(events, run, tag: str, images, step: int, columns: int | None = None,
               scale_each: bool = False) -> None:
    """Tile (n, h, w) images into TensorBoard under `tag` and into RUN/images/<tag>.png."""
    grid = tile(backend.to_host(images), columns, scale_each=scale_each)
    add_image(events, tag, grid, step)
    path = Path(run.path) / "images" / f"{tag.replace('/', '-')}.png"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(png(grid))


class Stage:
    """One training phase of a run: checkpoints in checkpoints/<name>/ and TensorBoard events in
    <name>/ (shown as their own run in TensorBoard). It offers the run-folder interface that
    training.fit uses."""

    def __init__(self, run, name: str):
        self.run, self.name = run, name
        self.path = Path(run.path) / name

    def checkpoint_path(self) -> Path:
        return Path(self.run.path) / "checkpoints" / self.name / "latest.npz"

    def started(self) -> bool:
        return self.checkpoint_path().is_file()

    def events(self) -> EventWriter:
        return EventWriter(str(self.path))
