"""Atari throughput in one run: the whole training system, the emulator alone, the ceiling of the
system's components on these cores, and stable-baselines3's A2C with the same network.

    python benchmarks/rl.py --env ALE/Breakout-v5          # or run this file directly
    python benchmarks/rl_atari.py --network nature --seconds 30 --json out.json

(a) raw: `gym.make(env_id)` (ALE v5: 4 frames per step inside the emulator, sticky actions)
    stepped with random actions in one process per core; emulator frames/s.
(b) whole system: `workbench train --env ENV --agent a3c --network NET` with the CLI's defaults
    for everything else (or the --actors, --envs-per-actor, --max-in-flight, --gradients-on
    given), frames/s learned from after a warm-up (4 emulator frames per agent step).
    (a) and (b) alternate, so that other people's load falls on both alike.
(c) components: CPU milliseconds per agent step of each stage, timed alone in this process with
    one thread: the emulator (raw v5 step), the preprocessing on top of it (Gymnasium's
    AtariPreprocessing with its per-frame steps, fire/life wrappers, stacking, statistics), the
    actors' batched forward pass while acting, the collector's own work (a whole rollout's
    collection less the env steps and forward passes in it), the rollout's loss and backward pass
    (in the actors with gradients on the actors, in the learner otherwise), the learner's step
    (clip, RMSProp out of place, the finiteness check), and the pipe (pickling what an actor sends
    and unpickling it). Their ceiling on these cores is cores / (their sum): the agent steps/s of a
    system whose every core did nothing but these stages. (b) is given as a share of it.
(d) peer: stable-baselines3's A2C with the same network (`--network nature`: its NatureCNN) at
    RL Zoo's Atari settings (AtariWrapper: the same preprocessing; 16 envs, frame stack 4,
    ent_coef 0.01, vf_coef 0.25, RMSpropTFLike eps 1e-5), frames/s after the same warm-up, at its
    best on this machine: its envs in one process (DummyVecEnv) and in subprocesses
    (SubprocVecEnv), PyTorch on 1 thread and on a thread per core, each measured and the fastest
    reported beside the others. `--peer-device cuda` runs its network on the GPU (the GPU check's
    peer), `--peer-only` measures the peer alone. Skipped (with a line) where it is not installed.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
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
from harness import (UsageError, random_steps, sb3_settings, setting_name, torch_module,
                     training_steps_per_second, vec_env_options)
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


def system_config(env_id: str, network: str, logdir: str, **overrides) -> TrainConfig:
    """What `workbench train --env ENV --network NET` runs, with the `overrides` given (None:
    the default); no checkpoints or histograms inside the sample."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return TrainConfig(env=env_id, agent="a3c", agent_config={"trunk": network}, steps=10**9,
                       logdir=logdir, checkpoint_every=10**9, histogram_every=10**9, **given)


def system_frames_per_second(config: TrainConfig, seconds: float, warmup: float) -> float:
    return FRAMES_PER_STEP * training_steps_per_second(config, seconds, warmup)


def alternating_samples(config: TrainConfig, seconds: float, warmup: float, rounds: int):
    """(raw, system) frames/s samples: the raw emulator on every core, then `rounds` times the
    system followed by the raw emulator again, so that other people's load falls on both alike."""
    cores = os.cpu_count()
    raw, system = [raw_frames_per_second(config.env, cores, seconds)], []
    for _ in range(rounds):
        system.append(system_frames_per_second(config, seconds, warmup))
        raw.append(raw_frames_per_second(config.env, cores, seconds))
    return raw, system


def cpu_per_call(fn, calls: int) -> float:
    fn()  # warm (JIT, caches)
    start = time.process_time()
    for _ in range(calls):
        fn()
    return (time.process_time() - start) / calls


def components(config: TrainConfig) -> dict[str, float]:
    """CPU milliseconds per agent step of each stage of `config`'s system (see the module
    docstring), each timed alone with this process's one thread."""
    import ale_py
    import gymnasium as gym

    from actors.collector import Collector
    from agents import Gradient, make_agent
    from nets import optim

    gym.register_envs(ale_py)
    rng = np.random.default_rng(0)
    env_id, envs = config.env, config.resolved_envs_per_actor
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
    agent = make_agent("a3c", env.observation_space, env.action_space, config.agent_settings())
    policy = agent.policy(0, rng)
    obs = np.stack([env.reset()[0]] * envs)
    forward = cpu_per_call(lambda: policy.act(obs, 0), 40) / envs
    collector = Collector([make_env(env_id, seed=s) for s in range(envs)], policy)
    rollout = collector.collect(agent.rollout_length, 0)
    acting = cpu_per_call(lambda: collector.collect(agent.rollout_length, 0), 20) / rollout.steps
    gradients = cpu_per_call(lambda: agent.gradients(rollout), 10) / rollout.steps
    flat = agent.network.flat()
    free = [np.empty_like(flat.data), np.empty_like(flat.data)]

    def learner_step():  # as Learner.update: out of place into a free slot, then the weights checked
        into = free[0] if flat.data is not free[0] else free[1]  # never the weights' own vector:
        agent.step(0.0, into)                                   # that aliasing runs 7x slower
        optim.sum_of_squares(into)
    agent.gradients(rollout)
    learner = cpu_per_call(learner_step, 20) / rollout.steps
    sent = Gradient.of(rollout, {}, None) if config.resolved_gradients_on == "actors" else rollout
    pipe = cpu_per_call(lambda: pickle.loads(pickle.dumps(sent, protocol=pickle.HIGHEST_PROTOCOL)),
                        50) / rollout.steps
    return {"emulator": 1e3 * emulator, "preprocessing": 1e3 * (preprocessed - emulator),
            "actor forward": 1e3 * forward, "collector": 1e3 * (acting - preprocessed - forward),
            "loss + backward": 1e3 * gradients, "learner step": 1e3 * learner, "pipe": 1e3 * pipe}


PEER_ENVS = 16  # RL Zoo's a2c.yml, atari


def sb3_atari_a2c(env_id: str, device: str, vec_env: str, threads: int):
    """stable-baselines3 A2C with RL Zoo's Atari settings (module docstring (d)), its envs in
    `vec_env` ("dummy": one process, "subproc": a process each), PyTorch on `threads`."""
    import ale_py
    import gymnasium as gym
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_atari_env
    from stable_baselines3.common.sb2_compat.rmsprop_tf_like import RMSpropTFLike
    from stable_baselines3.common.vec_env import VecFrameStack

    gym.register_envs(ale_py)  # before any env process forks, which inherits the ALE/... ids
    torch.set_num_threads(threads)
    # AtariWrapper skips 4 frames itself (max over the last two), so the emulator skips none
    env = VecFrameStack(make_atari_env(env_id, n_envs=PEER_ENVS, seed=0, env_kwargs={"frameskip": 1},
                                       **vec_env_options(vec_env)), n_stack=4)
    return A2C("CnnPolicy", env, ent_coef=0.01, vf_coef=0.25, seed=0, device=device,
               policy_kwargs=dict(optimizer_class=RMSpropTFLike, optimizer_kwargs=dict(eps=1e-5)))


def sb3_at_its_best(env_id: str, seconds: float, warmup: float, device: str) -> dict[str, float]:
    """frames/s of every peer setting (harness.sb3_settings), keyed "16 envs in subprocesses,
    torch 1 thread" and so on."""
    rates = sb3_settings(sb3_atari_a2c, (env_id, device), seconds, warmup, console=lambda line: None)
    results = {f"{PEER_ENVS} {setting_name(*key)}": FRAMES_PER_STEP * rate for key, rate in rates.items()}
    for key, frames in results.items():
        print(f"    peer, {key}: {frames:,.0f} frames/s", flush=True)
    return results


def main(argv=None) -> int:
    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Breakout-v5", help="an ALE env id (default ALE/Breakout-v5)")
    parser.add_argument("--network", default="nature", choices=("nature", "small"),
                        help="the conv net (default nature: the peer's NatureCNN)")
    parser.add_argument("--actors", type=int, help="actor processes (default: the CLI's)")
    parser.add_argument("--envs-per-actor", type=int, help="envs per actor (default: the CLI's)")
    parser.add_argument("--max-in-flight", type=int, help="rollouts in flight per actor (default: the CLI's)")
    parser.add_argument("--gradients-on", choices=("actors", "learner"), help="default: the CLI's")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per sample (default 20)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before a sample (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="system samples, each between two raw ones (default 2)")
    parser.add_argument("--no-peer", action="store_true", help="leave out stable-baselines3")
    parser.add_argument("--peer-only", action="store_true", help="measure stable-baselines3 alone")
    parser.add_argument("--peer-device", choices=("cpu", "cuda"), default="cpu",
                        help="where the peer's network runs (default cpu)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.peer_device == "cuda" and not args.no_peer:  # SB3 would quietly run on the CPU instead
        torch = torch_module()
        if torch is None or not torch.cuda.is_available():
            raise UsageError("rl_atari.py: --peer-device cuda needs PyTorch with CUDA and a GPU, and "
                             "none was found here; use --peer-device cpu")
    logdir = tempfile.mkdtemp(prefix="rl-atari-benchmark-")
    cores = os.cpu_count()
    config = system_config(args.env, args.network, logdir, actors=args.actors, envs_per_actor=args.envs_per_actor,
                           max_in_flight=args.max_in_flight, gradients_on=args.gradients_on)
    print(f"{args.env} on {cores} cores: a3c, {args.network} net, {config.resolved_actors} actors x "
          f"{config.resolved_envs_per_actor} envs, gradients on the {config.resolved_gradients_on}, "
          f"{config.max_in_flight} in flight; run folders in {logdir}; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    results = {"env": args.env, "config": config.to_dict()}
    system_mean = None
    if not args.peer_only:
        raw, system = alternating_samples(config, args.seconds, args.warmup, args.rounds)
        raw_mean, system_mean = statistics.mean(raw), statistics.mean(system)
        print(f"(a) raw emulator, random actions, {cores} processes: {raw_mean:,.0f} frames/s "
              f"(samples {', '.join(f'{r:,.0f}' for r in raw)})", flush=True)
        print(f"(b) whole system: {system_mean:,.0f} frames/s = {100 * system_mean / raw_mean:.0f}% of raw "
              f"(samples {', '.join(f'{s:,.0f}' for s in system)}); load average {os.getloadavg()[0]:.1f}",
              flush=True)
        parts = components(config)
        total = sum(parts.values())
        ceiling = FRAMES_PER_STEP * cores * 1e3 / total
        print("(c) CPU ms per agent step (4 frames), each stage alone, one thread:", flush=True)
        for name, ms in parts.items():
            print(f"    {name:15s} {ms:6.3f} ms  {100 * ms / total:4.0f}%", flush=True)
        print(f"    total           {total:6.3f} ms: ceiling on {cores} cores {ceiling:,.0f} frames/s; "
              f"the system reached {100 * system_mean / ceiling:.0f}% of it", flush=True)
        results.update(raw_frames_per_s=raw, system_frames_per_s=system, components_ms_per_step=parts,
                       ceiling_frames_per_s=ceiling)
    if not args.no_peer:
        if importlib.util.find_spec("stable_baselines3") is None:
            print("(d) stable-baselines3 skipped: not installed (pip install torch stable-baselines3)", flush=True)
        else:
            print(f"(d) stable-baselines3 A2C, NatureCNN, RL Zoo's Atari settings, network on the "
                  f"{args.peer_device}:", flush=True)
            settings = sb3_at_its_best(args.env, args.seconds, args.warmup, args.peer_device)
            best = max(settings, key=settings.get)
            results["sb3_a2c_frames_per_s"] = settings
            ratio = "" if system_mean is None else f"; workbench {system_mean / settings[best]:.2f}x"
            nets_differ = "" if args.network == "nature" else f" (ours ran the {args.network} net)"
            print(f"    best: {best}, {settings[best]:,.0f} frames/s{ratio}{nets_differ}", flush=True)
    results["load_average_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
