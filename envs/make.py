"""`make_env`: a seeded Gymnasium environment with episode statistics, or a one-line error."""
from __future__ import annotations

import difflib
import functools
import importlib
import json
import os
import sys

import gymnasium as gym

from .atari import ale_id, make_atari

# Namespaces whose environments are registered by importing a package (not imported up front:
# ale-py is an optional extra and slow to import).
_NAMESPACE_PACKAGES = {"ALE": "ale_py"}


# Gymnasium's env families that need a package workbench installs as an extra.
_EXTRAS = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}
# MuJoCo renders offscreen through EGL where no display is set (Mesa's EGL works without a GPU).
MUJOCO_GL = "egl"


class UnknownEnvError(ValueError):
    """An environment id that is not registered with Gymnasium."""


class MissingExtraError(ValueError):
    """A registered environment whose physics package is not installed."""


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
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", MUJOCO_GL)
    options.setdefault("disable_env_checker", True)  # the checker only re-validates known envs
    entry = str(gym.spec(env_id).entry_point)
    if entry.startswith("gymnasium.envs.mujoco"):
        _quiet_mujoco()
    if ale_id(env_id):
        env = make_atari(env_id, training=training, **options)
    else:
        try:
            env = gym.wrappers.RecordEpisodeStatistics(gym.make(env_id, **options))
        except gym.error.DependencyNotInstalled:
            extra = next((name for prefix, name in _EXTRAS.items() if entry.startswith(prefix)), None)
            if extra is None:
                raise
            raise MissingExtraError(f"environment {env_id!r} needs the {extra} extra: "
                                    f"pip install -e \".[{extra}]\"") from None
        if isinstance(env.action_space, gym.spaces.Box):
            # Gaussian policies sample unbounded actions; the rollout keeps the sample and the env
            # gets it clipped to its bounds (agents/gaussian.py says why clipping)
            env = gym.wrappers.ClipAction(env)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


@functools.lru_cache(maxsize=None)
def _quiet_mujoco() -> None:
    """MuJoCo 4 warns, once per env made, that Gymnasium's models use a deprecated attribute
    (settotalmass), on stderr and into MUJOCO_LOG.TXT in the working folder: a training run printed
    it 17 times. Drop that one warning; print the others, as MuJoCo would."""
    try:
        import mujoco
    except ImportError:
        return  # make_env names the missing extra

    def warn(message: str) -> None:
        if "settotalmass" not in message:
            print(f"MuJoCo warning: {message}", file=sys.stderr)
    mujoco.set_mju_user_warning(warn)


def continuous_actions(env_id: str, options: dict | None = None) -> bool:
    """Whether the env's actions are a Box (continuous control). Atari's never are."""
    return not ale_id(env_id) and _continuous(env_id, json.dumps(options or {}, sort_keys=True))


@functools.lru_cache(maxsize=None)
def _continuous(env_id: str, options: str) -> bool:
    try:
        env = make_env(env_id, **json.loads(options))
    except TypeError as error:  # gymnasium.make passes --env-option keywords to the env's class
        raise ValueError(f"--env-option: {error}") from None
    env.close()
    return isinstance(env.action_space, gym.spaces.Box)
