"""Datasets for the recipes: IDX images (MNIST, Fashion-MNIST), text corpora and vocabularies,
splits, minibatches, PCA whitening. The recipes' standard data download by themselves
(workbench.downloads); these functions read files that are there.
"""
from __future__ import annotations

import collections
import gzip
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MNIST_SOURCE = ("the MNIST IDX files (train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], "
                "t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]; Fashion-MNIST uses the same names)")
ANY_MNIST = "leave --data out to use MNIST itself, downloaded once"

# IDX type codes (third byte of the magic number) -> dtype; data are big-endian.
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(ValueError):
    """A data file is missing or not in the expected format; the message names the file."""


def _open_maybe_gzip(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DatasetError(f"data file not found: {path}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as error:
            raise DatasetError(f"{path}: gzip data is truncated or corrupt ({error})") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or raw): magic 0x0000TTDD (type TT, DD dimensions), DD big-endian
    uint32 sizes, then the data. Header and size are validated."""
    path = Path(path)
    raw = _open_maybe_gzip(path)
    layout = "expected IDX layout: 2 zero bytes, a type byte, a dimension count, sizes, data"
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (magic {raw[:4].hex() or 'missing'}; {layout})")
    ndim = raw[3]
    header_size = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header_size:
        raise DatasetError(f"{path}: IDX header is truncated ({layout})")
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header_size + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{path}: size {len(raw)} bytes does not match its header (magic "
                           f"{raw[:4].hex()}: shape {shape} of {dtype.name} needs {expected} bytes); "
                           f"truncated, or a wrong magic?")
    return np.frombuffer(raw, dtype=dtype, offset=header_size).reshape(shape).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DatasetError(f"missing {folder / stem}[.gz]: --data names a folder holding {MNIST_SOURCE}; "
                       f"{ANY_MNIST}")


def load_mnist(folder: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels int64 (n,)) from the standard IDX file names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"--data folder not found: {folder}; it should hold {MNIST_SOURCE}, or "
                           f"{ANY_MNIST}")
    images_name, labels_name = MNIST_FILES[split]
    images_path, labels_path = _find(folder, images_name), _find(folder, labels_name)
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, array in ((images_path, images), (labels_path, labels)):
        if array.dtype != np.uint8:  # what the tasks' scaling (/ 255) and class count assume
            raise DatasetError(f"{path}: MNIST files hold unsigned bytes (IDX type 08, magic "
                               f"0000080N), not {array.dtype.name}")
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(f"{folder}: {split} images {images.shape} and labels {labels.shape} "
                           "do not pair up (expected (n, rows, cols) and (n,))")
    wrong = np.flatnonzero(labels > 9)
    if wrong.size:
        raise DatasetError(f"{labels_path}: labels must be 0-9; label {wrong[0]} is {labels[wrong[0]]} "
                           f"({wrong.size:,} of {labels.size:,} are outside 0-9)")
    return images, labels.astype(np.int64)


# -- text ------------------------------------------------------------------------------------
MAX_TEXT_BYTES = 256 * 2**20  # a text file read whole: Tiny Shakespeare is 1 MiB


def read_text(path: str | Path) -> str:
    """The text of a UTF-8 file of at most MAX_TEXT_BYTES, which must hold some."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise DatasetError(f"{path} is not a regular file; expected a UTF-8 text file")
    if path.is_file() and path.stat().st_size > MAX_TEXT_BYTES:
        raise DatasetError(f"{path} holds {path.stat().st_size / 2**20:,.0f} MiB; texts are read whole, "
                           f"up to {MAX_TEXT_BYTES // 2**20} MiB")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig drops a BOM (Gutenberg texts have one)
    except FileNotFoundError:
        raise DatasetError(f"text file not found: {path}") from None
    except UnicodeDecodeError as error:
        raise DatasetError(f"{path}: not UTF-8 text ({error})") from None
    except OSError as error:  # a directory, no permission...
        raise DatasetError(f"cannot read {path}: {error.strerror}; expected a UTF-8 text file") from None
    if not text:
        raise DatasetError(f"{path} is empty; expected a UTF-8 text")
    return text


@dataclass
class Vocabulary:
    """Tokens <-> integer ids. Unknown tokens map to `unknown` when the vocabulary has one."""

    tokens: list[str]
    unknown: str | None = None

    def __post_init__(self):
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def of_chars(cls, text: str) -> "Vocabulary":
        return cls(sorted(set(text)))

    @classmethod
    def of_words(cls, words: list[str], min_count: int = 1, unknown: str = "<unk>") -> "Vocabulary":
        counts = collections.Counter(words)
        kept = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        return cls([unknown] + kept, unknown=unknown)

    def encode(self, tokens) -> np.ndarray:
        if self.unknown is None:
            missing = sorted({t for t in tokens if t not in self.index})
            if missing:
                raise DatasetError(f"tokens not in the vocabulary: {missing[:10]}")
            return np.fromiter((self.index[t] for t in tokens), dtype=np.int64, count=len(tokens))
        fallback = self.index[self.unknown]
        return np.fromiter((self.index.get(t, fallback) for t in tokens), dtype=np.int64, count=len(tokens))

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"tokens": self.tokens, "unknown": self.unknown}

    @classmethod
    def from_json(cls, data: dict) -> "Vocabulary":
        return cls(list(data["tokens"]), data.get("unknown"))


def words(text: str) -> list[str]:
    """Lower-case word tokens (letters, digits and apostrophes)."""
    return re.findall(r"[a-z0-9']+", text.lower())


# -- splitting and batching ------------------------------------------------------------------
def split_indices(n: int, fractions: tuple[float, ...], seed: int = 0) -> list[np.ndarray]:
    """A seeded permutation of range(n) cut by `fractions` (the last part takes the remainder)."""
    if not 0 < sum(fractions) <= 1:
        raise ValueError(f"split fractions must sum to at most 1, got {fractions}")
    order = np.random.default_rng(seed).permutation(n)
    cuts = np.cumsum([int(round(f * n)) for f in fractions[:-1]])
    return np.split(order, cuts)


def minibatches(arrays: tuple[np.ndarray, ...], batch_size: int, rng: np.random.Generator | None = None
                ) -> Iterator[tuple[np.ndarray, ...]]:
    """Batches over the first axis, in a fresh random order each call when `rng` is given."""
    n = len(arrays[0])
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, batch_size):
        picked = order[start:start + batch_size]
        yield tuple(a[picked] for a in arrays)


def bptt_batches(ids: np.ndarray, batch_size: int, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(inputs, targets) of shape (batch, seq_len) for truncated BPTT with carried state.

    The stream is cut into `batch_size` contiguous rows, so row b of one batch continues row b of
    the previous one and the recurrent state can be carried across batches.
    """
    rows = (len(ids) - 1) // batch_size
    if rows < seq_len:
        raise DatasetError(f"text of {len(ids)} tokens is too short for batch {batch_size} x "
                           f"sequence {seq_len}; use a smaller batch or sequence length")
    inputs = ids[:rows * batch_size].reshape(batch_size, rows)
    targets = ids[1:rows * batch_size + 1].reshape(batch_size, rows)
    for start in range(0, rows - seq_len + 1, seq_len):
        yield inputs[:, start:start + seq_len], targets[:, start:start + seq_len]


class PCAWhitening:
    """Zero-mean, decorrelated, unit-variance features (from the course slides), fitted on training
    data: x -> (x - mean) V / sqrt(lambda + eps), keeping `components` directions if given."""

    def __init__(self, components: int | None = None, eps: float = 1e-5):
        self.components, self.eps = components, eps

    def fit(self, x: np.ndarray) -> "PCAWhitening":
        x = x.reshape(len(x), -1).astype(np.float64)
        self.mean = x.mean(axis=0)
        covariance = np.cov(x - self.mean, rowvar=False)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        order = np.argsort(eigenvalues)[::-1][:self.components]
        self.projection = (eigenvectors[:, order] / np.sqrt(eigenvalues[order] + self.eps)).astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (x.reshape(len(x), -1).astype(np.float32) - self.mean) @ self.projection
