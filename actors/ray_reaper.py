"""Started by the Ray backend beside a local Ray instance it started: waits until the learner has
exited, however it died (end-of-file on stdin, whose write end only the learner holds), then kills
what is left of that instance and removes its session folder. A SIGKILLed driver takes Ray's core
processes with it, but their agents lived on for a minute, and Ray leaves every session folder
under /tmp/ray behind. Linux only (it reads /proc).

    python -m actors.ray_reaper SESSION_DIR
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path


def session_processes(session_dir: str) -> set[int]:
    """The processes whose command line names the session folder, and their descendants (the
    agents, renamed `ray::...`, are the raylet's children)."""
    parents, named = {}, set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):  # gone meanwhile
            continue
        if session_dir.encode() in cmdline:
            named.add(int(entry.name))
    found = set(named)
    while children := {pid for pid, ppid in parents.items() if ppid in found} - found:
        found |= children
    return found - {os.getpid()}


def reap(session_dir: str) -> None:
    for pid in session_processes(session_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(session_dir, ignore_errors=True)
    latest = Path(session_dir).parent / "session_latest"
    if latest.is_symlink() and os.readlink(latest) == session_dir:
        latest.unlink(missing_ok=True)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the learner, which then exits
    sys.stdin.buffer.read()
    reap(sys.argv[1])
