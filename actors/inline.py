"""Actors stepped in the learner's own process, one rollout per `receive`, in turn.

Same contract as LocalProcesses, no processes: for tests, debugging and profiling. With a seed,
a run is exactly reproducible.
"""
from __future__ import annotations

from nets import backend

from .transport import ActorSpec, Transport
from .worker import build_collector, experience


class InlineActors(Transport):
    def __init__(self, spec: ActorSpec, n_actors: int):
        if n_actors < 1:
            raise ValueError(f"need at least one actor, got {n_actors}")
        self.spec, self.n_actors = spec, n_actors
        self.actors: list = []
        self.generations = [0] * n_actors
        self.step, self.version, self._turn = 0, 0, 0

    def start(self):
        self.actors = [build_collector(self.spec, slot, 0) for slot in range(self.n_actors)]
        return ["in process"] * self.n_actors

    def publish(self, weights, step, target=None):
        for agent, _ in self.actors:  # they act only inside `receive`: the learner's own vectors
            _share(agent.network, weights)
            if target is not None:
                _share(agent.target, target)
        self.step = step
        self.version += 2  # even, like the shared-memory sequence lock
        return self.version

    def receive(self, timeout):
        agent, collector = self.actors[self._turn]
        self._turn = (self._turn + 1) % self.n_actors
        return [experience(agent, collector, self.spec, self.step, self.version)]

    def dead_actors(self):
        return {}

    def restart(self, slot):
        self.generations[slot] += 1
        self.actors[slot] = build_collector(self.spec, slot, self.generations[slot])
        return "in process"

    def stop(self):
        for _, collector in self.actors:
            for env in collector.envs:
                env.close()
        self.actors = []


def _share(network, vector) -> None:
    """An actor's network reads the learner's host `vector` itself, or a copy of a GPU one."""
    if backend.device_of(vector) == "cpu":
        network.flat().rebind(data=vector)
    else:
        backend.copy_to_host(network.flat().data, vector)
