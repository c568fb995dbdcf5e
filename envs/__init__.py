"""Environment construction on Gymnasium, with Gymnasium's own wrappers."""
from .make import (LONGEST_EPISODE, EnvError, EnvInfo, MissingExtraError, UnknownEnvError, UnsupportedEnvError, check_env_id, env_spec,
                   make_env, own_module, prepare, probe)

__all__ = ["LONGEST_EPISODE", "EnvError", "EnvInfo", "MissingExtraError", "UnknownEnvError", "UnsupportedEnvError", "check_env_id", "env_spec",
           "make_env", "own_module", "prepare", "probe"]
