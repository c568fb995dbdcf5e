"""Environment construction on Gymnasium, with Gymnasium's own wrappers."""
from .make import (EnvError, EnvInfo, MissingExtraError, UnknownEnvError, UnsupportedEnvError, check_env_id, env_spec,
                   make_env, own_module, prepare, probe)

__all__ = ["EnvError", "EnvInfo", "MissingExtraError", "UnknownEnvError", "UnsupportedEnvError", "check_env_id", "env_spec",
           "make_env", "own_module", "prepare", "probe"]
