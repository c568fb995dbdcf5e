"""Atari throughput: a whole training run against the raw emulator, on the same cores, in the
same run, and where the time goes.

    python benchmarks/rl.py --env ALE/Breakout-v5          # or run this file directly
    python benchmarks/rl_atari.py --env ALE/Breakout-v5 --seconds 30 --json out.json

(a) raw: `gym.make(env_id)` (ALE v5: 4 frames per step inside the emulator, sticky actions)
    stepped with random actions in one process per actor; emulator frames/s.
(b) whole system: `workbench train` (A3C, 2 actor processes x E envs + the learner), frames/s
    learned from after a warm-up (4 emulator frames per agent step).
    (a) and (b) alternate, so that other people's load falls on both alike.
(c) breakdown: CPU seconds per agent step of each stage, timed alone in this process with one
    thread: the emulator (raw v5 step), the preprocessing on top of it (Gymnasium's
    AtariPreprocessing with its per-frame steps, fire/life wrappers, stacking, statistics), the
    actors' batched forward pass, the learner's update (batch of actors x E x t_max steps), and
    the queue (pickling a rollout and unpickling it). On the same cores the whole system can at
    most reach emulator / (sum of the stages) of the raw frame rate.
"""
from __future__ import annotations

import os

import argparse
import json
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import nets
from envs import make_env
from harness import random_steps, training_steps_per_second
from workbench.rl import TrainConfig

FRAMES_PER_STEP = 4


def raw_steps(env_id: str, seconds: float, seed: int) -> int:
    """Steps of the unwrapped-by-us v5 env (emulator frame skip 4) with random actions."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make(env_id, disable_env_checker=True)
    env.reset(seed=seed)
    return random_steps(env, seconds, seed, chunk=64)


def raw_frames_per_second(env_id: str, processes: int, seconds: float) -> float:
    import multiprocess as mp

    with mp.get_context("forkserver").Pool(processes) as pool:
        counts = pool.starmap(raw_steps, [(env_id, seconds, seed) for seed in range(processes)])
    return FRAMES_PER_STEP * sum(counts) / seconds


def system_frames_per_second(env_id: str, actors: int, envs_per_actor: int, seconds: float,
                             logdir: str, warmup: float) -> float:
    config = TrainConfig(env=env_id, agent="a3c", actors=actors, envs_per_actor=envs_per_actor,
                         steps=10**9, logdir=logdir, checkpoint_every=10**9, histogram_every=10**9)
    return FRAMES_PER_STEP * training_steps_per_second(config, seconds, warmup)


def cpu_per_call(fn, calls: int) -> float:
    fn()  # warm (JIT, caches)
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def breakdown(env_id: str, actors: int, envs_per_actor: int) -> dict[str, float]:
    """CPU milliseconds per agent step of each stage (see the module docstring)."""
    import gymnasium as gym

    from actors.collector import Collector
    from agents import join, make_agent, make_config
    from agents.pixels import atari_defaults

    rng = np.random.default_rng(0)
    raw = gym.make(env_id, disable_env_checker=True)
    raw.reset(seed=0)
    env = make_env(env_id, seed=0)
    env.reset()

    def step(e):
        def run():
            _, _, terminated, truncated, _ = e.step(int(rng.integers(4)))
            if terminated or truncated:
                e.reset()
        return run

    emulator = cpu_per_call(step(raw), 600)
    preprocessed = cpu_per_call(step(env), 600)
    agent = make_agent("a3c", env.observation_space, env.action_space,
                       make_config("a3c", atari_defaults("a3c")))
    policy = agent.policy(0, rng)
    obs = np.stack([env.reset()[0]] * envs_per_actor)
    forward = cpu_per_call(lambda: policy.act(obs, 0), 40) / envs_per_actor
    collector = Collector([make_env(env_id, seed=s) for s in range(envs_per_actor)], policy)
    rollouts = [collector.collect(agent.rollout_length, 0) for _ in range(actors)]
    batch = join(rollouts)
    update = cpu_per_call(lambda: agent.update(batch, 0.0), 10) / batch.steps
    queue = cpu_per_call(lambda: pickle.loads(pickle.dumps(rollouts[0], protocol=pickle.HIGHEST_PROTOCOL)),
                         50) / rollouts[0].steps
    return {"emulator": 1e3 * emulator, "preprocessing": 1e3 * (preprocessed - emulator),
            "actor forward": 1e3 * forward, "learner update": 1e3 * update, "queue": 1e3 * queue}


def main(argv=None) -> int:
    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Breakout-v5", help="an ALE env id (default ALE/Breakout-v5)")
    parser.add_argument("--actors", type=int, default=2, help="actor processes (default 2)")
    parser.add_argument("--envs-per-actor", type=int, default=4, help="envs per actor (default 4)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per sample (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="system samples, each between two raw ones (default 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logdir = tempfile.mkdtemp(prefix="rl-atari-benchmark-")
    cores = os.cpu_count()
    print(f"{args.env} on {cores} cores: A3C, {args.actors} actors x {args.envs_per_actor} envs; "
          f"run folders in {logdir}; load average {os.getloadavg()[0]:.1f}", flush=True)
    raw, system = [raw_frames_per_second(args.env, args.actors, args.seconds)], []
    for _ in range(args.rounds):
        system.append(system_frames_per_second(args.env, args.actors, args.envs_per_actor,
                                               args.seconds, logdir, warmup=10.0))
        raw.append(raw_frames_per_second(args.env, args.actors, args.seconds))
    raw_mean, system_mean = statistics.mean(raw), statistics.mean(system)
    print(f"(a) raw emulator, random actions, {args.actors} processes: {raw_mean:,.0f} frames/s "
          f"(samples {', '.join(f'{r:,.0f}' for r in raw)})", flush=True)
    print(f"(b) whole system: {system_mean:,.0f} frames/s = {100 * system_mean / raw_mean:.0f}% of raw "
          f"(samples {', '.join(f'{s:,.0f}' for s in system)}); load average {os.getloadavg()[0]:.1f}",
          flush=True)
    parts = breakdown(args.env, args.actors, args.envs_per_actor)
    total = sum(parts.values())
    print("(c) CPU ms per agent step (4 frames), each stage alone, one thread:", flush=True)
    for name, ms in parts.items():
        print(f"    {name:15s} {ms:6.3f} ms  {100 * ms / total:4.0f}%", flush=True)
    # the raw rate spends all its CPU in the emulator; the system spends `total` per step
    print(f"    total           {total:6.3f} ms: on the same cores the system reaches at most "
          f"{100 * parts['emulator'] / total:.0f}% of the raw frame rate", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"env": args.env, "raw_frames_per_s": raw, "system_frames_per_s": system,
                                         "breakdown_ms_per_step": parts, "load_average": os.getloadavg()},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
