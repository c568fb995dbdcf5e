"""Parallel RL training as a library call: `train(TrainConfig(...))` is what `workbench train` runs.

It builds the agent and the actor transport, opens (or resumes) a run folder, and hands them to
the Learner, which writes TensorBoard events, checkpoints and progress lines.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable

import multiprocess
import numpy as np

import nets
from actors import ActorFailure, ActorSpec, Diverged, InlineActors, Learner, LocalProcesses, Progress
from actors.worker import UNGUARDED_SCRIPT
from agents import DEFAULT_AGENT, Agent, agent_class, config_dict, make_agent, make_config
from envs import EnvError, EnvInfo, probe
from logs import EventWriter, format_duration
from nets import backend, checkpoint, optim, settings
from nets.settings import Settings, setting

from .episodes import Evaluator
from .runs import RunDir, default_name, describe

BACKENDS = ("processes", "inline", "ray")
MAX_ACTORS_PER_CORE = 8  # more actor processes than this on one machine only wait for a core


def default_actors(family: str) -> int:
    """2, and for image observations (Atari) one actor per core but the learner's: their costs are
    in the actors (the emulator, and with gradients on the actors the passes through the conv
    net), and Breakout scaled to 6,206 env steps/s with 15 actors on 16 cores (docs/scaling.md and
    docs/performance.md). Classic control keeps 2: CartPole learned erratically with 8 and more."""
    return max(2, (os.cpu_count() or 2) - 1) if family == "pixels" else 2


@dataclass
class TrainConfig(Settings):
    """Everything a run needs; saved as the run's config.json. None means the default for the
    env and agent (the `resolved_...` properties); the agent's own settings are `agent_config`,
    over the agent's defaults for the env."""

    env: str = "CartPole-v1"  # a Gymnasium id, MODULE:ID or MODULE:FUNCTION (envs/make.py)
    agent: str = DEFAULT_AGENT  # a name in agents.AGENTS (validate checks it)
    actors: int | None = setting(None, ">= 1")
    envs_per_actor: int | None = setting(None, ">= 1")
    steps: int = setting(100_000, ">= 1")
    seed: int = setting(0, ">= 0")
    backend: str = setting("processes", "one of " + ", ".join(BACKENDS))
    gradients_on: str | None = setting(None, "one of learner, actors")  # learner: actors send
                                         # rollouts; actors: they send gradients
    device: str = setting("cpu", "one of " + ", ".join(nets.backend.DEVICES))  # the learner's network
    address: str | None = None  # ray backend: "auto", "HOST:PORT" or None (start Ray locally)
    env_options: dict = setting({})
    agent_config: dict = setting({})  # overrides of the agent's defaults
    logdir: str = "runs"
    checkpoint_every: int | None = setting(None, ">= 1")  # env steps; None: a tenth of the run
    keep_checkpoints: int = setting(5, ">= 0")  # periodic checkpoints kept besides latest.npz; 0: all
    histogram_every: int = setting(0, ">= 0")  # updates; 0: none, so TensorBoard opens on the curves
    log_every: float = setting(1.0, "> 0")  # seconds between console lines
    actor_timeout: float = setting(60.0, "> 0")  # seconds without a rollout before an actor counts as hung
    max_in_flight: int = setting(1, ">= 1")  # rollouts an actor may have sent that the learner has not taken
    eval_every: int = setting(0, ">= 0")  # env steps between evaluations in a separate process; 0: none
    eval_episodes: int = setting(3, ">= 1")  # whole episodes per evaluation

    @staticmethod
    def label(name: str) -> str:
        """Messages name a setting by its flag."""
        return name.replace("_", "-")

    def validate(self) -> None:
        """One-line ValueErrors for settings that cannot work together or with the env (ranges
        and types are checked when the config is made)."""
        agent = agent_class(self.agent)
        env = self.env_info
        agent.check_action_space(env.action_space)
        if agent.whole_episodes and self.resolved_envs_per_actor != 1:
            raise ValueError(f"{self.agent} learns from whole episodes: envs-per-actor must be 1")
        one_machine = self.backend != "ray" or self.address is None  # a local Ray instance too
        if one_machine and self.resolved_actors > MAX_ACTORS_PER_CORE * (os.cpu_count() or 1):
            raise ValueError(f"actors must be at most {MAX_ACTORS_PER_CORE} per core on one machine "
                             f"({MAX_ACTORS_PER_CORE * (os.cpu_count() or 1)} here), got {self.resolved_actors}; "
                             f"--backend ray --address HOST:PORT spreads more over a cluster")
        rollout = getattr(self.agent_settings(), "t_max", 1) * self.resolved_envs_per_actor
        if not agent.whole_episodes and rollout > self.steps:
            raise ValueError(f"one rollout ({rollout:,} steps: t_max x envs-per-actor) is longer than "
                             f"--steps {self.steps:,}; lower --t-max or --envs-per-actor, or raise --steps")
        if self.gradients_on is not None and self.gradients_on not in agent.gradients_on:
            raise ValueError(f"{self.agent} computes its gradients on the {' or the '.join(agent.gradients_on)}: "
                             f"leave out --gradients-on {self.gradients_on}")
        if self.address is not None and self.backend != "ray":
            raise ValueError("--address needs --backend ray")
        if self.backend == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError('--backend ray needs ray: pip install -e ".[cluster]"')
        backend.check_device(self.device)
        self.agent_settings()  # unknown or mistyped hyperparameters

    @property
    def env_info(self) -> EnvInfo:
        """The env's spaces, family and tags (made once per process: envs.probe)."""
        return probe(self.env, self.env_options)

    def agent_settings(self):
        """The agent's config: its defaults, its presets for this env, then `agent_config`."""
        defaults = agent_class(self.agent).defaults(self.env_info.tags)
        return make_config(self.agent, {**defaults, **self.agent_config})

    @property
    def resolved_actors(self) -> int:
        return self.actors or default_actors(self.env_info.family)

    @property
    def resolved_envs_per_actor(self) -> int:
        return self.envs_per_actor or agent_class(self.agent).default_envs_per_actor(self.env_info.family)

    @property
    def learner_threads(self) -> int:
        """The learner's threads for BLAS and Numba: the cores its actors leave. Inline runs count
        their actors too: with a second BLAS thread an inline Breakout run on 2 cores was 3-18%
        slower (its products are too small to split)."""
        return max(1, (os.cpu_count() or 1) - self.resolved_actors)

    @property
    def resolved_gradients_on(self) -> str:
        """--gradients-on, else the agent's first choice, but the learner where it is on the GPU.
        Actors compute them by default: measured faster on this project's 2-core machine in every
        whole-system run and projected faster on more cores (`python -m benchmarks scaling`;
        docs/scaling.md); agents whose point is a central learner list it first."""
        allowed = agent_class(self.agent).gradients_on
        if self.gradients_on:
            return self.gradients_on
        return "learner" if self.device == "gpu" and "learner" in allowed else allowed[0]

    def to_dict(self) -> dict:
        """The saved form: defaults filled in, the agent's full hyperparameters included."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values["actors"] = self.resolved_actors
        values["envs_per_actor"] = self.resolved_envs_per_actor
        values["gradients_on"] = self.resolved_gradients_on
        values["agent_config"] = config_dict(self.agent_settings())
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Unknown keys, values of the wrong type or out of range are one-line ValueErrors; an
        agent setting among the run's is told where it belongs."""
        agent_fields = agent_class(values.get("agent", DEFAULT_AGENT)).Config.__dataclass_fields__
        misplaced = sorted(set(values) - set(cls.__dataclass_fields__) & set(agent_fields))
        if misplaced:
            example = json.dumps({"agent_config": {misplaced[0]: values[misplaced[0]]}})
            raise ValueError(f"{', '.join(misplaced)}: agent settings go under agent_config, e.g. {example}")
        return settings.from_dict(cls, values, "a run's config")


def resumed_run(path, agent: str | None = None) -> tuple[RunDir, dict]:
    """The run folder that `workbench train --resume` and `workbench.train(resume=...)` continue
    (the folder, or its config.json) and its config.json. A recipe run, or `agent` other than the
    run's (its checkpoint holds that agent's network and optimizer), is a one-line ValueError."""
    run = RunDir.resumed(path)
    values = run.read_config()
    if "recipe" in values:
        raise ValueError(f"{run.path} is a recipe run: continue it with workbench recipe "
                         f"{values['recipe']} --resume {run.path}")
    trained = values.get("agent", DEFAULT_AGENT)
    if agent is not None and agent != trained:
        raise ValueError(f"{run.path} was trained with {trained}, so it resumes with {trained}, not {agent}: "
                         f"leave out the agent, or start a new run for {agent}")
    return run, values


@dataclass
class RunResult:
    run: RunDir
    outcome: str  # "finished", "stopped", or "already finished" (resumed with no steps left: nothing ran)
    progress: Progress
    restarts: int
    warnings: list[str]  # e.g. losses that exploded

    @property
    def path(self):
        """The run folder."""
        return self.run.path

    @property
    def mean_return(self) -> float | None:
        """The mean return of the last (up to 100) training episodes."""
        return self.progress.mean_return()

    @property
    def summary(self) -> str:
        """summary.txt: how the run ended, its return, time and checkpoint."""
        return (self.run.path / "summary.txt").read_text()

    def __repr__(self) -> str:  # a notebook shows it: not the RunDir object and 100 returns
        returns = len(self.progress.recent_returns)
        mean = f"mean return {self.mean_return:g} over the last {returns} episodes" if returns else "no episode"
        return f"RunResult({self.path} {self.outcome} at step {self.progress.step:,}: {mean})"


class RunFailed(RuntimeError):
    """The run stopped on an error while training (it diverged, a write failed, actors never
    started); the message says where, and which checkpoint is kept."""


# What ends a run while it trains, as opposed to settings that cannot work (ValueError); an
# EnvError is met by an inline actor (an actor process's ends it as an ActorFailure)
RUN_ERRORS = (Diverged, ActorFailure, EnvError, nets.NonFiniteError, checkpoint.CheckpointError,
              OSError)


def available_memory() -> int:
    """Bytes of memory the machine can give a new allocation (Linux's MemAvailable; elsewhere
    the physical memory)."""
    try:
        with open("/proc/meminfo") as meminfo:
            return next(int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def train(config: TrainConfig, *, name: str | None = None, resume: RunDir | None = None,
          should_stop: Callable[[Progress], bool] = lambda progress: False,
          console: Callable[[str], None] = print,
          on_start: Callable[[Agent], None] | None = None) -> RunResult:
    """Run (or, with `resume`, continue) one training run and return how it ended; a resumed run
    already at `config.steps` says so and returns before anything starts.
    `on_start(agent)` sees the learner's agent before training (e.g. to evaluate it from
    `should_stop`)."""
    if getattr(multiprocess.current_process(), "_inheriting", False):
        # an actor process starting up re-runs the caller's script (multiprocessing's spawn and
        # forkserver do): a script without the guard would start a run in every actor
        print("workbench.train was called again while an actor process imported the script that "
              "calls it: put the call under `if __name__ == \"__main__\":`", file=sys.stderr, flush=True)
        os._exit(UNGUARDED_SCRIPT)  # at once: the fork server's child would exit 1 on SystemExit, or
        # print the traceback of an exception; the learner reads this code and stops the run
    config.validate()
    env = config.env_info
    run = None if resume is None else resume.claim()  # before touching it: another process may be writing it
    try:
        if run is not None:
            latest = run.latest_checkpoint()
            if latest is None:
                raise checkpoint.CheckpointError(f"{run.path} has no checkpoint to resume from")
            run.remove_stale_temporaries()
            try:
                meta = checkpoint.read(latest)[0]["meta"]
            except checkpoint.CheckpointError as error:
                raise checkpoint.CheckpointError(f"{error}{run.periodic_hint()}") from None
            trained, wanted = meta.get("config"), describe(config.to_dict())
            if trained and describe(trained) != wanted:
                raise checkpoint.CheckpointError(f"{latest} was trained on {describe(trained)}, but this run "
                                                 f"is for {wanted}; resume with the run's own settings or "
                                                 f"start a new run")
            if meta["step"] >= config.steps:
                console(f"run {run.name} is finished: {meta['step']:,} of {config.steps:,} steps; "
                        f"pass --steps N to train further")
                return RunResult(run, "already finished", Progress.from_meta(meta), 0, [])
        nets.seed(config.seed)
        try:
            agent = make_agent(config.agent, env.observation_space, env.action_space, config.agent_settings(),
                               device=config.device)
        except MemoryError as error:  # numpy's says how much: --hidden 200000,200000 needs 298 GiB
            raise ValueError(f"{config.agent}'s network and memory do not fit in this machine's memory "
                             f"({error}); lower the sizes (--hidden, --set buffer_size=...)") from None
        needed, available = agent.memory_bytes(), available_memory()
        if needed > available:  # the memory is made when first used: refused before anything starts
            raise ValueError(f"{config.agent}'s replay memory of {agent.memory_settings()['capacity']:,} "
                             f"steps needs {needed / 2**30:,.1f} GiB; this machine has "
                             f"{available / 2**30:,.1f} GiB available: lower --set buffer_size")
        if run is not None:
            progress = Progress.from_meta(checkpoint.load(latest, agent.model, agent.optimizer))
            if not math.isfinite(optim.sum_of_squares(agent.network.flat().data)):
                raise checkpoint.CheckpointError(f"{latest} holds non-finite weights (NaN or Inf), so training "
                                                 f"cannot continue from it{run.periodic_hint()}")
            note = agent.after_load()
            console(f"resuming {run.path} at step {progress.step:,} (update {progress.updates:,})")
            if note:
                console(note)
        else:
            progress = Progress()
            run = RunDir.create(config.logdir, name or default_name(config.env, config.agent),
                                chosen=name is not None).claim()
            console(f"run folder {run.path}")
        return _train_run(config, run, agent, progress, env, should_stop, console, on_start)
    finally:
        if run is not None:
            run.release()


def _train_run(config: TrainConfig, run: RunDir, agent: Agent, progress: Progress, env, should_stop,
               console, on_start) -> RunResult:
    """The run from its config.json on, in a folder this process owns."""
    n_actors, envs_per_actor = config.resolved_actors, config.resolved_envs_per_actor
    agent_settings = config.agent_settings()
    run.write_config(config.to_dict())

    actor_settings = agent_class(config.agent).actor_config(agent_settings, n_actors * envs_per_actor)
    # A resumed run's actors get new seeds, so they do not replay the episodes already learned from.
    spec = ActorSpec(env_id=config.env, agent=config.agent, agent_config=actor_settings,
                     envs_per_actor=envs_per_actor, seed=config.seed + 7919 * progress.updates,
                     env_options=config.env_options, compute_gradients=config.resolved_gradients_on == "actors",
                     working_dir=os.getcwd(), check=nets.is_check_mode())
    n_params = len(agent.network.flat())
    if config.backend == "inline":
        transport = InlineActors(spec, n_actors)
    elif config.backend == "ray":
        from actors.ray_backend import RayActors  # ray is imported only for this backend

        transport = RayActors(spec, n_actors, config.address, max_in_flight=config.max_in_flight,
                              actor_timeout=config.actor_timeout)
    else:
        transport = LocalProcesses(spec, n_actors, n_params, max_in_flight=config.max_in_flight,
                                   actor_timeout=config.actor_timeout)
    events = EventWriter(str(run.path))
    if progress.step == 0:
        settings = "\n".join(f"{k}: {v}" for k, v in config.to_dict().items())
        events.text("config", f"```\n{settings}\n```")

    def save(p: Progress, periodic: bool) -> None:
        meta = {**p.to_meta(), "env": config.env, "agent": config.agent, "config": config.to_dict()}
        checkpoint.save(run.checkpoint_path(), agent.model, agent.optimizer, meta)
        if periodic:
            checkpoint.save(run.checkpoint_path(p.step), agent.model, agent.optimizer, meta)
            run.prune_checkpoints(config.keep_checkpoints)

    console(f"{config.agent} on {config.env}: {n_actors} actor(s) x {envs_per_actor} env(s), "
            f"{config.steps:,} steps, {n_params:,} parameters, backend {config.backend}, "
            f"gradients on the {config.resolved_gradients_on}"
            + (", learner on the GPU" if config.device == "gpu" else ""))
    for note in env.notes:
        console(f"note: {note}")
    if agent.memory is not None:
        console(agent.memory.describe())
    if on_start:
        on_start(agent)
    learner = Learner(agent, transport, config.steps, progress=progress, events=events,
                      console=console, checkpoint=save,
                      checkpoint_every=config.checkpoint_every or max(1, config.steps // 10),
                      histogram_every=config.histogram_every, log_every=config.log_every)
    evaluator = None
    if config.eval_every:
        def report(step: int, results: list[tuple[float, int]]) -> None:
            returns = [r for r, _ in results]
            events.scalars({"eval/episodic_return": float(np.mean(returns)),
                            "eval/episodic_length": float(np.mean([n for _, n in results]))}, step)
            console(f"evaluation at step {step:,}: return {np.mean(returns):g} "
                    f"(episodes: {', '.join(f'{r:g}' for r in returns)})")

        def failed(reason: str) -> None:
            learner.warnings.append(f"evaluation stopped: {reason}")
            console("warning: " + learner.warnings[-1])

        evaluator = Evaluator(config.to_dict(), config.eval_every, config.eval_episodes, config.seed,
                              report, failed, first_step=progress.step)
        run_until = should_stop

        def should_stop(p: Progress) -> bool:  # the learner asks every loop: the evaluator's tick
            evaluator.tick(p.step, agent.network.flat().data)
            return run_until(p)

    def summarize(outcome: str) -> None:
        p, mean = learner.progress, learner.progress.mean_return()
        run.write_summary([
            f"run          {run.path}",
            f"env / agent  {config.env} / {config.agent} ({n_actors} actors x {envs_per_actor} envs)",
            f"outcome      {outcome}",
            f"updates      {p.updates:,}",
            f"episodes     {p.episodes:,}",
            f"return       {'-' if mean is None else f'{mean:.1f}'} "
            f"(mean of the last {len(p.recent_returns)} episodes)",
            f"time         {format_duration(p.elapsed)} of training "
            f"({p.step / max(p.elapsed, 1e-9):,.0f} steps/s)",
            f"restarts     {learner.restarts} actor(s) replaced",
            f"checkpoint   {run.checkpoint_path()}",
            *(f"warning      {line}" for line in learner.warnings),
            f"host         {platform.node()} python {sys.version.split()[0]} ({os.cpu_count()} cores)",
        ])

    try:
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the learner says when
                outcome = learner.run(should_stop)                               # a run diverges
        finally:
            if evaluator:
                evaluator.stop()
            events.close()
        summarize(f"{outcome} at step {learner.progress.step:,} of {config.steps:,}")
    except RUN_ERRORS as error:
        latest = run.latest_checkpoint()
        kept = f"the last checkpoint, {latest}, is kept" if latest else "no checkpoint was written"
        failure = f"{failure_reason(error, learner.progress, run)}; {kept}"
        with contextlib.suppress(OSError):  # a full disk may leave no room for the summary either
            summarize(f"failed: {failure}")
        raise RunFailed(failure) from None
    return RunResult(run, outcome, learner.progress, learner.restarts, learner.warnings)


def failure_reason(error: Exception, progress: Progress, run: RunDir) -> str:
    """One line for an error in RUN_ERRORS."""
    if isinstance(error, OSError):
        return f"the run stopped on a write error at step {progress.step:,} in {run.path}: {error}"
    if isinstance(error, nets.NonFiniteError):
        return (f"check mode stopped the run in update {progress.updates + 1:,} (step "
                f"{progress.step:,}): {error}")
    return str(error)
