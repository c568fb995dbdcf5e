"""Actors as local processes (the `multiprocess` package), weights in anonymous shared memory.

- Processes come from a fork server that has already imported NumPy, Gymnasium and the engine
  with BLAS/OpenMP/Numba limited to one thread, so an actor starts in milliseconds and N actors
  plus the learner do not oversubscribe the cores.
- The one shared block (weight slots, version, step, heartbeats; actors/shared.py) is a
  RawArray: memory in a file that is unlinked as soon as it is made, handed to each actor as a
  file descriptor when it starts. It has no name, so nothing can leak: the kernel frees it when
  the last process mapping it exits, whether the run stops cleanly, crashes, or its whole
  process group is SIGKILLed. Weights are never copied: the learner steps into a free slot and
  publishes it, and actors rebind their networks to the newest slot.
- Nothing outlives the learner: every child (`child_process`) watches a lifeline pipe whose write
  end only the learner holds, and exits when it reads end-of-file, however the learner died.
  Once the children are gone the fork server and the resource tracker exit by themselves.
- Each actor has its own pipe: rollouts go up as pickled bytes, credits come back. No lock is
  shared between actors, so one killed mid-send (even by SIGKILL) breaks only its own pipe. An
  actor that computes gradients writes them into its own slots of the block (one per rollout in
  flight) and sends only the small rest of a `Gradient`.
- A rollout's credit goes back when the weights learned from it are published (as the Ray
  backend dispatches at publish), so an actor never acts without its own last rollout learned:
  one actor is exactly on-policy, as inline actors are.
"""
from __future__ import annotations

import ctypes
import os
import pickle
import signal
import sys
import threading
import time
from dataclasses import dataclass

import multiprocess as mp
from multiprocess import connection, forkserver, resource_tracker

from agents import Gradient, Rollout, agent_class
from nets import threads

from .learner import ActorFailure
from .shared import Layout, SharedState
from .transport import ActorSpec, Transport
from .worker import CREDIT, STOPS_THE_RUN, UNGUARDED_SCRIPT, run_actor

PRELOAD = ["numpy", "gymnasium", "nets", "nets.optim", "agents", "envs", "actors.worker",
           "actors.forkserver_preload"]


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


_lifeline = None  # (read end, write end), made once per learner process
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def child_process(ctx, target, args: tuple, name: str):
    """A daemon process that runs `target(*args)` and ends as soon as this process has exited,
    also when it was SIGKILLed and could not stop it: a thread in the child waits on a pipe whose
    write end only this process holds, and end-of-file means its holder is gone."""
    global _lifeline
    if _lifeline is None:
        _lifeline = ctx.Pipe(duplex=False)
    return ctx.Process(target=_end_with_parent, name=name, daemon=True,
                       args=(_lifeline[0], target, args))


def _end_with_parent(lifeline, target, args: tuple) -> None:
    def watch():
        try:
            lifeline.recv_bytes()  # nothing is ever sent: this returns at end-of-file
        except (EOFError, OSError):
            pass
        os._exit(0)

    killed_with_parent()
    threading.Thread(target=watch, name="lifeline", daemon=True).start()
    target(*args)


def killed_with_parent() -> None:
    """Linux: the kernel SIGKILLs this process when its parent exits, even while it is stopped
    (SIGSTOP) and no thread of its own can run. An actor's parent is the fork server, which gets
    the same for the learner (actors/forkserver_preload.py): a stopped actor keeps the fork
    server's own end-of-clients pipe open, so without it neither would ever leave."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _start_fork_server() -> None:
    """Start the fork server (if it is not running) with SIGINT and SIGTERM blocked from its first
    instruction: a blocked mask survives the fork and exec, so a Ctrl-C during its second of
    imports, before its preload ignores them, cannot kill it and the learner's start with it.
    This thread blocks them only for the spawn, and a Ctrl-C sent meanwhile reaches the learner
    when it ends (ignoring them here instead lost it: the run went on). The resource tracker is
    started first, as its own start unblocks them."""
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def describe_exit(code: int) -> str:
    if code == UNGUARDED_SCRIPT:
        return ("exited because it re-ran the script that starts the run, which has no "
                "`if __name__ == \"__main__\":` guard: put the training call under one")
    if code == STOPS_THE_RUN:
        return "stopped on an error that a new actor would meet again"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


@dataclass
class _Actor:
    process: object
    conn: object
    generation: int
    started: float
    closed: bool = False  # its pipe reached end-of-file
    owed: int = 0  # credits for rollouts taken, sent with the next publish
    error: str = ""  # the one line it sent before exiting with an error


class LocalProcesses(Transport):
    def __init__(self, spec: ActorSpec, n_actors: int, n_params: int, max_in_flight: int = 1,
                 actor_timeout: float = 60.0):
        if n_actors < 1:
            raise ValueError(f"need at least one actor, got {n_actors}")
        self.spec, self.n_actors, self.n_params = spec, n_actors, n_params
        self.max_in_flight, self.actor_timeout = max_in_flight, actor_timeout
        self.actors: dict[int, _Actor] = {}
        self._ctx = _context()
        targets = agent_class(spec.agent).has_target and spec.compute_gradients  # as the learner publishes
        self.layout = Layout(n_params, n_actors, targets=targets,
                             gradients_per_actor=max_in_flight if spec.compute_gradients else 0)
        self.block = self._ctx.RawArray(ctypes.c_uint8, self.layout.nbytes)
        self.state = SharedState(self.block, self.layout)
        self.state.initialize()
        self._stopped = False

    # -- Transport ---------------------------------------------------------------------------
    def start(self):
        _start_fork_server()
        for slot in range(self.n_actors):
            self._spawn(slot, generation=0)
        return [f"pid {actor.process.pid}" for actor in self.actors.values()]

    def _spawn(self, slot: int, generation: int) -> None:
        learner_end, actor_end = self._ctx.Pipe(duplex=True)
        process = child_process(self._ctx, run_actor, name=f"actor-{slot}", args=(
            self.spec, slot, generation, self.block, self.layout, actor_end, self.max_in_flight))
        with threads.for_children(1):  # the first start brings up the fork server, whose
            process.start()            # children get one core's worth of BLAS and Numba each
        actor_end.close()  # the child holds its own copy; ours would hide end-of-file
        self.state.heartbeats[slot] = time.monotonic()
        self.actors[slot] = _Actor(process, learner_end, generation, time.monotonic())

    def next_weights(self, current):
        return self.state.next_weights()

    def publish(self, weights, step, target=None):
        version = self.state.publish(weights, step, target)
        for actor in self.actors.values():  # credits for the rollouts these weights learned from
            try:
                for _ in range(actor.owed if not actor.closed else 0):
                    actor.conn.send_bytes(CREDIT)
            except OSError:  # it died; the supervisor replaces it
                actor.closed = True
            actor.owed = 0
        return version

    def receive(self, timeout):
        live = {a.conn: slot for slot, a in self.actors.items() if not a.closed}
        rollouts: list[Rollout] = []
        for conn in connection.wait(list(live), timeout):
            actor = self.actors[live[conn]]
            try:
                while conn.poll(0):  # take everything this actor has sent
                    item = pickle.loads(conn.recv_bytes())
                    if isinstance(item, str):  # its last words (run_actor)
                        actor.error = item
                        continue
                    if isinstance(item, Gradient):
                        item.grad = self.state.gradient(live[conn], item.slot)
                    rollouts.append(item)
                    actor.owed += 1
            except (EOFError, OSError):  # it died, possibly mid-message; the supervisor replaces it
                actor.closed = True
        return rollouts

    def dead_actors(self):
        dead, now = {}, time.monotonic()
        for slot, actor in self.actors.items():
            code = actor.process.exitcode
            if code is None and actor.closed:
                actor.process.join(timeout=1.0)  # it closed its pipe: it is on its way out
                code = actor.process.exitcode
            if code in (UNGUARDED_SCRIPT, STOPS_THE_RUN):  # every replacement would do the same
                self.receive(0)  # its last words, if they are still in the pipe (the run ends here)
                last_words = f" ({actor.error})" if actor.error else ""
                raise ActorFailure(f"actor {slot} {describe_exit(code)}{last_words}")
            if code is not None:
                dead[slot] = describe_exit(code) + (f" ({actor.error})" if actor.error else "")
            elif now - self.state.heartbeats[slot] > self.actor_timeout:
                actor.process.kill()
                dead[slot] = f"sent nothing for {now - self.state.heartbeats[slot]:.0f} s and was killed"
        return dead

    def restart(self, slot):
        old = self.actors[slot]
        old.process.join(timeout=1.0)
        old.conn.close()
        self.state.release(slot)
        self._spawn(slot, old.generation + 1)
        return f"pid {self.actors[slot].process.pid}"

    def pids(self) -> dict[int, int]:
        return {slot: a.process.pid for slot, a in self.actors.items()}

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        self.state.request_stop()
        deadline = time.monotonic() + 3.0
        for actor in self.actors.values():
            actor.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for actor in self.actors.values():
            if actor.process.exitcode is None:
                actor.process.kill()
                actor.process.join(timeout=1.0)
            actor.conn.close()
