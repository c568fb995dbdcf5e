"""Scaling: gradients on the learner against gradients on the actors, in one run on this machine.

    python -m benchmarks scaling [--quick | --full]
    python benchmarks/scaling.py --curve 1 2 4 8 15    # the measured curve on this machine

Each row is workbench with gradients computed by the actors (`--gradients-on actors`) against the
same with gradients computed by the learner (the default peer here), on the Mnih et al. 2016
net with Breakout frames and on the CartPole MLP:
- learner headroom: agent steps/s one learner absorbs when fed pre-made rollouts (it unpickles
  them, runs forward and backward, steps) or pre-made gradients (it sums, clips, steps) as fast
  as it takes them: its whole update (`Learner.update`) into the shared block of local
  processes, CPU time on one thread; one rollout or gradient per update, and eight (what
  arrives together once the learner is the bottleneck);
- actor CPU per step: collecting rollouts (env step and forward pass, pickling the rollout), and
  with gradients on the actors also backpropagating its loss;
- projected steps/s on C cores, X(C) = min(C / (A + L1), 1 / L8): actors (A, CPU per step) and
  the learner (L1, per step with one rollout or gradient per update) share the cores until the
  learner alone is saturated (1 / L8, its headroom with batches of eight). A projection from
  this machine's per-core costs: more cores bring other clocks and memory bandwidth;
- whole system, measured: env steps/s of A3C runs with 2 actor processes on CartPole and on
  Breakout (the Mnih net), and the time to solve CartPole (last-100 mean >= 475; seeds: 1,
  --full: 3). These decide `--gradients-on`'s default (docs/scaling.md).

--curve measures what the projection predicts, on a machine with the cores: env steps/s of A3C
with N actor processes in each mode, the learner on the CPU with the threads `workbench train`
gives it (the cores the actors leave).
"""
from __future__ import annotations

import importlib.util
import math
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import Measure  # noqa: E402

PEER = "gradients on learner"
CORES = (2, 4, 8, 16, 64)
NETS = {"cartpole mlp": "CartPole-v1", "atari mnih net": "ALE/Breakout-v5"}
SYSTEM_ROWS = ("cartpole steps/s, a3c 2 actors x 4 envs", "breakout steps/s, a3c 2 actors x 4 envs",
               "cartpole time to solve, a3c 2 actors")
MODES = {"quick": dict(repeats=5, sample=2.0, seeds=0),
         "default": dict(repeats=20, sample=5.0, seeds=1),
         "full": dict(repeats=50, sample=8.0, seeds=3)}


def _setup(env_id: str):
    """(learner agent, actor agent, the actor's collector): A3C as `workbench train` builds it,
    the actor acting with the learner's weights."""
    from actors.collector import Collector
    from agents import make_agent
    from envs import make_env
    from workbench.rl import TrainConfig

    config = TrainConfig(env=env_id, agent="a3c")
    settings = config.agent_settings()
    spaces = make_env(env_id)
    agent, actor = (make_agent("a3c", spaces.observation_space, spaces.action_space, settings, learner)
                    for learner in (True, False))
    actor.network.flat().data[...] = agent.network.flat().data
    envs = [make_env(env_id, seed=seed) for seed in range(config.resolved_envs_per_actor)]
    return agent, actor, Collector(envs, actor.policy(0, np.random.default_rng(0)))


def _experience(actor, collector, gradients_on_actors: bool):
    """One rollout as the learner receives it: pickled bytes (a Gradient with its vector apart:
    in the shared block)."""
    from agents import Gradient

    rollout = collector.collect(actor.rollout_length, 0)
    if not gradients_on_actors:
        return pickle.dumps(rollout, protocol=pickle.HIGHEST_PROTOCOL), None
    gradient = Gradient.of(rollout, actor.gradients(rollout), None)
    return pickle.dumps(gradient, protocol=pickle.HIGHEST_PROTOCOL), actor.network.flat().grad.copy()


def learner_cpu_per_step(env_id: str, gradients_on_actors: bool, per_update: int, repeats: int) -> float:
    """CPU seconds of Learner.update per agent step, fed `per_update` rollouts or gradients."""
    from actors import ActorSpec, Learner, LocalProcesses

    agent, actor, collector = _setup(env_id)
    arrived = [_experience(actor, collector, gradients_on_actors) for _ in range(per_update)]
    transport = LocalProcesses(ActorSpec(env_id, "a3c", agent.config, compute_gradients=gradients_on_actors),
                               per_update, len(agent.network.flat()))  # its shared block; no actor runs
    slots = [transport.state.gradient(index, 0) for index in range(per_update)] if gradients_on_actors else []
    learner = Learner(agent, transport, 10**12, console=lambda line: None)
    transport.publish(agent.network.flat().data, 0)
    times, steps = [], 0
    for _ in range(repeats + 2):  # two to warm up
        for slot, (_, vector) in zip(slots, arrived):  # what the actors wrote: the learner sums
            np.copyto(slot, vector)                     # into the first, so afresh each time
        start = time.process_time()
        items = [pickle.loads(message) for message, _ in arrived]
        for item, slot in zip(items, slots):  # as LocalProcesses.receive does
            item.grad = slot
        learner.update(items)
        times.append(time.process_time() - start)
        steps = sum(item.steps for item in items)
    transport.stop()
    return statistics.median(times[2:]) / steps


def actor_cpu_per_step(env_id: str, gradients_on_actors: bool, repeats: int) -> float:
    """CPU seconds per agent step of one actor: collect (and backpropagate) a rollout, pickle it."""
    _, actor, collector = _setup(env_id)
    times, steps = [], 0
    for _ in range(repeats + 1):
        start = time.process_time()
        message, _ = _experience(actor, collector, gradients_on_actors)
        times.append(time.process_time() - start)
        steps = pickle.loads(message).steps
    return statistics.median(times[1:]) / steps


def projected_steps_per_second(cores: int, actor: float, learner_1: float, learner_8: float) -> float:
    return min(cores / (actor + learner_1), 1 / learner_8)


class Costs:
    """CPU seconds per agent step, each measured the first time it is asked for."""

    def __init__(self, repeats: int):
        self.repeats, self.seconds = repeats, {}

    def __call__(self, env_id: str, on_actors: bool, what: str) -> float:
        """`what`: "actor", "learner_1" or "learner_8" (rollouts or gradients per update)."""
        key = (env_id, on_actors, what)
        if key not in self.seconds:
            if what == "actor":
                self.seconds[key] = actor_cpu_per_step(env_id, on_actors, self.repeats)
            else:
                batch = int(what.split("_")[1])
                self.seconds[key] = learner_cpu_per_step(env_id, on_actors, batch,
                                                         max(3, self.repeats // batch))
        return self.seconds[key]


def _rows(cost: Costs) -> list[tuple]:
    """(name, unit, better, figure(on_actors), note) for every row the costs give."""
    rows = []
    for label, env_id in NETS.items():
        def per_step(what, env_id=env_id):
            return lambda on_actors: cost(env_id, on_actors, what)
        for batch in (1, 8):
            learner = per_step(f"learner_{batch}")
            rows.append((f"learner headroom, {label}, {batch} per update", "steps/s", "higher",
                         lambda on, learner=learner: 1 / learner(on), ""))
        actor = per_step("actor")
        rows.append((f"actor cpu per step, {label}", "ms", "lower", lambda on, actor=actor: 1e3 * actor(on), ""))
        for cores in CORES:
            rows.append((f"projected steps/s, {label}, {cores} cores", "steps/s", "higher",
                         lambda on, n=cores, env_id=env_id: projected_steps_per_second(
                             n, *(cost(env_id, on, what) for what in ("actor", "learner_1", "learner_8"))),
                         "projection"))
    return rows


def _throughput(name: str, env_id: str, mode: dict, logdir: str, warmup: float) -> Measure:
    """Env steps/s of A3C with 2 actor processes in both modes, by turns, two runs each."""
    from harness import training_steps_per_second
    from workbench.rl import TrainConfig

    if env_id.startswith("ALE/") and importlib.util.find_spec("ale_py") is None:
        return Measure(name, "steps/s", None, None, PEER, "higher", note="ale-py not installed")
    rates: dict[str, list[float]] = {"actors": [], "learner": []}
    for _ in range(2):
        for where in rates:
            # 4 envs per actor, as the rows' names say (Atari's default is now 8)
            config = TrainConfig(env=env_id, agent="a3c", actors=2, envs_per_actor=4, steps=10**9,
                                 gradients_on=where, logdir=logdir, checkpoint_every=10**9,
                                 histogram_every=10**9)
            rates[where].append(training_steps_per_second(config, mode["sample"], warmup=warmup))
    return Measure(name, "steps/s", statistics.mean(rates["actors"]), statistics.mean(rates["learner"]),
                   PEER, "higher")


def _system(mode: dict, logdir: str) -> list[Measure]:
    """Whole-system runs with 2 actor processes, in both modes by turns."""
    from rl import own_solve

    throughput = [_throughput(SYSTEM_ROWS[0], "CartPole-v1", mode, logdir, warmup=2.0),
                  _throughput(SYSTEM_ROWS[1], "ALE/Breakout-v5", mode, logdir, warmup=10.0)]
    solve = Measure(SYSTEM_ROWS[2], "s", None, None, PEER)
    if not mode["seeds"]:
        solve.note = "runs without --quick"
        return [*throughput, solve]
    runs: dict[str, list[dict]] = {"actors": [], "learner": []}
    for seed in range(mode["seeds"]):
        for where in runs:
            runs[where].append(own_solve("a3c", seed, 120, logdir, 200_000, gradients_on=where))
    solve.workbench, solve.peer = (_median_time_to_solve(runs[where]) for where in ("actors", "learner"))
    solve.note = f"{mode['seeds']} seed(s), median; " + "; ".join(
        f"{where}: " + ", ".join(f"{r['seconds']} s" + ("" if r["solved"] else " unsolved") for r in done)
        for where, done in runs.items())
    return [*throughput, solve]


def _median_time_to_solve(runs: list[dict]) -> float | None:
    """The median over every seed, an unsolved one counting as never (None when most are)."""
    median = statistics.median([r["seconds"] if r["solved"] else math.inf for r in runs])
    return None if math.isinf(median) else median


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list[Measure]:
    """For `python -m benchmarks scaling`, on one thread (Numba and BLAS) as each actor has, and
    as `workbench train` gives the learner on 2 cores (a learner whose BLAS threads compete with
    its actors for the cores learns 5x slower on Breakout here). `smoke` (for tests) measures the
    first row only; --quick leaves out the time to solve."""
    import numba
    from threadpoolctl import threadpool_limits

    mode = MODES["quick" if quick else "full" if full else "default"]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    measures = []
    try:
        with threadpool_limits(1):
            for i, (name, unit, better, figure, note) in enumerate(_rows(Costs(mode["repeats"]))):
                measure = Measure(name, unit, None, None, PEER, better, note=note)
                if smoke and i > 0:
                    measure.note = "not run with --smoke"
                elif "atari" in name and importlib.util.find_spec("ale_py") is None:
                    measure.note = "ale-py not installed"
                else:
                    measure.workbench, measure.peer = figure(True), figure(False)
                measures.append(measure)
            if smoke:
                measures += [Measure(name, "s" if "time" in name else "steps/s", None, None, PEER,
                                     "lower" if "time" in name else "higher", note="not run with --smoke")
                             for name in SYSTEM_ROWS]
            else:
                measures += _system(mode, tempfile.mkdtemp(prefix="scaling-benchmark-"))
    finally:
        numba.set_num_threads(threads)
    return measures


def curve(actor_counts: list[int], sample: float = 8.0) -> str:
    """A markdown table of measured env steps/s for each actor count, both modes, both nets."""
    from harness import training_steps_per_second
    from nets import threads
    from workbench.rl import TrainConfig

    logdir = tempfile.mkdtemp(prefix="scaling-curve-")
    lines = ["| env steps/s, a3c | gradients on | " + " | ".join(f"{n} actors" for n in actor_counts) + " |",
             "|---|---|" + "---|" * len(actor_counts)]
    for label, env_id in NETS.items():
        warmup = 10.0 if env_id.startswith("ALE/") else 2.0
        for where in ("actors", "learner"):
            rates = []
            for actors in actor_counts:
                config = TrainConfig(env=env_id, agent="a3c", actors=actors, steps=10**9, gradients_on=where,
                                     logdir=logdir, checkpoint_every=10**9, histogram_every=10**9)
                threads.limit(config.learner_threads)  # as `workbench train` does
                rates.append(training_steps_per_second(config, sample, warmup=warmup))
                print(f"  {label}, gradients on {where}, {actors} actors: {rates[-1]:,.0f} env steps/s", flush=True)
            lines.append(f"| {label} | {where} | " + " | ".join(f"{rate:,.0f}" for rate in rates) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    import argparse

    import report

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--quick", action="store_true", help="fewer repeats, no time to solve")
    budget.add_argument("--full", action="store_true", help="more repeats, 3 seeds to solve")
    budget.add_argument("--curve", type=int, nargs="+", metavar="ACTORS",
                        help="instead: measure env steps/s with these actor counts in both modes")
    parser.add_argument("--sample", type=float, default=8.0, metavar="SECONDS",
                        help="with --curve: seconds measured per point, after the start-up (default 8)")
    args = parser.parse_args(argv)
    if args.curve:
        print(curve(args.curve, args.sample))
        return 0
    print(report.suite_table(run(args.quick, args.full)))
    print("ratio = gradients on actors / gradients on learner")
    return 0


if __name__ == "__main__":
    sys.exit(main())
