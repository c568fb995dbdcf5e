"""The learner's view of its actors, as a small interface a backend implements.

`LocalProcesses` (actors/local.py) runs actors as local processes; `InlineActors`
(actors/inline.py) steps them in the learner's own process for tests and debugging. A cluster
backend (e.g. Ray actors with the weights in Ray's object store) implements the same six methods
and the learner, the supervisor and the agents stay as they are.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents import Gradient, Rollout


@dataclass
class ActorSpec:
    """Everything an actor needs to build itself: it makes its own envs and a copy of the agent."""

    env_id: str
    agent: str
    agent_config: object  # the agent's config dataclass
    envs_per_actor: int = 1
    seed: int = 0
    env_options: dict = field(default_factory=dict)
    compute_gradients: bool = False  # send each rollout's gradient (a Gradient), not the rollout
    working_dir: str = ""  # the learner's: local actors work there too, so that a user's env
                           # module (and any relative path it opens) is found as in the learner
    check: bool = False  # the engine's check mode (--check): an actor computing gradients names
                         # the op where a NaN/Inf appears, as the learner does


def actor_seeds(spec: ActorSpec, slot: int, generation: int) -> tuple[list[int], np.random.Generator]:
    """(env seeds, policy generator) for an actor slot; a replacement (generation + 1) gets new
    streams, so it does not replay its predecessor's episodes."""
    sequence = np.random.SeedSequence([spec.seed, slot, generation])
    env_seeds = [int(s) for s in sequence.generate_state(spec.envs_per_actor, dtype=np.uint32)]
    return env_seeds, np.random.default_rng(sequence.spawn(1)[0])


class Transport:
    """Start actors, publish weights, receive experience, find dead actors, restart, stop."""

    spec: ActorSpec
    n_actors: int
    _spare: tuple = ()  # next_weights' two vectors

    def start(self) -> list[str]:
        """Start every actor; returns a short description of each (e.g. its pid). Actors wait
        for the first `publish` before acting."""
        raise NotImplementedError

    def next_weights(self, current: np.ndarray) -> np.ndarray:
        """A vector for the learner's next weights (`Optimizer.step(into=...)`), neither its
        `current` ones nor any an actor reads; `publish` then shares it without a copy. This
        default alternates two vectors of the learner's process, for transports whose publish
        copies the weights or whose actors act only between publishes (InlineActors); local
        processes give a free slot of their shared memory."""
        if not self._spare:
            self._spare = (np.empty_like(current), np.empty_like(current))
        return self._spare[0] if current is not self._spare[0] else self._spare[1]

    def publish(self, weights: np.ndarray, step: int, target: np.ndarray | None = None) -> int:
        """Make `weights` (the flat float32 vector) the actors' next policy, with the agent's
        target network (`Agent.target`) when it has one, and tell them the global env step (for
        their exploration schedules). Returns the new version: even, 2 more each time."""
        raise NotImplementedError

    def receive(self, timeout: float) -> list[Rollout | Gradient]:
        """Rollouts (or, with `spec.compute_gradients`, their Gradients) that have arrived,
        waiting up to `timeout` seconds for the first; [] if none. A Gradient's vector is the
        learner's to use and overwrite until its next `publish`."""
        raise NotImplementedError

    def dead_actors(self) -> dict[int, str]:
        """Slot -> reason, for actors that exited or stopped sending (hung)."""
        raise NotImplementedError

    def restart(self, slot: int) -> str:
        """Replace the actor in `slot` with a fresh one; returns a short description (e.g. pid)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every actor and free what the transport holds. Safe to call twice."""
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

