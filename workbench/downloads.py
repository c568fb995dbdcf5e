"""Datasets that arrive by themselves: the recipes' standard data (MNIST, Tiny Shakespeare) are
looked for in a data folder and downloaded there when absent, from their canonical mirrors, with a
progress bar, checked against published checksums and written atomically.

The data folder is $WORKBENCH_DATA if set, else `workbench` under the user's cache folder
($XDG_CACHE_HOME, else ~/.cache); a dataset lives in a subfolder named after it. A recipe's own
`--data FOLDER` / `--text FILE` bypasses all of this. Offline (or with WORKBENCH_OFFLINE=1, which
never downloads), the error names the files and the folder to put them in.
"""
from __future__ import annotations

import hashlib
import os
import http.client
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from workbench.datasets import DatasetError

CHUNK = 1 << 16
TIMEOUT_S = 30


class DownloadError(DatasetError):
    """A dataset could not be fetched or failed its checksum; the message says what to do instead."""


@dataclass(frozen=True)
class Remote:
    """One file of a dataset: its name in the dataset's folder, the mirrors tried in order, and the
    checksum its publisher (or a well-known loader) gives, as "algorithm:hexdigest"."""

    name: str
    urls: tuple[str, ...]
    checksum: str
    size: int


_MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",  # torchvision's
                  "https://storage.googleapis.com/cvdf-datasets/mnist/")  # TensorFlow's
# MD5s of the original gzip files, as torchvision.datasets.MNIST checks them
_MNIST = (("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422),
          ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881),
          ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877),
          ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542))

DATASETS: dict[str, tuple[Remote, ...]] = {
    "mnist": tuple(Remote(name, tuple(m + name for m in _MNIST_MIRRORS), f"md5:{md5}", size)
                   for name, md5, size in _MNIST),
    # the char-rnn corpus as Karpathy published it; TensorFlow Datasets pins the same SHA-256
    "tiny-shakespeare": (Remote(
        "input.txt",
        ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",),
        "sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394),),
}


def data_root() -> Path:
    """Where datasets live: $WORKBENCH_DATA, else the user's cache folder."""
    if os.environ.get("WORKBENCH_DATA"):
        return Path(os.environ["WORKBENCH_DATA"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "workbench"


def where(dataset: str) -> str:
    """Where `dataset` is kept, in words for --help (data_root() resolves it)."""
    return f"$WORKBENCH_DATA/{dataset}, else ~/.cache/workbench/{dataset}"


def offline() -> bool:
    """WORKBENCH_OFFLINE set (to anything but 0): nothing is downloaded."""
    return os.environ.get("WORKBENCH_OFFLINE", "") not in ("", "0")


def present(folder: Path, remote: Remote) -> bool:
    """A file counts as present under its name, or decompressed (without .gz), as users unpack it."""
    return (folder / remote.name).is_file() or (folder / remote.name.removesuffix(".gz")).is_file()


def fetch(dataset: str) -> Path:
    """The folder holding every file of `dataset`, downloading the ones missing. A plain file kept
    under its own name is checked against its checksum; a .gz one is not (gzip by hand makes
    other bytes of the same content: the loader checks what it reads)."""
    folder = data_root() / dataset
    for remote in DATASETS[dataset]:
        if not remote.name.endswith(".gz") and (folder / remote.name).is_file():
            _check(folder / remote.name, remote)
    missing = [r for r in DATASETS[dataset] if not present(folder, r)]
    if missing and offline():
        raise DownloadError(f"{dataset} is not in {folder} and WORKBENCH_OFFLINE is set; "
                            f"{manual_route(dataset, folder)}")
    for remote in missing:
        download(remote, folder, dataset)
    return folder


def manual_route(dataset: str, folder: Path) -> str:
    names = ", ".join(r.name for r in DATASETS[dataset])
    return f"put {names} into {folder} (or set WORKBENCH_DATA to a folder holding {dataset}/)"


def download(remote: Remote, folder: Path, dataset: str) -> Path:
    """Fetch `remote` into `folder` from the first mirror that delivers it whole and with the
    right checksum, through a temporary file that becomes the file only then: an interrupted,
    truncated or corrupt download leaves nothing behind."""
    created = [path for path in (folder, *folder.parents) if not path.exists()]  # deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DownloadError(f"cannot create the data folder {folder} ({error.strerror}); set "
                            f"WORKBENCH_DATA to a writable folder") from None
    target = folder / remote.name
    partial = folder / f".{remote.name}.{os.getpid()}.part"  # beside the target: the rename is atomic
    failures = []
    for url in remote.urls:
        try:
            digest = _copy(url, partial, remote)
        # unreachable, refused, timed out, cut short (http.client's IncompleteRead)
        except (OSError, http.client.HTTPException) as error:
            failures.append(f"{url}: {getattr(error, 'reason', None) or error}")
            continue
        algorithm, expected = remote.checksum.split(":")
        if digest != expected:  # a changed or broken mirror: try the next
            partial.unlink(missing_ok=True)
            failures.append(f"{url}: {algorithm} of the download is {digest}, expected {expected}")
            continue
        os.replace(partial, target)
        return target
    for path in created:  # the folders made for it, while empty
        try:
            path.rmdir()
        except OSError:
            break
    raise DownloadError(f"cannot download {dataset}'s {remote.name} ({'; '.join(failures)}); "
                        f"nothing was kept. To work offline, {manual_route(dataset, folder)}")


def _check(path: Path, remote: Remote) -> None:
    """A DownloadError unless the file at `path` has `remote`'s checksum."""
    algorithm, expected = remote.checksum.split(":")
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    if hasher.hexdigest() != expected:
        raise DownloadError(f"{path} is not the published {remote.name} ({path.stat().st_size:,} bytes, "
                            f"{algorithm} {hasher.hexdigest()}; expected {remote.size:,} bytes, {expected}): "
                            f"delete it to download it again")


def _copy(url: str, partial: Path, remote: Remote) -> str:
    """Stream `url` into `partial`, returning the hex digest of what arrived; removes `partial` on
    any failure, Ctrl-C included. The byte bar shows on a terminal only (tqdm's disable=None)."""
    algorithm = remote.checksum.split(":")[0]
    hasher = hashlib.new(algorithm)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(partial, "wb") as out, \
                tqdm(total=int(response.headers.get("Content-Length") or remote.size), unit="B",
                     unit_scale=True, desc=remote.name, disable=None, leave=False) as bar:
            received = 0
            while chunk := response.read(CHUNK):
                out.write(chunk)
                hasher.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            length = response.headers.get("Content-Length")
            if length is not None and received != int(length):
                raise OSError(f"the connection closed after {received:,} of {int(length):,} bytes")
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return hasher.hexdigest()


def text_file(value: str | Path) -> Path:
    """A `--text` value: a file, or the name of a corpus in DATASETS (fetched when absent)."""
    path = Path(value)
    if str(value) in DATASETS and not path.exists():
        return fetch(str(value)) / DATASETS[str(value)][0].name
    return path
