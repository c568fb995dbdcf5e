"""Layers: Modules that own parameters and call into nets.functional."""
from .dense import Linear

Dense = Linear

__all__ = ["Dense", "Linear"]
