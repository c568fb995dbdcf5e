"""Run folders: one per run under a log directory, for RL training and supervised recipes alike.

    runs/<name>/
        config.json          everything needed to run it again (`--config` reads it back)
        events.out.tfevents.*  TensorBoard events (the folder is the writer's logdir)
        checkpoints/latest.npz, checkpoints/step-000100000.npz (the last few periodic ones)
        summary.txt          a few lines written when the run ends

Names default to `<part>-<part>-YYYYmmdd-HHMMSS` (e.g. CartPole-v1-a3c-20260101-120000). JSON and
summary writes are atomic (temporary file, then rename), like checkpoints; the temporary files a
killed run leaves behind (`.NAME.*.tmp`) are removed when it resumes.

One process writes a run folder: it holds an exclusive lock on `.owner` (flock, which the kernel
releases when the process dies, so a crash leaves no stale lock) and writes its pid there; another
process that would write the folder (a second `--resume`) gets a RunError naming that pid.

Stopping and resuming are the same for `workbench train` and `workbench recipe`: SIGINT or SIGTERM
(`stop_signals`) lets the run finish its step, save its checkpoint and summary.txt and exit 0;
`--resume RUN` continues it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from contextvars import ContextVar
from pathlib import Path

from nets.checkpoint import new_file_mode

CONFIG, SUMMARY, CHECKPOINTS, LATEST, OWNER = "config.json", "summary.txt", "checkpoints", "latest.npz", ".owner"
EVENTS = "events.out.tfevents.*"


class RunError(ValueError):
    """A run folder that is missing, already taken, or incomplete."""


_opened_runs: ContextVar[list | None] = ContextVar("opened_runs", default=None)  # inside `undone_if_failed`


@contextlib.contextmanager
def undone_if_failed():
    """Run folders written inside the block are put back if it raises before they hold a new
    checkpoint: one it created is removed, so that `tensorboard --logdir runs` lists only runs
    that got somewhere; one it resumed gets its config.json back, so that flags which could not
    continue it (another recipe's, a size its checkpoint does not fit) are not what the next
    --resume reads, and loses the event files it gained that hold nothing (its curves, if it
    trained before failing, are kept). A KeyboardInterrupt (a second Ctrl-C, which stops at once)
    leaves them as they are, and says so: hours of curves are not a failure."""
    token = _opened_runs.set([])
    try:
        yield
    except KeyboardInterrupt:  # a second Ctrl-C: the run's events are what is left of it, kept
        for run, before in _opened_runs.get():
            if (before.latest if before else None) == _modified(run.latest_checkpoint()):
                print(f"{run.path} is kept as it was interrupted, without a new checkpoint (its "
                      f"TensorBoard events show how far it got)", file=sys.stderr)
        raise
    except BaseException:
        for run, before in _opened_runs.get():
            if before is None and not any((run.path / CHECKPOINTS).rglob("*.npz")):
                shutil.rmtree(run.path, ignore_errors=True)
            elif before is not None and before.latest == _modified(run.latest_checkpoint()):
                from logs.curves import events  # here: every command imports this module at its start

                write_atomically(run.config_path, before.config)
                for path in set(run.path.glob(EVENTS)) - before.events:  # curves are kept
                    if not any(event.HasField("summary") for event in events(path)):
                        path.unlink(missing_ok=True)
        raise
    finally:
        _opened_runs.reset(token)


@dataclasses.dataclass(frozen=True)
class _Before:
    """A resumed run folder as `undone_if_failed` found it."""
    config: str
    latest: int | None
    events: frozenset


def _modified(path: Path | None) -> int | None:
    return None if path is None else path.stat().st_mtime_ns


@contextlib.contextmanager
def stop_signals():
    """Within the block, SIGINT and SIGTERM ask the run to stop instead of ending the process: the
    yielded list receives their names, and a run's `should_stop` reads it. The run finishes its
    step and saves its checkpoint; a second Ctrl-C interrupts at once (KeyboardInterrupt). Only
    the main thread can take signals: elsewhere the list stays empty."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def on_signal(signum, frame):
        received.append(signal.Signals(signum).name)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def default_name(*parts: str) -> str:
    """`parts` joined by '-' with the start time; characters unsafe in a path become '_'."""
    stem = "-".join(re.sub(r"[^A-Za-z0-9._-]+", "_", p) for p in parts if p)
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def write_atomically(path: Path, text: str) -> None:
    """`text` into `path` whole or not at all; an OSError names `path` (a full disk's does not)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(temp, new_file_mode())  # mkstemp makes 0600; a run's files are ordinary files
            os.replace(temp, path)
        except BaseException:
            os.unlink(temp)
            raise
    except OSError as error:
        if error.filename is not None:
            raise
        raise OSError(error.errno, f"cannot write {path}: {error.strerror}") from None


def read_json(path) -> dict:
    path = Path(path)
    if path.is_dir():
        inside = f": name its {CONFIG}, {path / CONFIG}" if (path / CONFIG).is_file() else ""
        raise RunError(f"{path} is a folder, not a JSON file{inside}")
    if not path.is_file():
        raise RunError(f"no config file at {path}")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RunError(f"{path} is not valid JSON (line {error.lineno}: {error.msg})") from None
    except UnicodeDecodeError:
        raise RunError(f"{path} is not a JSON text file (not UTF-8)") from None
    if not isinstance(value, dict):
        raise RunError(f"{path} must hold a JSON object, not {type(value).__name__}")
    return value


class RunDir:
    """One run's folder."""

    def __init__(self, path):
        self.path = Path(path)
        self._owner = None  # the open, locked .owner file while this process writes the folder

    @classmethod
    def create(cls, logdir, name: str, chosen: bool = False) -> "RunDir":
        """A new, empty run folder. A default name that is taken (two runs started in the same
        second) gets a numeric suffix; a `chosen` name that is taken is an error, and so is one
        that is not a single folder name (it would put the run outside `logdir`)."""
        if name in ("", ".", "..") or "/" in name or (os.sep != "/" and os.sep in name):
            raise RunError(f"--name must be one folder name, without '/' or '..', got {name!r}")
        base = Path(logdir) / name
        path, n = base, 1
        while True:  # mkdir, not a look first: two runs starting together must not take one folder
            try:
                path.mkdir(parents=True)
                break
            except FileExistsError:
                if chosen:
                    raise RunError(f"run folder {base} already exists; continue it with --resume {base} "
                                   f"or choose another --name") from None
                n += 1
                path = base.with_name(f"{base.name}-{n}")
            except OSError as error:
                raise RunError(f"cannot create the run folder {path}: {error.strerror}; "
                               f"--logdir must be a writable directory") from None
        run = cls(path)
        if _opened_runs.get() is not None:
            _opened_runs.get().append((run, None))
        return run

    @classmethod
    def existing(cls, path) -> "RunDir":
        run = cls(path)
        if not run.path.exists():
            raise RunError(f"run folder not found: {run.path}")
        if run.path.is_file() and (run.path.parent / CONFIG).is_file():  # e.g. RUN/config.json
            raise RunError(f"{run.path} is a file of run {run.path.parent}: name the run folder")
        if not (run.path / CONFIG).is_file():
            raise RunError(f"{run.path} is not a run folder (no {CONFIG})")
        return run

    @classmethod
    def resumed(cls, path) -> "RunDir":
        """The run folder `--resume` names: the folder itself, or its config.json."""
        path = Path(path)
        return cls.existing(path.parent if path.name == CONFIG and path.is_file() else path)

    @property
    def name(self) -> str:
        return self.path.name

    def claim(self) -> "RunDir":
        """Make this process the folder's one writer until `release`, its exit or this RunDir's
        collection (the open file holds the lock); a RunError if another process is."""
        if self._owner is not None:
            return self
        owner = open(self.path / OWNER, "a+", encoding="utf-8")
        try:
            fcntl.flock(owner, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner.seek(0)
            pid = owner.read().strip() or "another process"
            owner.close()
            raise RunError(f"run folder {self.path} is being written by process {pid}; wait for it "
                           f"to end (or stop it) before resuming, or start a new run") from None
        owner.truncate(0)
        owner.write(f"{os.getpid()}\n")
        owner.flush()
        self._owner = owner
        return self

    def release(self) -> None:
        if self._owner is not None:
            self._owner.close()  # closing drops the lock; the file stays, unlocked
            self._owner = None

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    def write_config(self, config: dict) -> None:
        opened = _opened_runs.get()
        first = opened is not None and all(run.path != self.path for run, _ in opened)
        if first and self.config_path.is_file():  # a run resumed inside undone_if_failed
            saved = self.config_path.read_text(encoding="utf-8")
            opened.append((self, _Before(saved, _modified(self.latest_checkpoint()),
                                         frozenset(self.path.glob(EVENTS)))))
        write_atomically(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")

    def read_config(self) -> dict:
        return read_json(self.config_path)

    def checkpoint_path(self, step: int | None = None) -> Path:
        """checkpoints/latest.npz, or the periodic file for `step`."""
        name = LATEST if step is None else f"step-{step:09d}.npz"
        return self.path / CHECKPOINTS / name

    def latest_checkpoint(self) -> Path | None:
        path = self.checkpoint_path()
        return path if path.is_file() else None

    def prune_checkpoints(self, keep: int) -> None:
        """Delete all but the `keep` newest periodic checkpoints (0: keep them all)."""
        periodic = sorted(self.checkpoint_path().parent.glob("step-*.npz"),
                          key=lambda path: int(path.stem.removeprefix("step-")))
        for path in periodic[:-keep] if keep else []:
            path.unlink(missing_ok=True)

    def periodic_hint(self) -> str:
        """'; ...' naming the newest periodic checkpoint to resume from instead of latest.npz, or ''."""
        periodic = sorted(self.checkpoint_path().parent.glob("step-*.npz"))
        if not periodic:
            return ""
        return (f"; the newest periodic checkpoint beside it is {periodic[-1].name}: copy it over "
                f"{LATEST} to resume from there")

    def remove_stale_temporaries(self) -> None:
        """Remove the `.NAME.*.tmp` files of atomic writes that a killed run never finished.
        Only for a run folder no process is writing to (one being resumed)."""
        for folder in (self.path, self.path / CHECKPOINTS):
            for path in folder.glob(".*.tmp"):
                path.unlink(missing_ok=True)

    def write_summary(self, lines: list[str]) -> None:
        write_atomically(self.path / SUMMARY, "\n".join(lines) + "\n")


def network_name(config: dict) -> str:
    """e.g. "small conv net", "mlp 64,64", "nature conv net + LSTM 256"."""
    from envs import probe

    agent_config = config.get("agent_config", {})
    trunk = agent_config.get("trunk", "mlp")
    if trunk == "auto":  # what agents.networks.make_trunk picks: the conv net for images
        trunk = "small" if probe(str(config.get("env")), config.get("env_options")).family == "pixels" else "mlp"
    sizes = ",".join(map(str, agent_config.get("hidden", [])))
    name = f"{trunk} {sizes}" if trunk in ("mlp", "relu-mlp") else f"{trunk} conv net"
    return name + (f" + LSTM {agent_config['lstm_size']}" if "lstm_size" in agent_config else "")


def describe(config: dict) -> str:
    """A `workbench train` config's env, agent and network, e.g. "CartPole-v1 (a3c, mlp 64,64)"."""
    return f"{config.get('env')} ({config.get('agent')}, {network_name(config)})"
