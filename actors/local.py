"""Actors as local processes (the `multiprocess` package), weights in manager-owned shared memory.

- Processes come from a fork server that has already imported NumPy, Gymnasium and the engine
  with BLAS/OpenMP/Numba limited to one thread, so an actor starts in milliseconds and N actors
  plus the learner do not oversubscribe the cores.
- A SharedMemoryManager creates the one shared segment (weights, version, step, heartbeats) and
  unlinks it at shutdown, even if actors were killed. It listens on 127.0.0.1 only and accepts
  only clients that know this run's random authkey.
- Each actor has its own pipe: rollouts go up as pickled bytes, credits come back. No lock is
  shared between actors, so one killed mid-send (even by SIGKILL) breaks only its own pipe.
- A rollout's credit goes back when the weights learned from it are published (as the Ray
  backend dispatches at publish), so an actor never acts without its own last rollout learned:
  one actor is exactly on-policy, as inline actors are.
"""
from __future__ import annotations

import pickle
import secrets
import signal
import time
from dataclasses import dataclass

import multiprocess as mp
from multiprocess import connection, resource_tracker
from multiprocess.managers import SharedMemoryManager

from agents import Rollout
from nets import threads

from .shared import SharedState
from .transport import ActorSpec, Transport
from .worker import CREDIT, run_actor

PRELOAD = ["numpy", "gymnasium", "nets", "nets.optim", "agents", "envs", "actors.worker"]


def _context():
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def describe_exit(code: int) -> str:
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


class LocalProcesses(Transport):
    def __init__(self, spec: ActorSpec, n_actors: int, n_params: int, max_in_flight: int = 1,
                 actor_timeout: float = 60.0):
        if n_actors < 1:
            raise ValueError(f"need at least one actor, got {n_actors}")
        self.spec, self.n_actors, self.n_params = spec, n_actors, n_params
        self.max_in_flight, self.actor_timeout = max_in_flight, actor_timeout
        self.actors: dict[int, _Actor] = {}
        self._ctx = _context()
        self.authkey = secrets.token_bytes(32)
        self.manager = SharedMemoryManager(address=("127.0.0.1", 0), authkey=self.authkey,
                                           ctx=self._ctx)
        with threads.for_children(1):  # each actor gets one core's worth of BLAS and Numba
            self.manager.start()  # the first process this run starts: it brings up the fork server
        self.segment = self.manager.SharedMemory(SharedState.size(n_params, n_actors))
        # the manager unlinks it; this process's resource tracker must not (see shared.attach)
        resource_tracker.unregister(self.segment._name, "shared_memory")  # noqa: SLF001
        self.state = SharedState(self.segment.buf, n_params, n_actors)
        self._stopped = False

    @property
    def address(self) -> tuple[str, int]:
        return self.manager.address

    # -- Transport ---------------------------------------------------------------------------
    def start(self):
        for slot in range(self.n_actors):
            self._spawn(slot, generation=0)
        return [f"pid {actor.process.pid}" for actor in self.actors.values()]

    def _spawn(self, slot: int, generation: int) -> None:
        learner_end, actor_end = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=run_actor, name=f"actor-{slot}", daemon=True,
            args=(self.spec, slot, generation, self.segment.name, self.n_actors, actor_end,
                  self.max_in_flight))
        process.start()
        actor_end.close()  # the child holds its own copy; ours would hide end-of-file
        self.state.heartbeats[slot] = time.monotonic()
        self.actors[slot] = _Actor(process, learner_end, generation, time.monotonic())

    def publish(self, weights, step):
        version = self.state.publish(weights, step)
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
                    rollouts.append(pickle.loads(conn.recv_bytes()))
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
            if code is not None:
                dead[slot] = describe_exit(code)
            elif now - self.state.heartbeats[slot] > self.actor_timeout:
                actor.process.kill()
                dead[slot] = f"sent nothing for {now - self.state.heartbeats[slot]:.0f} s and was killed"
        return dead

    def restart(self, slot):
        old = self.actors[slot]
        old.process.join(timeout=1.0)
        old.conn.close()
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
        del self.state  # views into the segment must go before it closes
        self.segment.close()
        self.manager.shutdown()  # unlinks the segment
