"""`make_env`: a seeded Gymnasium environment with episode statistics, or a one-line error."""
from __future__ import annotations

import difflib
import importlib
import os

import gymnasium as gym

from .atari import ale_id, make_atari

# Namespaces whose environments are registered by importing a package (not imported up front:
# ale-py is an optional extra and slow to import).
_NAMESPACE_PACKAGES = {"ALE": "ale_py"}


class UnknownEnvError(ValueError):
    """An environment id that is not registered with Gymnasium."""


def _registered(env_id: str) -> bool:
    if env_id in gym.registry:
        return True
    namespace = env_id.split("/", 1)[0] if "/" in env_id else None
    package = _NAMESPACE_PACKAGES.get(namespace)
    if package is None:
        return False
    try:
        module = importlib.import_module(package)
    except ImportError:
        raise UnknownEnvError(f"environment {env_id!r} needs the {package!r} package: "
                              f"pip install -e \".[atari]\"") from None
    gym.register_envs(module)
    if package == "ale_py":  # its banner would print once per process: learner, each actor
        module.ALEInterface.setLoggerMode(module.LoggerMode.Error)
    return env_id in gym.registry


def check_env_id(env_id: str) -> None:
    """Raise UnknownEnvError (one line, with close matches) unless `env_id` is registered."""
    if _registered(env_id):
        return
    known = list(gym.registry)
    matches = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
    if not matches:  # case and version slips: compare lower-cased names without the version
        stem = env_id.split("-v")[0].lower()
        matches = [k for k in known if stem and stem in k.lower()][:5]
    hint = f"; close matches: {', '.join(matches)}" if matches else "; see gymnasium.pprint_registry()"
    raise UnknownEnvError(f"unknown environment id {env_id!r}{hint}")


def make_env(env_id: str, seed: int | None = None, *, training: bool = True, **options) -> gym.Env:
    """A Gymnasium env wrapped in RecordEpisodeStatistics (`info["episode"]` at each episode end).

    `options` go to `gymnasium.make` (e.g. `max_episode_steps`, `render_mode`, or an env's own
    keyword arguments). With a `seed`, the env's first reset and its action space are seeded, so
    the same seed gives the same episodes; call `reset()` (no seed) to start. `ALE/...` ids get
    the Atari preprocessing of envs/atari.py; `training=False` leaves out its learning-only
    wrappers (life loss as terminal, clipped rewards), for evaluation and play.
    """
    check_env_id(env_id)
    if options.get("render_mode") == "rgb_array":  # pygame draws offscreen: no display wanted
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    options.setdefault("disable_env_checker", True)  # the checker only re-validates known envs
    if ale_id(env_id):
        env = make_atari(env_id, training=training, **options)
    else:
        env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, **options))
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env

