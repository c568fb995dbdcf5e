"""Parallel RL training as a library call: `train(TrainConfig(...))` is what `workbench train` runs.

It builds the agent and the actor transport, opens (or resumes) a run folder, and hands them to
the Learner, which writes TensorBoard events, checkpoints and progress lines.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import nets
from actors import ActorFailure, ActorSpec, Diverged, InlineActors, Learner, LocalProcesses, Progress
from agents import Agent, agent_class, config_dict, config_from_dict, make_agent, make_config
from agents.gaussian import continuous_defaults
from agents.pixels import atari_defaults
from envs import check_env_id, continuous_actions, make_env
from envs.atari import ale_id
from logs import EventWriter, format_duration
from nets import backend, checkpoint

from .evaluate import Evaluator
from .runs import RunDir, default_name, describe

BACKENDS = ("processes", "inline", "ray")
GRADIENTS_ON = ("learner", "actors")
# Envs per actor, by agent: whole-episode REINFORCE steps one env; the others batch a few envs
# per forward pass, which amortises the network's per-call cost over more env steps.
ENVS_PER_ACTOR = {"a3c": 4, "a3c-lstm": 4, "impala": 4, "nstep-q": 4, "onestep-q": 4, "reinforce": 1,
                  "dqn": 4}
# Continuous control: 8 envs per actor (on 2 cores, 8 reached Pendulum's -250 in 41 s, 16 in 50 s
# (bigger batches, fewer updates per step), 4 not within 100 s).
CONTINUOUS_ENVS_PER_ACTOR = {"a3c": 8, "a3c-lstm": 8, "impala": 8}
# Atari actor-critics: 8 envs per actor. Breakout, Nature net, 2 actors on 2 cores
# (benchmarks/rl_atari.py): 4 envs 1,758 frames/s, 8 envs 2,166, 16 envs 2,015-2,060: a bigger
# batch per forward pass and one learner step per 40 env steps instead of 20; 16 were no faster.
ATARI_ENVS_PER_ACTOR = {"a3c": 8, "a3c-lstm": 8, "impala": 8}


def default_actors(env_id: str) -> int:
    """2, and on Atari one actor per core but the learner's: Atari's costs are in the actors (the
    emulator, and with gradients on the actors the passes through the net), and Breakout scaled
    to 6,206 env steps/s with 15 actors on 16 cores (README, Scaling out). Classic control keeps
    2: CartPole learned erratically with 8 and more."""
    return max(2, (os.cpu_count() or 2) - 1) if ale_id(env_id) else 2


def default_gradients_on(agent: str, device: str) -> str:
    """Where gradients are computed unless --gradients-on says: on the actors, which measured
    faster on this project's 2-core machine in every whole-system run and is projected faster on
    more cores (`python -m benchmarks scaling`; README, Scaling out), except where the central
    learner is the point: impala (V-trace corrects its actors' lag), dqn (it learns from the
    replay memory in the learner, not from the rollouts), a learner on the GPU, and nstep-q: its
    CartPole defaults reached 475 on 5 of 5 seeds with the central learner against 4 of 5 with
    gradients on the actors, whose runs of its CLI-defaults test fell short twice in suites."""
    return "learner" if agent in ("impala", "dqn", "nstep-q") or device == "gpu" else "actors"


@dataclass
class TrainConfig:
    """Everything a run needs; saved as the run's config.json."""

    env: str = "CartPole-v1"
    agent: str = "a3c"
    actors: int | None = None  # None: default_actors(env)
    envs_per_actor: int | None = None  # None: resolved_envs_per_actor (by agent, Atari, Box actions)
    steps: int = 100_000
    seed: int = 0
    backend: str = "processes"
    gradients_on: str | None = None  # learner: actors send rollouts; actors: they send gradients;
                                     # None: default_gradients_on
    device: str = "cpu"  # the learner's network and optimizer: "cpu" or "gpu"
    address: str | None = None  # ray backend: "auto", "HOST:PORT" or None (start Ray locally)
    env_options: dict = field(default_factory=dict)
    agent_config: dict = field(default_factory=dict)  # overrides of the agent's defaults
    logdir: str = "runs"
    checkpoint_every: int | None = None  # env steps; None: a tenth of the run
    keep_checkpoints: int = 5  # periodic checkpoints kept besides latest.npz; 0: all
    histogram_every: int = 500  # updates
    log_every: float = 1.0  # seconds between console lines
    actor_timeout: float = 60.0  # seconds without a rollout before an actor counts as hung
    max_in_flight: int = 1  # rollouts an actor may have sent that the learner has not taken
    eval_every: int = 0  # env steps between evaluations in a separate process; 0: none
    eval_episodes: int = 3  # whole episodes per evaluation

    def validate(self) -> None:
        """One-line ValueErrors for settings that cannot work."""
        check_env_id(self.env)
        agent_class(self.agent)
        if self.actors is not None and self.actors < 1:
            raise ValueError(f"actors must be >= 1, got {self.actors}")
        for name in ("steps", "histogram_every", "max_in_flight"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.eval_every < 0 or self.eval_episodes < 1:
            raise ValueError(f"eval-every must be >= 0 and eval-episodes >= 1, got "
                             f"{self.eval_every} and {self.eval_episodes}")
        if self.envs_per_actor is not None and self.envs_per_actor < 1:
            raise ValueError(f"envs-per-actor must be >= 1, got {self.envs_per_actor}")
        if self.agent == "reinforce" and self.resolved_envs_per_actor != 1:
            raise ValueError("reinforce learns from whole episodes: envs-per-actor must be 1")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.gradients_on is not None and self.gradients_on not in GRADIENTS_ON:
            raise ValueError(f"gradients-on must be one of {', '.join(GRADIENTS_ON)}, not "
                             f"{self.gradients_on!r}")
        if self.agent == "dqn" and self.gradients_on == "actors":
            raise ValueError("dqn learns from its replay memory in the learner, so its gradients "
                             "are computed there: leave out --gradients-on actors (or give learner)")
        backend.check_device(self.device)
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise ValueError(f"checkpoint-every must be >= 1, got {self.checkpoint_every}")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep-checkpoints must be >= 0, got {self.keep_checkpoints}")
        for name in ("log_every", "actor_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        self.agent_settings()  # unknown or mistyped hyperparameters

    def agent_settings(self):
        """The agent's config: its defaults, Atari's or continuous control's where they differ
        (agents/pixels.py, agents/gaussian.py), then `agent_config`."""
        if ale_id(self.env):
            defaults = atari_defaults(self.agent)
        elif continuous_actions(self.env, self.env_options):
            defaults = continuous_defaults(self.agent, self.env)
        else:
            defaults = {}
        return make_config(self.agent, {**defaults, **self.agent_config})

    @property
    def resolved_actors(self) -> int:
        return self.actors or default_actors(self.env)

    @property
    def resolved_envs_per_actor(self) -> int:
        if self.envs_per_actor:
            return self.envs_per_actor
        if self.agent in CONTINUOUS_ENVS_PER_ACTOR and continuous_actions(self.env, self.env_options):
            return CONTINUOUS_ENVS_PER_ACTOR[self.agent]
        if self.agent in ATARI_ENVS_PER_ACTOR and ale_id(self.env):
            return ATARI_ENVS_PER_ACTOR[self.agent]
        return ENVS_PER_ACTOR[self.agent]

    @property
    def learner_threads(self) -> int:
        """The learner's threads for BLAS and Numba: the cores its actors leave. Inline runs count
        their actors too: with a second BLAS thread an inline Breakout run on 2 cores was 3-18%
        slower (its products are too small to split)."""
        return max(1, (os.cpu_count() or 1) - self.resolved_actors)

    @property
    def resolved_gradients_on(self) -> str:
        return self.gradients_on or default_gradients_on(self.agent, self.device)

    def to_dict(self) -> dict:
        """The saved form: defaults filled in, the agent's full hyperparameters included."""
        values = dataclasses.asdict(self)
        values["actors"] = self.resolved_actors
        values["envs_per_actor"] = self.resolved_envs_per_actor
        values["gradients_on"] = self.resolved_gradients_on
        values["agent_config"] = config_dict(self.agent_settings())
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Unknown keys and values of the wrong type are one-line ValueErrors (ranges: validate)."""
        return config_from_dict(cls, values, limits={})


@dataclass
class RunResult:
    run: RunDir
    outcome: str  # "finished" or "stopped"
    progress: Progress
    restarts: int
    warnings: list[str]  # e.g. losses that exploded


class RunFailed(RuntimeError):
    """The run stopped on an error while training (it diverged, a write failed, actors never
    started); the message says where, and which checkpoint is kept."""


# What ends a run while it trains, as opposed to settings that cannot work (ValueError).
RUN_ERRORS = (Diverged, ActorFailure, nets.NonFiniteError, checkpoint.CheckpointError, OSError)


def train(config: TrainConfig, *, name: str | None = None, resume: RunDir | None = None,
          should_stop: Callable[[Progress], bool] = lambda progress: False,
          console: Callable[[str], None] = print,
          on_start: Callable[[Agent], None] | None = None) -> RunResult:
    """Run (or, with `resume`, continue) one training run and return how it ended.
    `on_start(agent)` sees the learner's agent before training (e.g. to evaluate it from
    `should_stop`)."""
    config.validate()
    n_actors, envs_per_actor = config.resolved_actors, config.resolved_envs_per_actor
    agent_settings = config.agent_settings()
    nets.seed(config.seed)
    try:
        probe = make_env(config.env, **config.env_options)
    except TypeError as error:  # gymnasium.make passes --env-option keywords to the env's class
        raise ValueError(f"--env-option: {error}") from None
    agent = make_agent(config.agent, probe.observation_space, probe.action_space, agent_settings,
                       device=config.device)
    probe.close()

    progress = Progress()
    if resume is not None:
        run = resume
        latest = run.latest_checkpoint()
        if latest is None:
            raise checkpoint.CheckpointError(f"{run.path} has no checkpoint to resume from")
        run.remove_stale_temporaries()
        trained, wanted = checkpoint.read(latest)[0]["meta"].get("config"), describe(config.to_dict())
        if trained and describe(trained) != wanted:
            raise checkpoint.CheckpointError(f"{latest} was trained on {describe(trained)}, but this run "
                                             f"is for {wanted}; resume with the run's own settings or "
                                             f"start a new run")
        progress = Progress.from_meta(checkpoint.load(latest, agent.model, agent.optimizer))
        note = agent.after_load()
        console(f"resuming {run.path} at step {progress.step:,} (update {progress.updates:,})")
        if note:
            console(note)
    else:
        run = RunDir.create(config.logdir, name or default_name(config.env, config.agent),
                            chosen=name is not None)
        console(f"run folder {run.path}")
    run.write_config(config.to_dict())

    # A resumed run's actors get new seeds, so they do not replay the episodes already learned from.
    actor_settings = agent_settings
    if getattr(agent_settings, "apex_actors", None) == 0:  # Ape-X's epsilons span every actor env
        actor_settings = dataclasses.replace(agent_settings, apex_actors=n_actors * envs_per_actor)
    spec = ActorSpec(env_id=config.env, agent=config.agent, agent_config=actor_settings,
                     envs_per_actor=envs_per_actor, seed=config.seed + 7919 * progress.updates,
                     env_options=config.env_options, compute_gradients=config.resolved_gradients_on == "actors")
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

        evaluator = Evaluator(config.to_dict(), config.eval_every, config.eval_episodes, config.seed,
                              report, first_step=progress.step)
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
            outcome = learner.run(should_stop)
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
