"""Environment construction on Gymnasium, with Gymnasium's own wrappers."""
from .make import UnknownEnvError, check_env_id, make_env

__all__ = ["UnknownEnvError", "check_env_id", "make_env"]
