"""The Python API, in the conventions of stable-baselines3 and Gymnasium:

    import workbench
    run = workbench.train(env="CartPole-v1", agent="a3c", steps=100_000, actors=2, lr=0.01)
    policy = workbench.load(run.path)                # a run folder or a checkpoint file
    workbench.evaluate(policy, episodes=10)          # on the run's own env; .mean, .std, .returns
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    action = policy.act(obs)                         # greedy; greedy=False samples

`env` is what `workbench train --env` takes (a Gymnasium id, "MODULE:ID", "MODULE:FUNCTION") or
the function itself: one defined at the top level of an importable module that makes the env
when called with no arguments (a Gymnasium Env class works too). Actor processes import it by its
name, so a lambda, a closure or a function of the notebook or script being run is refused with a
one-line ValueError saying what to do. Every other keyword is a `workbench train` setting
(`backend="inline"`, `seed=1`, `logdir=...`) or one of the agent's (`lr`, `gamma`, ...:
`workbench agents`). Ctrl-C or SIGTERM stops the run with a checkpoint, as on the command line,
and `train` returns it; `train(resume=run.path)` continues it (a run folder, or its config.json).
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass

import numpy as np


def env_name(env) -> str:
    """The name under which `env` travels to actor processes and into config.json."""
    if isinstance(env, str):
        return env
    if not callable(env) or not hasattr(env, "__qualname__"):
        kind = "an env object" if hasattr(env, "step") and hasattr(env, "reset") else "a value"
        raise ValueError(f"env must be an environment id or a function that makes the env, not "
                         f"{kind} ({type(env).__name__}): actor processes build their own envs; pass "
                         f"its id, or the function or class that makes it")
    module, name = getattr(env, "__module__", None), env.__qualname__
    if env.__name__ == "<lambda>" or "<locals>" in name:
        raise ValueError(f"env {env.__name__} is a lambda or a nested function, which actor processes cannot "
                         f"import; define `def make_env(): return ...` at the top level of a module "
                         f"(e.g. myenvs.py) and pass that")
    if module in (None, "__main__"):
        raise ValueError(f"env {name} is defined in the script or notebook being run, which actor "
                         f"processes cannot import; move it into a module of its own (e.g. myenvs.py "
                         f"beside it), import it from there and pass that")
    return f"{module}:{name}"


def _check_keywords(settings: dict, fields: set[str], agent: str) -> None:
    """A keyword neither a run setting nor the agent's is named with the closest of all (a typo of
    `steps` would otherwise be reported as a setting the agent lacks)."""
    from agents import agent_class

    agent_fields = set(agent_class(agent).Config.__dataclass_fields__)
    unknown = sorted(set(settings) - fields - agent_fields - {"agent_config"})
    if unknown:
        known = [*inspect.signature(train).parameters][:-1] + sorted(fields) + sorted(agent_fields)
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"workbench.train() takes no keyword {unknown[0]}{hint}: its keywords are its "
                         f"arguments, workbench train's settings ({', '.join(sorted(fields))}) and "
                         f"{agent}'s ({', '.join(sorted(agent_fields))})")


def train(env=None, agent: str | None = None, steps: int | None = None,
          actors: int | None = None, *, name: str | None = None, resume=None, verbose: bool = True,
          **settings):
    """Train (or, with `resume=` a run folder, continue) one run, on `env` (default CartPole-v1;
    a resumed run's own, as with every setting not given again); returns its RunResult (`.path`,
    `.summary`, `.mean_return`, `.outcome`: "already finished" where a resumed run had no steps
    left). Settings that cannot work raise a one-line ValueError before anything starts; a run
    that fails while training raises RunFailed."""
    from agents import DEFAULT_AGENT
    from nets import threads
    from workbench.rl import TrainConfig, resumed_run
    from workbench.rl import train as run_training
    from workbench.runs import stop_signals, undone_if_failed

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    run, values = (None, {}) if resume is None else resumed_run(resume, agent)
    _check_keywords(settings, fields, agent or values.get("agent", DEFAULT_AGENT))
    # what is not given comes from the resumed run's config.json, else TrainConfig's defaults
    given = {"env": None if env is None else env_name(env), "agent": agent, "steps": steps, "actors": actors}
    values.update({key: value for key, value in given.items() if value is not None})
    values["agent_config"] = {**values.get("agent_config", {}), **settings.pop("agent_config", {}),
                              **{key: value for key, value in settings.items() if key not in fields}}
    values.update({key: value for key, value in settings.items() if key in fields})
    config = TrainConfig.from_dict(values)
    config.validate()
    # Ctrl-C (a notebook's interrupt too) or SIGTERM ends the run with a checkpoint
    with threads.limited(config.learner_threads), stop_signals() as received, undone_if_failed():
        result = run_training(config, name=name, resume=run, should_stop=lambda progress: bool(received),
                              console=print if verbose else lambda line: None)
    if verbose and result.outcome == "stopped":
        print(f"stopped by {received[0]} at step {result.progress.step:,}; checkpoint saved. "
              f"Continue with: workbench.train(resume={str(result.path)!r})")
    return result


class TrainedPolicy:
    """A trained agent from a run folder or checkpoint (`load`). `act` takes one observation as
    the run's env gives it (`make_env()`: workbench's preprocessing applied) and returns one
    action; a recurrent agent carries its state until `reset()`."""

    def __init__(self, restored, seed: int = 0):
        self.agent, self.config = restored.agent, restored.config
        self.observation_space, self.action_space = (restored.env.observation_space,
                                                     restored.env.action_space)
        self.checkpoint, self.step = restored.checkpoint, restored.step
        self.env_id = self.config["env"]
        self._rng = np.random.default_rng(seed)
        self._players = {}
        restored.env.close()

    def __repr__(self) -> str:
        return f"TrainedPolicy({self.config['agent']} on {self.env_id}, {self.checkpoint}, step {self.step:,})"

    def act(self, obs, greedy: bool = True):
        """The action for `obs`: the best (a Gaussian policy's mean), or sampled as in training. An
        `obs` of another shape than the run's env gives is a one-line ValueError."""
        from workbench.episodes import Player

        shape = self.observation_space.shape
        if obs is None or np.shape(obs) != shape:
            given = "None" if obs is None else f"shape {np.shape(obs)}"
            raise ValueError(f"obs must be one observation of shape {shape}, as policy.make_env() gives "
                             f"them ({self.env_id} with workbench's preprocessing), got {given}")
        if greedy not in self._players:
            self._players[greedy] = Player(self.agent, greedy, self._rng)
        return self._players[greedy].act(obs)

    def reset(self) -> None:
        """A new episode starts: a recurrent agent's state goes back to zero."""
        for player in self._players.values():
            player.reset()

    def make_env(self, render_mode: str | None = None, seed: int | None = None):
        """The run's env as evaluation plays it (whole Atari games, unclipped rewards)."""
        from envs import make_env

        options = dict(self.config.get("env_options", {}))
        if render_mode:
            options["render_mode"] = render_mode
        return make_env(self.env_id, seed=seed, training=False, **options)


def load(run_or_checkpoint, seed: int = 0) -> TrainedPolicy:
    """The trained agent of a run folder (its latest checkpoint) or of a checkpoint file; a
    one-line ValueError where there is none or it does not fit its run's config. `seed` seeds the
    sampling of `act(..., greedy=False)`."""
    from workbench.episodes import restore

    return TrainedPolicy(restore(run_or_checkpoint), seed)


@dataclass
class Evaluation:
    returns: list[float]
    lengths: list[int]

    @property
    def mean(self) -> float:
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        return float(np.std(self.returns))

    def __repr__(self) -> str:
        return f"Evaluation(mean {self.mean:g}, std {self.std:g} over {len(self.returns)} episodes)"


def evaluate(policy: TrainedPolicy, env=None, episodes: int = 10, greedy: bool = True,
             seed: int = 0, max_steps: int | None = None) -> Evaluation:
    """Play `episodes` whole episodes: on the run's own env (None), on another one named as
    `train` takes it, or on a Gymnasium env object (made with gymnasium.make: workbench's
    preprocessing is applied to it here). An env whose observations do not fit the policy is a
    one-line ValueError; one that fails while played (raises, or breaks Gymnasium's API) an
    envs.EnvError."""
    import gymnasium as gym

    from envs import make_env, prepare
    from workbench.episodes import Player, play_episodes

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if max_steps is not None and max_steps < 1:
        raise ValueError(f"max_steps must be >= 1 (or None: the env's own time limit), got {max_steps}")
    own = not isinstance(env, gym.Env)  # made here, so closed here; the caller's env object stays open
    if env is None:
        made, name = policy.make_env(), policy.env_id
    elif own:
        name = env_name(env)
        made = make_env(name, training=False)
    else:
        made, name = prepare(env)[0], env.spec.id if env.spec else type(env.unwrapped).__name__
    wanted, shape = policy.observation_space.shape, made.observation_space.shape
    misfit = (f"its observations have shape {shape}, but the policy was trained on {policy.env_id}, whose "
              f"observations have shape {wanted}" if shape != wanted else
              f"its actions are {made.action_space}, but the policy was trained on {policy.env_id}, whose "
              f"actions are {policy.action_space}" if made.action_space != policy.action_space else None)
    if misfit:
        if own:
            made.close()
        raise ValueError(f"env {name} does not fit the policy: {misfit}")
    made.reset(seed=seed)
    player = Player(policy.agent, greedy, np.random.default_rng(seed))
    results = play_episodes(made, player, episodes, max_steps)
    if own:
        made.close()
    return Evaluation([r for r, _ in results], [n for _, n in results])


__all__ = ["Evaluation", "TrainedPolicy", "env_name", "evaluate", "load", "train"]
