"""Learner and actor processes, the manager, and weight sharing."""
