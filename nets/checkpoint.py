"""Checkpoints: a model's state, an optimizer's state and a JSON header in one `.npz` file.

Layout of the archive (plain `np.savez`, readable with `np.load(path, allow_pickle=False)`):
    __header__         uint8 array holding UTF-8 JSON: format, version, the model's entries
                       (name, shape, dtype), the optimizer's type and keys, and `meta`
    model/<name>       one array per entry of `model.state_dict()`
    optimizer/<key>    one array per entry of `optimizer.state_dict()`

Writes are atomic: a temporary file in the same directory is written, fsynced and renamed over
the target, so a crash leaves the previous checkpoint intact (a killed process may leave a
`.NAME.*.tmp` file beside it, never a damaged checkpoint; a resumed run folder removes
it). Non-finite weights are never written. Loading never unpickles, and every problem is a
`CheckpointError` with a one-line message that names it.
"""
from __future__ import annotations

import functools
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "workbench-checkpoint"
VERSION = 1
HEADER = "__header__"
MODEL, OPTIMIZER = "model/", "optimizer/"


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, of another format, or that does not fit the model."""


class ModelMismatch(CheckpointError):
    """A sound checkpoint of another model: other parameters, shapes or dtypes."""


def save(path, model, optimizer=None, meta: dict | None = None) -> None:
    """Write `model` (and `optimizer`, and the JSON-serializable `meta`) to `path` atomically."""
    path = os.fspath(path)
    model_state = model.state_dict()
    arrays = {MODEL + name: value for name, value in model_state.items()}
    header = {
        "format": FORMAT, "version": VERSION,
        "model": {"type": type(model).__name__,
                  "entries": [{"name": name, "shape": list(value.shape), "dtype": value.dtype.str}
                              for name, value in model_state.items()]},
        "optimizer": None,
        "meta": meta if meta is not None else {},
    }
    if optimizer is not None:
        optimizer_state = optimizer.state_dict()
        arrays.update({OPTIMIZER + key: value for key, value in optimizer_state.items()})
        header["optimizer"] = {"type": type(optimizer).__name__, "keys": sorted(optimizer_state)}
    for key, value in arrays.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise CheckpointError(f"refusing to write {path}: {key} holds NaN or Inf (the training "
                                  f"diverged); the file already there is kept")
    try:
        text = json.dumps(header)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"meta must be JSON-serializable: {error}") from None
    arrays[HEADER] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    _write_atomically(path, arrays)


@functools.cache  # read once: reading the umask sets it, for a moment, in every thread
def new_file_mode() -> int:
    """The mode open() gives a new file: 0666 less the umask (mkstemp's files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _write_atomically(path: str, arrays: dict) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, new_file_mode())  # readable as the run's other files are, by whoever plays it
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
    try:  # make the rename itself durable; not every platform can open a directory
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a checkpoint, for tools that inspect it without a model. Array keys
    keep their `model/` and `optimizer/` prefixes; the header is not among them."""
    path = os.fspath(path)
    # reading every member to its end makes zipfile verify each CRC
    arrays = _members(path, lambda archive: {key: archive[key] for key in archive.files})
    header = _header(path, arrays.pop(HEADER, None))
    try:
        listed = {entry["name"] for entry in header["model"]["entries"]}
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path} has an unreadable header ({type(error).__name__}: {error})") from None
    absent = sorted({"optimizer", "meta"} - set(header))
    if absent:
        raise CheckpointError(f"{path} has an unreadable header (no {absent})")
    stored = {key[len(MODEL):] for key in arrays if key.startswith(MODEL)}
    if listed != stored:
        raise CheckpointError(f"{path} is corrupt: header lists model entries {sorted(listed ^ stored)} "
                              f"that do not match the stored arrays")
    return header, arrays


def read_meta(path) -> dict:
    """A checkpoint's `meta` from its header alone, without reading (or checking) its arrays:
    cheap whatever the model's size, e.g. to see whether a run has anything left to train."""
    path = os.fspath(path)
    raw = _members(path, lambda archive: archive[HEADER] if HEADER in archive.files else None)
    header = _header(path, raw)
    if "meta" not in header:
        raise CheckpointError(f"{path} has an unreadable header (no ['meta'])")
    return header["meta"]


def _members(path: str, take):
    """`take(archive)` of the checkpoint at `path` opened with np.load; a CheckpointError for a
    file that is missing, not a zip, damaged or holding pickled objects."""
    if not os.path.exists(path):
        raise CheckpointError(f"no checkpoint at {path}")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is truncated or corrupt (not a zip archive; an .npz "
                              f"checkpoint is one)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return take(archive)
    except Exception as error:  # noqa: BLE001 - zip, zlib and npy-header errors alike
        if "allow_pickle" in str(error):  # NumPy's refusal to unpickle an object array
            raise CheckpointError(f"{path} holds pickled Python objects (an object array), which "
                                  f"could run code when loaded; refused for safety (checkpoints "
                                  f"from nets.checkpoint.save hold plain arrays only)") from None
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path} is truncated or corrupt ({reason})") from None


def _header(path: str, raw: np.ndarray | None) -> dict:
    """The parsed header (raw: its uint8 array, None when absent), of this format and version."""
    if raw is None:
        raise CheckpointError(f"{path} is not a workbench checkpoint (no {HEADER} entry; "
                              f"write checkpoints with nets.checkpoint.save)")
    try:
        header = json.loads(raw.tobytes().decode("utf-8"))
        fmt, version = header["format"], header["version"]
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise CheckpointError(f"{path} has an unreadable header ({type(error).__name__}: {error})") from None
    if fmt != FORMAT:
        raise CheckpointError(f"{path} is not a workbench checkpoint (format {fmt!r}, expected {FORMAT!r})")
    if version != VERSION:  # checked before the rest of the header, whose layout may differ
        newer = " (written by a newer workbench)" if isinstance(version, int) and version > VERSION else ""
        raise CheckpointError(f"{path} has checkpoint format version {version!r}{newer}; "
                              f"this workbench reads version {VERSION}")
    return header


def load(path, model=None, optimizer=None) -> dict:
    """Load `path` into `model` and `optimizer` (either may be None) and return its `meta`.

    Everything is checked before anything is changed, so a failed load leaves both untouched.
    """
    path = os.fspath(path)
    header, arrays = read(path)
    model_state = {key[len(MODEL):]: value for key, value in arrays.items() if key.startswith(MODEL)}
    if model is not None:
        _check_model(path, model, model_state)
    if optimizer is not None:
        if header["optimizer"] is None:
            raise CheckpointError(f"{path} holds no optimizer state")
        state = {key[len(OPTIMIZER):]: value for key, value in arrays.items() if key.startswith(OPTIMIZER)}
        try:
            optimizer.load_state_dict(state)
        except ValueError as error:
            raise CheckpointError(f"{path}: {error}") from None
    if model is not None:
        model.load_state_dict(model_state)
    return header["meta"]


def _check_model(path: str, model, saved: dict) -> None:
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(saved)), sorted(set(saved) - set(own))
    if missing or unexpected:
        raise ModelMismatch(f"{path} does not fit {type(model).__name__}: missing {missing}, "
                              f"unexpected {unexpected}")
    for name, value in own.items():
        if saved[name].shape != value.shape:
            raise ModelMismatch(f"{path}: shape mismatch for {name!r}: checkpoint "
                                  f"{saved[name].shape}, model {value.shape}")
        if saved[name].dtype != value.dtype:
            raise ModelMismatch(f"{path}: dtype mismatch for {name!r}: checkpoint "
                                  f"{saved[name].dtype}, model {value.dtype}")
