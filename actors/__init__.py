"""Learner and actor processes, and weight sharing.

The learner (`Learner`) talks to its actors only through a `Transport`: `LocalProcesses` runs
them as local processes around one block of shared memory, `InlineActors` in the learner's own
process. Agents never see either.
"""
from .inline import InlineActors
from .learner import ActorFailure, Diverged, Learner, Progress
from .local import LocalProcesses
from .transport import ActorSpec, Transport

__all__ = ["ActorFailure", "ActorSpec", "Diverged", "InlineActors", "Learner", "LocalProcesses",
           "Progress", "Transport"]
