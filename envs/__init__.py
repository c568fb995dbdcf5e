"""Environment construction on Gymnasium, with Gymnasium's own wrappers."""
from .make import MissingExtraError, UnknownEnvError, check_env_id, continuous_actions, make_env

__all__ = ["MissingExtraError", "UnknownEnvError", "check_env_id", "continuous_actions", "make_env"]
