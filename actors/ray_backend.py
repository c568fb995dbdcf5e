"""Actors as Ray actors, on one machine or a cluster; the learner stays in the driver process.

Imported only for `--backend ray` (ray is an optional dependency: `pip install -e ".[cluster]"`).

- Each actor is a Ray actor (`num_cpus=1`, BLAS/OpenMP/Numba limited to one thread) holding one
  collector, spread over the cluster's nodes.
- Weights: one `ray.put` per version (and one per new target network). Each call carries the
  latest references wrapped in a list, so Ray does not fetch them; the actor reads them only when
  the version moved (zero-copy from its node's object store, one node-to-node transfer per
  version and node) and copies them into its networks.
- Experience: each rollout (or its Gradient, a vector as long as the weights) comes back as the
  object reference of a `collect` call. The learner dispatches an actor's next call when it
  publishes, so the actor starts with the newest weights; `max_in_flight` bounds the calls
  queued per actor, as credits do for local processes.
- Faults: an actor whose call fails with a Ray actor error (process killed, node lost) or that
  sends nothing for `actor_timeout` seconds is reported dead; the learner's supervisor replaces
  it with a new Ray actor (its seeds move to the next generation) and logs it.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError
except ImportError:  # pragma: no cover - depends on the installation
    raise ImportError('--backend ray needs ray: pip install -e ".[cluster]"') from None

import numpy as np

from agents import Gradient
from envs import EnvError, own_module
from nets import backend, threads

from .learner import ActorFailure
from .transport import ActorSpec, Transport
from .worker import build_collector, experience

# A local Ray instance started for one run gets a small object store: it holds one weight vector
# per live version and the rollouts in flight, not a dataset.
OBJECT_STORE_BYTES = 256 * 2**20


class RayUnavailable(ActorFailure):
    """The cluster cannot be reached, or it cannot place or build the actors (the CLI reports
    it in one line, as it does an actor that keeps dying)."""


class _ActorBody:
    """What runs inside one Ray actor process."""

    def __init__(self, spec: ActorSpec, slot: int, generation: int):
        np.seterr(over="ignore", invalid="ignore", divide="ignore")  # the learner reports divergence
        self.spec = spec
        self.agent, self.collector = build_collector(spec, slot, generation)
        self.version = -1

    def where(self) -> str:
        node = ray.get_runtime_context().get_node_id()[:8]
        return f"pid {os.getpid()} on {ray.util.get_node_ip_address()}, node {node}"

    def collect(self, weights: list, version: int, step: int):
        """`weights`: [weights ref, target ref or None]."""
        if version != self.version:
            np.copyto(self.agent.network.flat().data, ray.get(weights[0]))
            if weights[1] is not None:
                np.copyto(self.agent.target.flat().data, ray.get(weights[1]))
            self.version = version
        return experience(self.agent, self.collector, self.spec, step, version)


@dataclass
class _Slot:
    handle: object
    generation: int
    last_delivery: float
    pending: list = field(default_factory=list)  # object refs of collect calls not yet taken
    failure: str | None = None


def _reachable(address: str, timeout: float = 5.0) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        return True
    except (OSError, ValueError):
        return False


def connect(address: str | None, n_actors: int, env_module: str | None = None) -> bool:
    """Join the cluster at `address` ("auto", "HOST:PORT") or, with None, start a local Ray
    instance with a CPU per actor; `env_module`, the user's env module (envs.own_module), is
    shipped to every node (Ray uploads modules only for a whole job). Returns whether this call
    started the connection (and so owns it); an existing connection (a notebook, a test's
    cluster) is used as it is."""
    if ray.is_initialized():
        return False
    if address not in (None, "auto") and not _reachable(address):
        raise RayUnavailable(f"cannot reach a Ray cluster at {address} (is `ray start --head` "
                             f"running there, and is the port open?)")
    job = {"runtime_env": {"py_modules": [env_module]}} if env_module else {}
    try:
        if address is None:
            # Actors reserve a CPU each for life; as with local processes, N actors may share fewer cores.
            # "local": a new instance even when `ray start` runs here (that one is --address auto).
            ray.init(address="local", num_cpus=max(n_actors, os.cpu_count() or 1),
                     object_store_memory=OBJECT_STORE_BYTES,
                     include_dashboard=False, log_to_driver=True, configure_logging=False, **job)
        else:
            ray.init(address=address, log_to_driver=True, configure_logging=False, **job)
    except ConnectionError as error:
        raise RayUnavailable(f"cannot join Ray cluster {address!r}: "
                             f"{str(error).splitlines()[0]}") from None
    return True


def _reaper() -> subprocess.Popen | None:
    """actors/ray_reaper.py for the local instance just started: it ends that instance and removes
    its session folder once this process has exited (its stdin pipe reaches end-of-file). In its
    own session, so that a signal to the learner's process group leaves it to do its work."""
    if not sys.platform.startswith("linux"):
        return None
    session = ray._private.worker.global_worker.node.get_session_dir_path()
    return subprocess.Popen([sys.executable, "-m", "actors.ray_reaper", session], stdin=subprocess.PIPE,
                            start_new_session=True)


class RayActors(Transport):
    def __init__(self, spec: ActorSpec, n_actors: int, address: str | None = None,
                 max_in_flight: int = 1, actor_timeout: float = 60.0, start_timeout: float = 120.0):
        if n_actors < 1:
            raise ValueError(f"need at least one actor, got {n_actors}")
        self.spec, self.n_actors = spec, n_actors
        self.max_in_flight, self.actor_timeout, self.start_timeout = max_in_flight, actor_timeout, start_timeout
        self.owns_ray = connect(address, n_actors, own_module(spec.env_id))
        self._reaper = _reaper() if self.owns_ray and address is None else None
        self._actor_class = ray.remote(_ActorBody).options(
            num_cpus=1, max_restarts=0, max_task_retries=0, scheduling_strategy="SPREAD",
            runtime_env={"env_vars": threads.child_environment(1)})
        self.slots: dict[int, _Slot] = {}
        self._weights: list = []  # [weights ref, target ref or None] of the latest publish
        self._target, self._target_ref = None, None  # the target vector last put, and its ref
        self.version, self.step = 0, 0
        self._stopped = False

    # -- Transport ---------------------------------------------------------------------------
    def start(self):
        cpus = ray.cluster_resources().get("CPU", 0)
        if cpus < self.n_actors:  # those beyond it would wait for a CPU forever
            raise RayUnavailable(f"{self.n_actors} actors need {self.n_actors} CPUs (one each) and the Ray "
                                 f"cluster has {cpus:g}: lower --actors or add nodes")
        for slot in range(self.n_actors):
            self._spawn(slot, generation=0)
        return [self._where(slot) for slot in range(self.n_actors)]

    def _spawn(self, slot: int, generation: int) -> None:
        handle = self._actor_class.remote(self.spec, slot, generation)
        self.slots[slot] = _Slot(handle, generation, time.monotonic())

    def _where(self, slot: int) -> str:
        """Waits for the actor to be placed and built: a cluster without a free CPU for it, or an
        actor that cannot build its env, fails here with one line instead of hanging."""
        try:
            return ray.get(self.slots[slot].handle.where.remote(), timeout=self.start_timeout)
        except GetTimeoutError:
            free = ray.available_resources().get("CPU", 0)
            raise RayUnavailable(f"actor {slot} was not placed within {self.start_timeout:.0f} s: "
                                 f"each actor needs a CPU and the cluster has {free:g} free") from None
        except RayActorError as error:
            raise RayUnavailable(f"actor {slot} failed to start: {_short(error)}") from None

    def publish(self, weights, step, target=None):
        if target is not self._target:  # a new target network (Agent.after_step)
            self._target = target
            self._target_ref = None if target is None else ray.put(backend.to_host(target))
        self._weights = [ray.put(backend.to_host(weights)), self._target_ref]
        self.version += 2  # even, like the shared-memory sequence lock
        self.step = step
        for slot in self.slots.values():
            self._dispatch(slot)
        return self.version

    def _dispatch(self, slot: _Slot) -> None:
        while slot.failure is None and len(slot.pending) < self.max_in_flight and self._weights:
            slot.pending.append(slot.handle.collect.remote(self._weights, self.version, self.step))

    def receive(self, timeout):
        owner = {ref: (index, s) for index, s in self.slots.items() for ref in s.pending}
        if not owner:
            time.sleep(timeout)
            return []
        ready, _ = ray.wait(list(owner), num_returns=1, timeout=timeout)
        if ready:  # take everything that has arrived, not only the first
            ready, _ = ray.wait(list(owner), num_returns=len(owner), timeout=0)
        rollouts, now = [], time.monotonic()
        for ref in ready:
            index, slot = owner[ref]
            slot.pending.remove(ref)
            try:
                item = ray.get(ref)
                if isinstance(item, Gradient):  # the object store's copy is read-only
                    item.grad = item.grad.copy()
                rollouts.append(item)
                slot.last_delivery = now
            except RayActorError as error:
                slot.failure = f"died ({_short(error)})"
                slot.pending.clear()
            except RayTaskError as error:  # collect raised, in one line (Ray's message holds its traceback)
                cause = f"{type(error.cause).__name__}: {error.cause}".splitlines()[0]
                if isinstance(error.cause, EnvError):  # as an actor process's STOPS_THE_RUN
                    raise ActorFailure(f"actor {index} stopped on an error that a new actor would meet "
                                       f"again ({cause})") from None
                slot.failure = f"raised {cause}"
                slot.pending.clear()
        return rollouts

    def dead_actors(self):
        dead, now = {}, time.monotonic()
        for index, slot in self.slots.items():
            if slot.failure is not None:
                dead[index] = slot.failure
            elif now - slot.last_delivery > self.actor_timeout:
                ray.kill(slot.handle, no_restart=True)
                dead[index] = f"sent nothing for {now - slot.last_delivery:.0f} s and was killed"
        return dead

    def restart(self, slot):
        old = self.slots[slot]
        ray.kill(old.handle, no_restart=True)
        self._spawn(slot, old.generation + 1)
        self._dispatch(self.slots[slot])
        return f"ray actor {self.slots[slot].handle._actor_id.hex()[:8]}"  # noqa: SLF001 - a short id

    def stop(self):
        if self._stopped:
            return
        self._stopped = True
        for slot in self.slots.values():
            ray.kill(slot.handle, no_restart=True)  # actors hold nothing worth a graceful exit
        self.slots, self._weights, self._target, self._target_ref = {}, [], None, None
        if self.owns_ray:
            ray.shutdown()
        if self._reaper is not None:  # the session folder goes now, not when this process exits
            self._reaper.stdin.close()
            try:
                self._reaper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def _short(error: Exception) -> str:
    """The first line of a Ray error: its full text repeats the actor's whole description."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0][:200] if lines else type(error).__name__
