"""`make_env`: a seeded Gymnasium environment in the form agents learn from, or a one-line error.

An env is named by a Gymnasium id ("CartPole-v1", "ALE/Pong-v5"), by Gymnasium's own
"module:EnvId" (the module is imported first and registers EnvId: a user's env), or by
"module:function" (a function or class of that module that makes the env when called with no
arguments: what `workbench.train(env=function)` records). The module is looked for in the working
folder too, as `python -m` would, so the same name works in the learner, in every actor process,
in evaluation and in `play`.

What agents see (`prepare`), by the env's observation space:
    Box vector                          as it is
    image: (H, W) or (H, W, 1 or 3) uint8 in [0, 255]
                                        grayscale, 84x84, the last 4 frames stacked: Atari's
                                        input (envs/atari.py), for the conv nets
    Discrete, MultiDiscrete, MultiBinary, Dict, Tuple, or a Box of more dimensions
                                        one float32 vector (Gymnasium's FlattenObservation;
                                        Discrete parts one-hot), a Dict's or Tuple's Text parts
                                        left out
and every env is wrapped in Checked (what it raises, or returns against Gymnasium's API or its own
observation space, becomes an EnvError naming it) and RecordEpisodeStatistics, a Box-action env in
ClipAction.
`probe` makes the env once per process, checks that it keeps Gymnasium's API, and tells its
spaces, family and tags (what agents' presets are keyed by) and the preprocessing in words.
"""
from __future__ import annotations

import difflib
import functools
import importlib
import inspect
import json
import os
import re
import reprlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .atari import FIXED_OPTIONS, FRAME_STACK, OWN_OPTIONS, SCREEN_SIZE, ale_id, make_atari

# Namespaces whose environments are registered by importing a package (not imported up front:
# ale-py is an optional extra and slow to import).
_NAMESPACE_PACKAGES = {"ALE": "ale_py"}
# Gymnasium's env families that need a package workbench installs as an extra.
_EXTRAS = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco"}
# MuJoCo renders offscreen through EGL where no display is set (Mesa's EGL works without a GPU).
MUJOCO_GL = "egl"
# The most steps an episode is collected whole (reinforce) or played without ending: past every
# Gymnasium time limit (Atari's is 27,000). An env without one kept an episode going forever, silently.
LONGEST_EPISODE = 50_000
SUPPORTED_OBSERVATIONS = ("Box, Discrete, MultiDiscrete or MultiBinary observations, or a Dict or "
                          "Tuple of them")


class UnknownEnvError(ValueError):
    """An environment name that Gymnasium and the named module do not know."""


class MissingExtraError(ValueError):
    """A registered environment whose physics package is not installed."""


class UnsupportedEnvError(ValueError):
    """An env that does not keep Gymnasium's API, or whose observations no agent can read."""


class EnvError(RuntimeError):
    """The env failed while in use: it raised, or returned what Gymnasium's API or its own
    observation space does not allow. A new env would do the same, so a run stops on it."""


@dataclass(frozen=True)
class EnvInfo:
    """What the learner needs to know about an env before any actor starts."""

    id: str
    observation_space: gym.Space  # as agents see it (after `prepare`)
    action_space: gym.Space
    family: str  # "pixels" (image observations), "box" (Box actions) or "vector": agents.FAMILIES
    tags: tuple[str, ...]  # the family, "one-hot" if any, Gymnasium's env package (mujoco...), the id
    notes: tuple[str, ...]  # the preprocessing, one line each, for the console


# -- names -------------------------------------------------------------------------------------------
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


def _import_module(name: str, env_id: str):
    """The user's module named in `env_id`, from the working folder or the installed packages."""
    if os.getcwd() not in sys.path:  # the `workbench` script's sys.path lacks it; `python -m` has it
        sys.path.append(os.getcwd())
    importlib.invalidate_caches()  # a module written since this process last looked
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name and name.startswith(error.name):
            raise UnknownEnvError(f"environment {env_id!r}: no module {error.name!r} in {os.getcwd()} "
                                  f"or among the installed packages; run from the folder that holds "
                                  f"{error.name.replace('.', '/')}.py, or pip install it") from None
        raise UnsupportedEnvError(f"importing {name!r} for environment {env_id!r} failed: {error}") from None
    except Exception as error:  # noqa: BLE001 - whatever the user's module raises, in one line
        first = str(error).splitlines()[0] if str(error) else ""
        raise UnsupportedEnvError(f"importing {name!r} for environment {env_id!r} failed: "
                                  f"{type(error).__name__}: {first}") from None


def env_spec(env_id: str) -> gym.envs.registration.EnvSpec:
    """The Gymnasium spec that makes `env_id` (see the module docstring), or a one-line
    UnknownEnvError with close matches."""
    if ":" in env_id:
        module_name, _, name = env_id.partition(":")
        if not (module_name and name):
            raise UnknownEnvError(f"environment {env_id!r}: expected MODULE:ID or MODULE:FUNCTION, e.g. "
                                  f"myenvs:Corridor-v0")
        module = _import_module(module_name, env_id)
        if name in gym.registry:
            return gym.spec(name)
        maker = getattr(module, name, None)
        if callable(maker):
            return gym.envs.registration.EnvSpec(id=env_id, entry_point=maker)
        ids = [key for key, spec in gym.registry.items() if _entry_module(spec).startswith(module_name)]
        found = f"; it registers {', '.join(ids)}" if ids else ""
        raise UnknownEnvError(f"module {module_name!r} registers no environment {name!r} and has no "
                              f"function of that name{found}")
    if _registered(env_id):
        return gym.spec(env_id)
    known = list(gym.registry)
    matches = difflib.get_close_matches(env_id, known, n=5, cutoff=0.6)
    if not matches:  # case and version slips: compare lower-cased names without the version
        stem = env_id.split("-v")[0].lower()
        matches = [k for k in known if stem and stem in k.lower()][:5]
    hint = (f"; close matches: {', '.join(matches)}" if matches else
            "; see gymnasium.pprint_registry(), or name the module that registers an env of your "
            "own: MODULE:ID")
    raise UnknownEnvError(f"unknown environment id {env_id!r}{hint}")


def _entry_module(spec) -> str:
    """The module an env's entry point lives in ("gymnasium.envs.mujoco.ant_v5", "myenvs")."""
    entry = spec.entry_point
    return entry.split(":")[0] if isinstance(entry, str) else getattr(entry, "__module__", "") or ""


def own_module(env_id: str) -> str | None:
    """The file (or package folder) of the top-level module named in a MODULE:NAME env where it
    is the user's own code rather than an installed package: what a Ray cluster's workers need
    shipped to them (actors/ray_backend.py); None for every other env."""
    if ":" not in env_id:
        return None
    top = env_id.partition(":")[0].split(".")[0]
    module = _import_module(top, env_id)
    path = module.__path__[0] if hasattr(module, "__path__") else getattr(module, "__file__", None)
    if path is None or {"site-packages", "dist-packages"} & set(Path(path).parts):
        return None
    return path


def check_env_id(env_id: str) -> None:
    """UnknownEnvError (one line) unless `env_id` names an env."""
    env_spec(env_id)


# -- making ------------------------------------------------------------------------------------------
def make_env(env_id: str, seed: int | None = None, *, training: bool = True, **options) -> gym.Env:
    """A Gymnasium env in the form agents learn from (see the module docstring), with
    RecordEpisodeStatistics (`info["episode"]` at each episode end).

    `options` go to `gymnasium.make` (e.g. `max_episode_steps`, `render_mode`, or an env's own
    keyword arguments). With a `seed`, the env's first reset and its action space are seeded, so
    the same seed gives the same episodes; call `reset()` (no seed) to start. `ALE/...` ids get
    the Atari preprocessing of envs/atari.py; `training=False` leaves out its learning-only
    wrappers (life loss as terminal, clipped rewards), for evaluation and play.
    """
    if ale_id(env_id):
        env_spec(env_id)  # registers ALE's envs
        env = make_atari(env_id, training=training, **_with_defaults(options))
    else:
        env, _ = prepare(_make_raw(env_id, options), env_id)
    if seed is not None:
        env.reset(seed=seed)
        env.action_space.seed(seed)
    return env


def _with_defaults(options: dict) -> dict:
    if options.get("render_mode") == "rgb_array":  # pygame draws offscreen: no display wanted
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        if not os.environ.get("DISPLAY"):
            os.environ.setdefault("MUJOCO_GL", MUJOCO_GL)
    return {"disable_env_checker": True, **options}  # probe checks the API itself, once


def _make_raw(env_id: str, options: dict) -> gym.Env:
    spec = env_spec(env_id)
    entry = _entry_module(spec)
    if entry.startswith("gymnasium.envs.mujoco"):
        _quiet_mujoco()
    try:
        with warnings.catch_warnings():  # an env that takes no render_mode fails on it, in one line
            warnings.filterwarnings("ignore", message=".*not in the possible render_modes")
            return gym.make(spec, **_with_defaults(options))
    except gym.error.DependencyNotInstalled:
        extra = next((name for prefix, name in _EXTRAS.items() if entry.startswith(prefix)), None)
        if extra is None:
            raise
        raise MissingExtraError(f"environment {env_id!r} needs the {extra} extra: "
                                f"pip install -e \".[{extra}]\"") from None


def _is_image(space: gym.Space) -> bool:
    """Pixels, by stable-baselines3's rule: uint8 with bounds 0 and 255. A uint8 grid with other
    bounds (a board of 0, 1 and 2) is no image, and resizing it failed on its bounds."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and (
        len(space.shape) == 2 or (len(space.shape) == 3 and space.shape[2] in (1, 3))) and (
        np.all(space.low == 0) and np.all(space.high == 255))


def prepare(env: gym.Env, name: str | None = None) -> tuple[gym.Env, list[str]]:
    """`env` (as gymnasium.make gives it) in the form agents learn from, and the preprocessing in
    words (empty where there is none). Its faults are EnvErrors naming it as `name` (default: its
    id, or its class)."""
    env = Checked(env, name or (env.spec.id if env.spec else type(env.unwrapped).__name__))
    space, notes = env.observation_space, []
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        left_out = _text_parts(space)
        if left_out:
            if not _has_numbers(space):
                raise UnsupportedEnvError(f"the observation space {space} has nothing numeric; "
                                          f"workbench learns from {SUPPORTED_OBSERVATIONS}")
            notes.append(f"the observations' text parts ({', '.join(left_out)}) are left out")
            env = gym.wrappers.TransformObservation(env, functools.partial(_numbers_of, space=space),
                                                    _without_text(space))
            space = env.observation_space
    if _is_image(space):
        if len(space.shape) == 3:
            env = (gym.wrappers.GrayscaleObservation(env) if space.shape[2] == 3
                   else gym.wrappers.ReshapeObservation(env, space.shape[:2]))
        if env.observation_space.shape != (SCREEN_SIZE, SCREEN_SIZE):
            try:
                env = gym.wrappers.ResizeObservation(env, (SCREEN_SIZE, SCREEN_SIZE))
            except gym.error.DependencyNotInstalled:
                raise MissingExtraError("image observations are resized with OpenCV: "
                                        "pip install -e \".[atari]\"") from None
        env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
        notes.append(f"image observations {space.shape} become the last {FRAME_STACK} grayscale "
                     f"{SCREEN_SIZE}x{SCREEN_SIZE} frames, as Atari's, for the conv net")
    elif not (isinstance(space, spaces.Box) and len(space.shape) == 1):
        if not space.is_np_flattenable or isinstance(space, spaces.Text):
            raise UnsupportedEnvError(f"the observation space {space} cannot be read as numbers; "
                                      f"workbench learns from {SUPPORTED_OBSERVATIONS}")
        with warnings.catch_warnings():  # the flattened bounds are float64: float32 is meant
            warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")
            env = gym.wrappers.DtypeObservation(gym.wrappers.FlattenObservation(env), np.float32)
        size = env.observation_space.shape[0]
        if isinstance(space, spaces.Discrete):
            notes.append(f"observations {space} become one-hot vectors of {size}")
        else:
            one_hot = " (Discrete parts one-hot)" if _has_discrete(space) else ""
            notes.append(f"observations {space} are flattened to vectors of {size}{one_hot}")
    if env.observation_space.shape == (0,):  # an empty Box, Dict or Tuple: a numpy reshape error later
        raise UnsupportedEnvError(f"the observation space {space} holds no numbers; workbench learns from "
                                  f"{SUPPORTED_OBSERVATIONS}")
    env = gym.wrappers.RecordEpisodeStatistics(env)
    actions = env.action_space
    if isinstance(actions, spaces.Discrete) and actions.start != 0:  # agents number actions from 0
        start = int(actions.start)
        env = gym.wrappers.TransformAction(env, lambda action: action + start, spaces.Discrete(actions.n))
        notes.append(f"actions {actions} are numbered from 0 (the env gets action + {start})")
    if isinstance(env.action_space, spaces.Box):
        # Gaussian policies sample unbounded actions; the rollout keeps the sample and the env
        # gets it clipped to its bounds (agents/gaussian.py says why clipping). The bounds stay
        # the action space agents see (ClipAction's own is unbounded): SAC squashes into them.
        bounds = env.action_space
        env = gym.wrappers.ClipAction(env)
        env.action_space = bounds
    return env, notes


def _parts(space: gym.Space | None) -> list[gym.Space]:
    """The subspaces of a Tuple or Dict (none for any other space)."""
    return list(space.spaces.values() if isinstance(space, spaces.Dict) else getattr(space, "spaces", ()))


def _text_parts(space: gym.Space, prefix: str = "") -> list[str]:
    """The names of a Dict's or Tuple's Text parts, at any depth ("mission", "goal.name")."""
    if isinstance(space, spaces.Text):
        return [prefix]
    keys = space.spaces if isinstance(space, spaces.Dict) else range(len(_parts(space)))
    return [name for key, part in zip(keys, _parts(space))
            for name in _text_parts(part, f"{prefix}.{key}" if prefix else str(key))]


def _has_numbers(space: gym.Space) -> bool:
    """Whether `space` holds anything but text."""
    if isinstance(space, (spaces.Dict, spaces.Tuple)):
        return any(_has_numbers(part) for part in _parts(space))
    return not isinstance(space, spaces.Text)


def _without_text(space: gym.Space) -> gym.Space:
    """A Dict or Tuple without its Text parts, at any depth (nested ones left with none go too):
    what agents see of it."""
    if isinstance(space, spaces.Dict):
        return spaces.Dict({key: _without_text(part) for key, part in space.spaces.items() if _has_numbers(part)})
    if isinstance(space, spaces.Tuple):
        return spaces.Tuple([_without_text(part) for part in space.spaces if _has_numbers(part)])
    return space


def _numbers_of(obs, space: gym.Space):
    """An observation of `space` as one of `_without_text(space)`."""
    if isinstance(space, spaces.Dict):
        return {key: _numbers_of(obs[key], part) for key, part in space.spaces.items() if _has_numbers(part)}
    if isinstance(space, spaces.Tuple):
        return tuple(_numbers_of(value, part) for value, part in zip(obs, space.spaces) if _has_numbers(part))
    return obs


def _all_discrete(space: gym.Space | None) -> bool:
    if isinstance(space, spaces.Discrete):
        return True
    return bool(_parts(space)) and all(_all_discrete(part) for part in _parts(space))


def _has_discrete(space: gym.Space) -> bool:
    return isinstance(space, spaces.Discrete) or any(_has_discrete(part) for part in _parts(space))


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


# -- probing -----------------------------------------------------------------------------------------
def probe(env_id: str, options: dict | None = None) -> EnvInfo:
    """Make the env once (per process, per options), check that it keeps Gymnasium's API, and
    describe it. One-line ValueErrors for what cannot work."""
    return _probe(env_id, json.dumps(options or {}, sort_keys=True))


@functools.lru_cache(maxsize=None)
def _probe(env_id: str, options_json: str) -> EnvInfo:
    options = json.loads(options_json)
    spec = env_spec(env_id)
    try:
        raw_observations = None
        if ale_id(env_id):
            env, notes = make_atari(env_id, **_with_defaults(options)), []
        else:
            raw = _make_raw(env_id, options)
            raw_observations = raw.observation_space
            check_actions(raw.action_space, env_id)
            check_api(raw.unwrapped, env_id)  # wrappers (a time limit) assume the API
            env, notes = prepare(raw, env_id)
        observations, actions = env.observation_space, env.action_space
        env.close()
    except (UnknownEnvError, MissingExtraError, UnsupportedEnvError):
        raise
    except EnvError as error:  # closing it failed
        raise UnsupportedEnvError(str(error)) from None
    except Exception as error:  # noqa: BLE001 - a user's env may raise anything: one line
        if isinstance(error, TypeError):  # gymnasium.make passes the options to the env's constructor
            unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(error))
            if unexpected and unexpected.group(1) in options:
                raise ValueError(f"--env-option {unexpected.group(1)}: {env_id} takes no such keyword; "
                                 f"{_keywords(spec, unexpected.group(1))}") from None
            missing = _missing_keywords(spec, options)
            if missing:  # the constructor's own arguments, with no default
                names = " and ".join(missing)
                raise UnsupportedEnvError(f"environment {env_id!r} needs {names} to be made: give "
                                          f"{'it' if len(missing) == 1 else 'them'} with --env-option "
                                          f"{missing[0]}=VALUE (from Python: env_options={{{missing[0]!r}: "
                                          f"...}})") from None
        first = str(error).splitlines()[0] if str(error) else ""
        given = f" with --env-option {', '.join(f'{k}={v!r}' for k, v in options.items())}" if options else ""
        raise UnsupportedEnvError(f"environment {env_id!r}{given} failed: {type(error).__name__}: "
                                  f"{first}") from None
    if isinstance(observations, spaces.Box) and len(observations.shape) == 3:
        family = "pixels"
    elif isinstance(actions, spaces.Box):
        family = "box"
    else:
        family = "vector"
    module = _entry_module(spec)
    package = module.split(".")[2] if module.startswith("gymnasium.envs.") else None
    # Observations made only of Discrete parts (toy text's states, Blackjack's cards) are one-hot:
    # agents treat them apart from measured quantities (a3c does not normalise them).
    one_hot = "one-hot" if _all_discrete(raw_observations) else None
    tags = tuple(tag for tag in (family, one_hot, package, spec.id) if tag)
    return EnvInfo(env_id, observations, actions, family, tags, tuple(notes))


MAKE_KEYWORDS = ("max_episode_steps", "render_mode", "disable_env_checker")  # gymnasium.make's own


def _parameters(spec) -> list[inspect.Parameter]:
    """The keyword parameters of the function or class that makes the env, gymnasium.make's left out."""
    made_by = gym.envs.registration.load_env_creator(spec.entry_point) if isinstance(spec.entry_point, str) \
        else spec.entry_point
    try:
        return [parameter for parameter in inspect.signature(made_by).parameters.values()
                if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
                and parameter.name not in MAKE_KEYWORDS]
    except (TypeError, ValueError):  # a builtin or a C class: nothing to read
        return []


def _missing_keywords(spec, options: dict) -> list[str]:
    """The env's constructor's arguments without a default that neither its registration nor
    `options` gives."""
    given = {**spec.kwargs, **options}
    return [parameter.name for parameter in _parameters(spec)
            if parameter.default is parameter.empty and parameter.name not in given]


def _keywords(spec, unknown: str) -> str:
    """The keywords an env takes, in words: its constructor's, gymnasium.make's, a close match."""
    names = [parameter.name for parameter in _parameters(spec)]
    if ale_id(spec.id):  # the preprocessing's, less ALE's that it sets itself
        names = [name for name in names if name not in FIXED_OPTIONS] + list(OWN_OPTIONS)
    close = difflib.get_close_matches(unknown, [*names, *MAKE_KEYWORDS], n=1)
    return ((f"did you mean {close[0]}? " if close else "")
            + (f"its own: {', '.join(names)}; " if names else "")
            + f"gymnasium.make's: {', '.join(MAKE_KEYWORDS)}")


def check_actions(space: gym.Space, env_id: str) -> None:
    """The action spaces some agent learns (agents say which of them each one does)."""
    # Gaussian policies and SAC's squashing give real numbers: an integer Box got them unrounded,
    # out of its dtype, and an empty Box made a network without outputs
    if not (isinstance(space, spaces.Discrete) or (isinstance(space, spaces.Box) and len(space.shape) == 1
                                                   and space.shape[0] > 0 and space.dtype.kind == "f")):
        raise UnsupportedEnvError(f"environment {env_id!r} has actions {space}; workbench's agents learn "
                                  f"Discrete or one-dimensional Box actions of floats")


def check_api(env: gym.Env, env_id: str) -> None:
    """One reset and one step: a one-line UnsupportedEnvError naming the method and what Gymnasium
    expects where `env` does not keep Gymnasium's API (an env written for the old Gym API returns
    obs from reset and four values from step), before anything starts."""
    checked = Checked(env, env_id)
    try:
        checked.reset(seed=0)
        checked.step(env.action_space.sample())
    except EnvError as error:
        raise UnsupportedEnvError(str(error)) from None


class Checked(gym.Wrapper):
    """An env whose faults are one-line EnvErrors naming it and the method: what reset, step,
    render and close raise, and what they return that the agents would misread (a wrong tuple, an observation
    outside the observation space, a reward that is not a number, an info that is not a dict).
    Unchecked, these surfaced as a traceback from a wrapper or as a numpy broadcast error."""

    def __init__(self, env: gym.Env, name: str):
        super().__init__(env)
        self.name, self.space = name, env.observation_space  # once: a wrapper's space is a property chain
        self._fits = _quick_fit(self.space)

    def reset(self, *, seed=None, options=None):
        try:
            result = self.env.reset(seed=seed, options=options)
        except Exception as error:  # noqa: BLE001 - a user's env may raise anything: one line
            raise self._raised("reset", error) from error
        if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
            raise self._fault(f"reset() returned {_shape_of(result)}; Gymnasium expects (observation, info dict)")
        self._check_observation(result[0], "reset")
        return result

    def step(self, action):
        try:
            result = self.env.step(action)
        except Exception as error:  # noqa: BLE001
            raise self._raised("step", error) from error
        if not (isinstance(result, tuple) and len(result) == 5):
            raise self._fault(f"step() returned {_shape_of(result)}; Gymnasium expects 5 values (observation, "
                              f"reward, terminated, truncated, info)")
        obs, reward, _, _, info = result
        if self._fits(obs) and reward.__class__ in _NUMBERS and info.__class__ is dict:
            return result  # the usual step, passed in well under a microsecond
        self._check_observation(obs, "step")
        if not _is_number(reward):
            raise self._fault(f"step() returned the reward {reprlib.repr(reward)}; Gymnasium expects one number")
        if not isinstance(info, dict):
            raise self._fault(f"step() returned the info {reprlib.repr(info)}; Gymnasium expects a dict")
        return result

    def render(self):
        try:
            return self.env.render()
        except Exception as error:  # noqa: BLE001 - gymnasium.Env's own raises NotImplementedError
            raise self._raised("render", error) from error

    def close(self):
        try:
            self.env.close()
        except Exception as error:  # noqa: BLE001 - at the end of a run it lost the final checkpoint
            raise self._raised("close", error) from error

    def _raised(self, method: str, error: Exception) -> EnvError:
        first = str(error).splitlines()[0] if str(error) else ""
        old_api = isinstance(error, TypeError) and method == "reset" and "keyword" in first
        hint = "; Gymnasium expects reset(*, seed=None, options=None)" if old_api else ""
        return self._fault(f"{method}() raised {type(error).__name__}{': ' if first else ''}{first}{hint}")

    def _check_observation(self, obs, method: str) -> None:
        misfit = _misfit(obs, self.space, "an observation")
        if misfit:
            raise self._fault(f"{method}() returned {misfit}")

    def _fault(self, what: str) -> EnvError:
        return EnvError(f"environment {self.name!r}: {what}")


_NUMBERS = frozenset({float, int, bool, np.float64, np.float32, np.int64, np.int32})


def _quick_fit(space: gym.Space):
    """A test that most observations fitting `space` pass in well under a microsecond (an array
    of a Box's shape, an int in a Discrete's range); what fails it goes to `_misfit`, which decides."""
    if isinstance(space, spaces.Box):
        shape = space.shape
        return lambda obs: obs.__class__ is np.ndarray and obs.shape == shape
    if isinstance(space, spaces.Discrete):
        low, high = int(space.start), int(space.start + space.n)
        return lambda obs: obs.__class__ in (int, np.int64) and low <= obs < high
    return lambda obs: False


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) or (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "biuf")


def _misfit(obs, space: gym.Space, what: str) -> str | None:
    """How `obs` does not fit `space` where agents would misread it (None where it fits): a Box's
    shape, a Discrete-like value out of range (its one-hot index), a Dict's keys, a Tuple's
    length. A Box's bounds are left unchecked: many envs' are loose, and values outside them read."""
    if isinstance(space, spaces.Box):
        if np.shape(obs) != space.shape:
            return f"{what} of shape {np.shape(obs)}, but its observation_space has shape {space.shape}"
    elif isinstance(space, (spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        if not space.contains(obs):
            expected = (f"one int from {space.start} to {space.start + space.n - 1}"
                        if isinstance(space, spaces.Discrete) else
                        f"an integer array of shape {space.shape} in its range"
                        if isinstance(space, spaces.MultiDiscrete) else f"0s and 1s of shape {space.shape}")
            return f"{what} {reprlib.repr(obs)}, which is not in its observation space {space}: {expected}"
    elif isinstance(space, (spaces.Dict, spaces.Tuple)):
        keys = list(space.spaces) if isinstance(space, spaces.Dict) else range(len(space.spaces))
        if isinstance(space, spaces.Dict) and not (isinstance(obs, dict) and set(keys) <= set(obs)):
            return f"{what} {reprlib.repr(obs)}, which lacks keys of its observation space {space}"
        if isinstance(space, spaces.Tuple) and not (isinstance(obs, (tuple, list)) and len(obs) == len(keys)):
            return f"{what} {reprlib.repr(obs)}, not a tuple of {len(keys)} as its observation space {space}"
        for key in keys:
            misfit = _misfit(obs[key], space[key], f"{what}[{key!r}]")
            if misfit:
                return misfit
    return None


def _shape_of(result) -> str:
    if isinstance(result, tuple):
        return f"{len(result)} values"
    kind = type(result).__name__
    return f"{'an' if kind[0] in 'aeiou' else 'a'} {kind}, not a tuple"
