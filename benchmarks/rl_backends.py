"""The actor backend as a column: local processes vs Ray actors on this machine, in one run.

- Weight publish + pull of the A3C Atari net's 678k float32 parameters: the shared segment's
  copy in and copy out, against `ray.put` in the learner and `ray.get` + copy in a Ray actor on
  the same node.
- Whole-system env steps/s of an A3C CartPole run at 2, 4 and 8 actors on each backend, with the
  learner's updates/s and rollouts per update: once the learner is the bottleneck, more actors
  only make its batches bigger.
- The learner's bound: milliseconds of one update on one rollout and on eight joined, against
  one actor's milliseconds to collect a rollout.

    python benchmarks/rl_backends.py [--seconds 4] [--json FILE]   # or section (d) of rl.py

Other people's load on a shared machine changes every figure; the load average is printed.
"""
from __future__ import annotations

import os

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import nets
from rl import publish_and_pull_ms
from workbench.rl import TrainConfig, train

ACTOR_COUNTS = (2, 4, 8)
ATARI_PARAMS = 678_000
MIB = 2**20


def start_ray(max_actors: int):
    """One local Ray instance for every Ray measurement (RayActors joins it), kept small."""
    import ray

    ray.init(address="local", num_cpus=max(max_actors, os.cpu_count() or 1), object_store_memory=256 * MIB,
             include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def ray_publish_and_pull_ms(ray, n_params: int = ATARI_PARAMS, repeats: int = 50) -> tuple[float, float]:
    """Median ms of `ray.put` of the vector, and of `ray.get` + copy into the actor's own vector
    inside a Ray actor on this node (timed in the actor, so the call's round trip is left out)."""

    @ray.remote(num_cpus=1)
    class Puller:
        def __init__(self):
            self.local = np.empty(n_params, np.float32)

        def pull(self, refs):
            start = time.perf_counter()
            np.copyto(self.local, ray.get(refs[0]))
            return time.perf_counter() - start

    puller = Puller.remote()
    weights = np.random.default_rng(0).standard_normal(n_params).astype(np.float32)
    publish, pull = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ref = ray.put(weights)
        publish.append(time.perf_counter() - start)
        pull.append(ray.get(puller.pull.remote([ref])))
    ray.kill(puller)
    return 1e3 * statistics.median(publish), 1e3 * statistics.median(pull)


def system_run(backend: str, actors: int, seconds: float, logdir: str, envs_per_actor: int = 4,
               warmup: float = 3.0) -> dict:
    """Env steps/s, learner updates/s and rollouts per update of an A3C CartPole run, measured
    from `warmup` seconds after the actors started to `seconds` later."""
    marks = {}

    def stop(progress):
        now = time.monotonic()
        begin = marks.setdefault("begin", now)  # the learner asks first once the actors are up
        if "first" not in marks and now - begin >= warmup:
            marks["first"] = (now, progress.step, progress.updates)
        marks["last"] = (now, progress.step, progress.updates)
        return now - begin >= warmup + seconds

    config = TrainConfig(env="CartPole-v1", agent="a3c", actors=actors, steps=10**9,
                         envs_per_actor=envs_per_actor, backend=backend, logdir=logdir)
    train(config, should_stop=stop, console=lambda line: None)
    (t0, s0, u0), (t1, s1, u1) = marks["first"], marks["last"]
    rollout_steps = config.agent_settings().t_max * envs_per_actor
    updates = max(u1 - u0, 1)
    return {"steps_per_s": round((s1 - s0) / (t1 - t0)), "updates_per_s": round(updates / (t1 - t0), 1),
            "rollouts_per_update": round((s1 - s0) / rollout_steps / updates, 2)}


def learner_bound(envs_per_actor: int = 4, repeats: int = 50) -> dict:
    """Median ms of one A3C CartPole update on 1 and on 8 joined rollouts, and of one actor
    collecting a rollout: collect / update(1) is how many actors one learner can keep up with."""
    from actors import ActorSpec, InlineActors
    from agents import join, make_agent, make_config
    from envs import make_env

    config = make_config("a3c")
    env = make_env("CartPole-v1")
    agent = make_agent("a3c", env.observation_space, env.action_space, config)
    actors = InlineActors(ActorSpec("CartPole-v1", "a3c", config, envs_per_actor=envs_per_actor), 1)
    actors.start()
    actors.publish(agent.network.flat().data, 0)
    collect, rollouts = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        rollouts.extend(actors.receive(0))
        collect.append(time.perf_counter() - start)
    actors.stop()
    update = {}
    for batch in (1, 8):
        times = []
        for i in range(0, len(rollouts) - batch + 1, batch):
            start = time.perf_counter()
            agent.update(join(rollouts[i:i + batch]), 0.0)
            times.append(time.perf_counter() - start)
        update[batch] = 1e3 * statistics.median(times)
    return {"collect_ms": round(1e3 * statistics.median(collect), 3),
            "update_1_rollout_ms": round(update[1], 3), "update_8_rollouts_ms": round(update[8], 3)}


def measure(seconds: float, logdir: str, print_line=print) -> dict:
    """Every figure above; Ray's are left out (with a note) when ray is not installed."""
    results: dict = {"load_average_before": os.getloadavg()}
    publish, pull = publish_and_pull_ms(ATARI_PARAMS)
    results["weights_ms"] = {"processes": {"publish": round(publish, 3), "pull": round(pull, 3)}}
    print_line(f"(d) backends; 678k parameters: processes publish {publish:.3f} ms + pull {pull:.3f} ms "
               f"= {publish + pull:.3f} ms")
    try:
        ray = start_ray(max(ACTOR_COUNTS))
    except ImportError:
        ray = None
        print_line('    ray: not installed (pip install -e ".[cluster]"): local processes only')
    backends = ("processes", "ray") if ray else ("processes",)
    try:
        if ray:
            publish, pull = ray_publish_and_pull_ms(ray)
            results["weights_ms"]["ray"] = {"publish": round(publish, 3), "pull": round(pull, 3)}
            print_line(f"    678k parameters: ray put {publish:.3f} ms + get and copy in an actor "
                       f"{pull:.3f} ms = {publish + pull:.3f} ms")
        bound = learner_bound()
        results["learner_bound"] = bound
        print_line(f"    a3c cartpole, 4 envs per actor: one actor collects a rollout in "
                   f"{bound['collect_ms']:.2f} ms; the learner updates on 1 rollout in "
                   f"{bound['update_1_rollout_ms']:.2f} ms, on 8 joined in {bound['update_8_rollouts_ms']:.2f} ms")
        results["system"] = {}
        print_line("    backend    actors  steps/s  updates/s  rollouts/update")
        for actors in ACTOR_COUNTS:
            for backend in backends:  # interleaved, so the load drifts over both alike
                row = system_run(backend, actors, seconds, logdir)
                results["system"][f"{backend}_{actors}"] = row
                print_line(f"    {backend:<10} {actors:>6} {row['steps_per_s']:>8,} {row['updates_per_s']:>10} "
                           f"{row['rollouts_per_update']:>16}")
    finally:
        if ray:
            ray.shutdown()
    results["load_average_after"] = os.getloadavg()
    print_line(f"    load average {results['load_average_before'][0]:.1f} before, "
               f"{results['load_average_after'][0]:.1f} after")
    return results


def main() -> int:
    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="measured seconds per run (default 4)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results = measure(args.seconds, tempfile.mkdtemp(prefix="rl-backends-"),
                      lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
