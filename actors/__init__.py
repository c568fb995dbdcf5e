"""Learner and actor processes, the manager, and weight sharing.

The learner (`Learner`) talks to its actors only through a `Transport`: `LocalProcesses` runs
them as local processes around manager-owned shared memory, `InlineActors` in the learner's own
process. Agents never see either.
"""
from .inline import InlineActors
from .learner import ActorFailure, Learner, Progress
from .local import LocalProcesses
from .transport import ActorSpec, Transport

__all__ = ["ActorFailure", "ActorSpec", "InlineActors", "Learner", "LocalProcesses", "Progress",
           "Transport"]
