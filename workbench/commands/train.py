"""`workbench train`: parallel RL training (one learner, N actor processes) into a run folder.

Settings come from three layers, later ones winning: the agent's published defaults, a JSON
config file (`--config`, e.g. a run's saved config.json, or with `--resume RUN` the run's own),
then the flags given on the command line. The agents' names, summaries and rules come from
their classes (agents/); the actor system and the logging are imported in `run`, after the
thread limits are set.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from agents import AGENTS, DEFAULT_AGENT
from agents.networks import TRUNKS
from workbench.commands import HelpFormatter, failed

if TYPE_CHECKING:
    from workbench.runs import RunDir

# Flags that set an agent hyperparameter: flag destination -> field of the agent's config.
AGENT_FLAGS = {"lr": "lr", "gamma": "gamma", "t_max": "t_max", "entropy_beta": "entropy_beta",
               "hidden": "hidden", "network": "trunk", "target_update": "target_update_interval"}
# Flags that set a TrainConfig field directly.
RUN_FLAGS = ("env", "agent", "actors", "envs_per_actor", "steps", "seed", "backend", "gradients_on",
             "device", "address", "logdir", "checkpoint_every", "keep_checkpoints", "histogram_every",
             "log_every", "actor_timeout", "max_in_flight", "eval_every", "eval_episodes")


PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}  # as gymnasium.make's kwargs are written


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE with VALUE parsed as JSON when it is JSON (numbers, lists, true/null) or one of
    Python's True, False and None (a string "False" would be true to an env); else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    if value in PYTHON_CONSTANTS:
        return key.replace("-", "_"), PYTHON_CONSTANTS[value]
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value


def _count(text: str) -> int:
    """An integer, also written as a float that is one (1e6, as SB3's total_timesteps often is)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _hidden(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected layer sizes like 64,64, got {text!r}") from None


def _agents_help() -> str:
    names = [f"{name}: {cls.summary}" for name, cls in AGENTS.items()]
    return (f"algorithm (default {DEFAULT_AGENT}): " + "; ".join(names) +
            ". `workbench agents` lists each one's settings and defaults")


def _agents_where(attribute) -> str:
    """The agents for which `attribute(cls)` holds, as words."""
    return ", ".join(name for name, cls in AGENTS.items() if attribute(cls)) or "none"


def add_parser(subparsers):
    p = subparsers.add_parser(
        "train", help="train an RL agent with one learner and N actor processes",
        description="Train an agent on a Gymnasium environment: actor processes act with the "
                    "latest weights and send their rollouts' gradients (or, with --gradients-on "
                    "learner, the rollouts); the learner updates and publishes. Writes one run folder "
                    "(config.json, TensorBoard events, checkpoints/, summary.txt). Ctrl-C or "
                    "SIGTERM stops after the current update with a checkpoint; --resume RUN "
                    "continues it.",
        epilog="examples:\n"
               "  workbench train --env CartPole-v1 --agent a3c --actors 2 --steps 30000\n"
               "  workbench train --env CartPole-v1 --agent nstep-q --actors 4\n"
               "  workbench train --env myenvs:Corridor-v0        # your env, registered by myenvs.py\n"
               "  workbench train --env CartPole-v1 --agent dqn --actors 2 --set apex=true\n"
               "  workbench train --env Pendulum-v1 --agent ppo --steps 300000\n"
               "  workbench train --env ALE/Breakout-v5 --agent a3c --actors 2 --eval-every 100000\n"
               "  workbench train --env Pendulum-v1 --agent a3c --steps 1000000   # Gaussian policy\n"
               "  workbench train --env ALE/Breakout-v5 --actors 15            # gradients on the actors\n"
               "  workbench train --env CartPole-v1 --gradients-on learner     # a central learner\n"
               "  workbench train --env ALE/Breakout-v5 --agent impala --actors 8 --max-in-flight 2\n"
               "  workbench train --env ALE/Pong-v5 --actors 15 --device gpu   # a central learner on the GPU\n"
               "  workbench train --env CartPole-v1 --actors 8 --backend ray --address auto\n"
               "  workbench train --resume runs/NAME --steps 200000      # continue a run, further\n"
               "  tensorboard --logdir runs",
        formatter_class=HelpFormatter)
    # Every default is None here, so that only flags actually given override the config file.
    run = p.add_argument_group("run")
    run.add_argument("--env", help="Gymnasium environment id (default CartPole-v1); your own env: "
                                    "MODULE:ID (the module registers ID when imported, as Gymnasium's "
                                    "docs show) or MODULE:FUNCTION (a function that makes the env); "
                                    "the module is found in this folder or among installed packages")
    run.add_argument("--agent", type=str.lower, choices=list(AGENTS), metavar="AGENT", help=_agents_help())
    run.add_argument("--actors", type=int, metavar="N",
                     help="actor processes (default 2; with image observations (Atari) one per core "
                          "but the learner's, at least 2)")
    run.add_argument("--envs-per-actor", type=int, metavar="N",
                     help="environments each actor steps, batched in one forward pass (default: the "
                          "agent's for the env, see `workbench agents`; 1 for agents that learn from "
                          "whole episodes)")
    run.add_argument("--steps", type=_count, metavar="N",
                     help="env steps to train for, all actors together (default 100000). The "
                          "learner counts whole updates, each of whole rollouts (envs-per-actor x "
                          "t-max steps from each actor whose rollout arrived), so a run ends at the "
                          "first update that reaches N, a little past it")
    run.add_argument("--seed", type=int, help="seed for weights, envs and sampling (default 0)")
    run.add_argument("--env-option", type=key_value, action="append", metavar="KEY=VALUE",
                     default=None, help="keyword for gymnasium.make, e.g. max_episode_steps=200 "
                                        "(repeatable)")
    run.add_argument("--backend", choices=("processes", "inline", "ray"),
                     help="processes: actor processes (default); inline: actors stepped in the "
                          "learner's process, reproducible, for debugging; ray: Ray actors on this "
                          "machine or a cluster (pip install -e \".[cluster]\")")
    run.add_argument("--gradients-on", choices=("learner", "actors"),
                     help="actors: each actor computes its rollout's gradient with the weights it "
                          "acted with and the learner only clips and steps with each (the A3C paper's "
                          "way; measured faster on 2 cores and projected faster on more: README, "
                          "Scaling out). learner: actors send rollouts and the learner computes "
                          "every gradient (IMPALA's central learner). Default: the agent's, "
                          "the learner for " + _agents_where(lambda cls: cls.gradients_on[0] == "learner")
                          + " and with --device gpu; only the learner for "
                          + _agents_where(lambda cls: "actors" not in cls.gradients_on))
    run.add_argument("--device", choices=("cpu", "gpu"),
                     help="where the learner's network and optimizer compute (default cpu); gpu "
                          "needs CuPy and an NVIDIA GPU (pip install -e \".[gpu]\"). Actors act on "
                          "the CPU either way; each publish is one device-to-host copy")
    run.add_argument("--address", metavar="auto|HOST:PORT",
                     help="with --backend ray: the Ray cluster to join (auto: the one `ray start` "
                          "runs on this machine); default: start Ray on this machine for the run")
    hyper = p.add_argument_group(
        "agent hyperparameters", "Defaults: the agent's published values, with presets for Atari and "
                                 "Box actions; `workbench agents` lists them all, with their ranges.")
    hyper.add_argument("--lr", type=float, help="learning rate")
    hyper.add_argument("--gamma", type=float, help="discount factor")
    hyper.add_argument("--t-max", type=int, metavar="N", help="rollout length between updates")
    hyper.add_argument("--entropy-beta", type=float, metavar="BETA",
                       help="entropy bonus (" + _agents_where(lambda cls: "entropy_beta" in cls.Config.__dataclass_fields__) + ")")
    hyper.add_argument("--target-update", type=int, metavar="UPDATES",
                       help="updates (dqn: gradient steps) between target-network refreshes ("
                            + _agents_where(lambda cls: "target_update_interval" in cls.Config.__dataclass_fields__) + ")")
    hyper.add_argument("--network", choices=["auto", *TRUNKS],
                       help="trunk: small (Mnih 2016 conv net) or nature (Mnih 2015 DQN conv net) "
                            "for images, mlp (tanh) or relu-mlp for vectors (auto: small for images, "
                            "mlp otherwise)")
    hyper.add_argument("--hidden", type=_hidden, metavar="SIZES",
                       help="the mlp trunk's hidden layer sizes, e.g. 64,64")
    hyper.add_argument("--set", type=key_value, action="append", metavar="KEY=VALUE", default=None,
                       dest="agent_set", help="any other agent hyperparameter, e.g. "
                                              "rmsprop_eps=0.01 (repeatable)")
    files = p.add_argument_group("files")
    files.add_argument("--config", type=Path, metavar="FILE",
                       help="JSON settings for a new run (a run's config.json works); flags "
                            "override it")
    files.add_argument("--resume", type=Path, metavar="RUN",
                       help="continue run folder RUN (or RUN/config.json) from its latest "
                            "checkpoint: step count, optimizer and schedules; its config.json "
                            "supplies every setting not given again (e.g. --steps 200000 trains "
                            "further)")
    files.add_argument("--logdir", metavar="DIR", help="where run folders go (default runs)")
    files.add_argument("--name", help="run folder name (default <env>-<agent>-<YYYYmmdd-HHMMSS>)")
    files.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                       help="env steps between periodic checkpoints (default a tenth of the run)")
    files.add_argument("--keep-checkpoints", type=int, metavar="N",
                       help="periodic checkpoints to keep, the newest (default 5; 0: all); "
                            "checkpoints/latest.npz is always kept")
    logging = p.add_argument_group("logging and supervision")
    logging.add_argument("--log-every", type=float, metavar="SECONDS",
                         help="seconds between progress lines (default 1)")
    logging.add_argument("--histogram-every", type=int, metavar="UPDATES",
                         help="updates between weight/bias histograms in TensorBoard, e.g. 500 "
                              "(default: none, so that TensorBoard opens on the curves)")
    logging.add_argument("--actor-timeout", type=float, metavar="SECONDS",
                         help="an actor silent this long is killed and replaced (default 60)")
    logging.add_argument("--max-in-flight", type=int, metavar="N",
                         help="rollouts an actor may send ahead of the learner (default 1: the least "
                              "policy lag)")
    logging.add_argument("--check", action="store_true",
                         help="engine check mode in the learner: stop at the first NaN/Inf and name "
                              "the op and layer, or the parameter, where it appeared (slower)")
    evaluation = p.add_argument_group("evaluation")
    evaluation.add_argument("--eval-every", type=int, metavar="STEPS",
                            help="env steps between evaluations: a low-priority process plays "
                                 "--eval-episodes whole episodes with the current weights and logs "
                                 "eval/episodic_return; a point passed while the last evaluation "
                                 "still plays is skipped, not queued (default 0: none)")
    evaluation.add_argument("--eval-episodes", type=int, metavar="N",
                            help="episodes per evaluation (default 3)")
    return p


def _settings(args) -> tuple[dict, RunDir | None]:
    """(TrainConfig fields, the run folder to resume) from the config file (or the resumed run's)
    and the flags."""
    from nets.settings import typed
    from workbench.rl import resumed_run
    from workbench.runs import read_json

    resume = None
    if args.resume:
        if args.config or args.name:
            raise ValueError(f"--resume {args.resume} continues that run with its own config.json: "
                             f"leave out {'--config' if args.config else '--name'}")
        resume, values = resumed_run(args.resume, args.agent)
    else:
        values = read_json(args.config) if args.config else {}
    # the flags merge into these two: they must be JSON objects before TrainConfig checks the rest
    agent_config = dict(typed("agent-config", values.get("agent_config", {}), dict))
    env_options = dict(typed("env-options", values.get("env_options", {}), dict))
    if args.agent is not None and args.agent != values.get("agent", args.agent):
        agent_config = {}  # a --config file's hyperparameters of another agent do not carry over
    for flag in RUN_FLAGS:
        if getattr(args, flag) is not None:
            values[flag] = getattr(args, flag)
    agent = values.get("agent", DEFAULT_AGENT)
    for flag, field_name in AGENT_FLAGS.items():
        if getattr(args, flag) is not None:
            if agent in AGENTS and field_name not in AGENTS[agent].Config.__dataclass_fields__:
                raise ValueError(f"--{flag.replace('_', '-')} does not apply to {agent}, which has no "
                                 f"{field_name} setting (workbench agents {agent} lists them)")
            agent_config[field_name] = getattr(args, flag)
    for key, value in args.agent_set or []:
        if key in RUN_FLAGS:  # --set is for the agent's settings; the run's each have a flag
            raise ValueError(f"--set {key}: {key} is a run setting, not {agent}'s: give it as "
                             f"--{key.replace('_', '-')} {value if isinstance(value, str) else json.dumps(value)}")
    agent_config.update(dict(args.agent_set or []))
    env_options.update(dict(args.env_option or []))
    values["agent_config"], values["env_options"] = agent_config, env_options
    return values, resume


def run(args) -> int:
    try:
        values, resume = _settings(args)
    except ValueError as error:
        return failed("train", error)
    import nets
    from actors import ActorFailure
    from workbench.rl import RunFailed, TrainConfig, train
    from workbench.runs import stop_signals, undone_if_failed

    try:
        config = TrainConfig.from_dict(values)
        config.validate()
    except ValueError as error:
        return failed("train", error)
    nets.threads.limit(config.learner_threads)
    nets.set_check_mode(args.check)

    try:
        with stop_signals() as received, undone_if_failed():
            result = train(config, name=args.name, resume=resume,
                           should_stop=lambda progress: bool(received),
                           console=lambda line: print(line, flush=True))
    # ActorFailure here: the Ray cluster is unreachable; OSError: e.g. no room for config.json
    except (RunFailed, ActorFailure, OSError) as error:
        return failed("train", error, 1)
    except ValueError as error:  # found while setting up: env options, the checkpoint to resume...
        return failed("train", error)
    step = result.progress.step
    if result.outcome == "stopped":  # a requested stop is no failure: the checkpoint resumes it
        print(f"stopped by {received[0]} at step {step:,}; checkpoint saved. "
              f"Continue with: workbench train --resume {result.run.path}", flush=True)
    elif result.outcome == "finished":
        past = (f" ({step - config.steps:,} past --steps {config.steps:,}: the learner counts whole "
                f"updates of whole rollouts)" if step > config.steps else "")
        print(f"done: {step:,} steps{past}; summary in {result.run.path / 'summary.txt'}", flush=True)
    for warning in result.warnings:
        print(f"warning: {warning}", flush=True)
    return 0
