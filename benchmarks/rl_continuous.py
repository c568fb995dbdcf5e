"""Continuous control: wall-clock time to reach a mean return of -250 over the last 20 episodes
on Pendulum-v1, workbench's A3C, PPO and SAC (2 actor processes, their defaults) against
stable-baselines3's A2C, PPO and SAC with their RL Zoo Pendulum-v1 settings, seed by seed in the
same run on this machine, each run in a fresh process of its own. Each peer runs at its fastest
setting here (its envs in one process or in subprocesses, PyTorch on 1 thread or a thread per
core: each measured for 8 s first).

stable-baselines3 and PyTorch are benchmark-only peers (`pip install torch stable-baselines3`),
never workbench dependencies. Times run from the call (setup, imports and env creation
included) to the end of the episode that brought the mean over the bar; each side is judged on
its own training episodes (the sampled policy), and stopped at the cap.

    python benchmarks/rl_continuous.py                 # 3 seeds, cap 180 s per run
    python benchmarks/rl_continuous.py --seeds 1 --cap 60 --json results.json

--curve ENV: a learning curve against the wall clock instead, for environments too long to solve
in a benchmark (MuJoCo): `workbench train --env ENV --agent AGENT --steps STEPS` for each of
--agents (a learning rate annealed over those steps, as a user's run) for --minutes, then each
of stable-baselines3's --peers (ppo: its defaults, the PPO paper's MuJoCo settings, with
VecNormalize; sac: RL Zoo's MuJoCo settings; on Atari RL Zoo's PPO) for as long, at its fastest
setting here (measured for 20 s after 15 s of learning first), each printing the mean return of
its last 10 episodes every --every minutes, from before its set-up.

    python benchmarks/rl_continuous.py --curve HalfCheetah-v5 --minutes 30 --every 5 --steps 12000000
    python benchmarks/rl_continuous.py --curve HalfCheetah-v5 --agents sac --peers sac --steps 1000000
    python benchmarks/rl_continuous.py --curve ALE/Breakout-v5 --agents ppo --peers ppo --window 100 \
        --every 5 --steps 10000000     # RL Zoo's Atari PPO as the peer
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import (in_own_process, sb3_settings, setting_name, train_as_the_cli_does,  # noqa: E402
                     vec_env_options)

BAR = -250.0
WINDOW = 20
ENV = "Pendulum-v1"


def reached(returns) -> bool:
    return len(returns) >= WINDOW and float(np.mean(list(returns)[-WINDOW:])) >= BAR


def own_run(seed: int, cap: float, logdir: str, agent: str = "a3c") -> dict:
    """Seconds and env steps until the bar (or the best last-20 mean within the cap)."""
    from workbench.rl import TrainConfig

    start = time.monotonic()
    best = [-np.inf]
    done = [False]

    def stop(progress) -> bool:
        recent = list(progress.recent_returns)[-WINDOW:]
        if len(recent) == WINDOW:
            best[0] = max(best[0], float(np.mean(recent)))
        done[0] = reached(progress.recent_returns)
        return done[0] or time.monotonic() - start > cap

    result = train_as_the_cli_does(TrainConfig(env=ENV, agent=agent, actors=2, steps=2_000_000, seed=seed,
                                               logdir=logdir), stop)
    return {"reached": done[0], "seconds": round(time.monotonic() - start, 1),
            "steps": result.progress.step, "best_mean_20": round(best[0], 1)}


def sb3_model(algo: str, seed: int, vec_env: str = "dummy", threads: int = 1):
    """RL Zoo's tuned Pendulum-v1 settings (hyperparams/a2c.yml, ppo.yml and sac.yml), its envs
    in one process ("dummy") or a process each ("subproc"), PyTorch on `threads`."""
    import torch

    torch.set_num_threads(threads)
    from stable_baselines3 import A2C, PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    def envs(n: int):
        return make_vec_env(ENV, n_envs=n, seed=seed, **vec_env_options(vec_env))

    if algo == "sac":  # the Zoo changes only the learning rate from SB3's defaults
        return SAC("MlpPolicy", envs(1), learning_rate=1e-3, seed=seed, device="cpu")
    if algo == "ppo":
        return PPO("MlpPolicy", envs(4), n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                   ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True,
                   sde_sample_freq=4, seed=seed, device="cpu")
    # normalize: true is VecNormalize for observations and rewards, with the agent's gamma
    return A2C("MlpPolicy", VecNormalize(envs(8), gamma=0.9), n_steps=8, gae_lambda=0.9, gamma=0.9,
               ent_coef=0.0, vf_coef=0.4, max_grad_norm=0.5, use_rms_prop=True, normalize_advantage=False,
               learning_rate=lambda remaining: 7e-4 * remaining, use_sde=True,
               policy_kwargs=dict(log_std_init=-2, ortho_init=False), seed=seed, device="cpu")


def sb3_fastest_setting(algo: str) -> tuple[str, int]:
    """The peer's fastest vec env and thread count here (harness.sb3_settings), printed."""
    rates = sb3_settings(sb3_model, (algo, 0), seconds=8.0,
                         console=lambda line: print(f"  sb3-{algo} {line.strip()}", flush=True))
    return max(rates, key=rates.get)


def sb3_run(algo: str, seed: int, cap: float, vec_env: str = "dummy", threads: int = 1) -> dict:
    start = time.monotonic()
    from harness import SB3Episodes

    model = sb3_model(algo, seed, vec_env, threads)
    try:
        episodes = SB3Episodes(WINDOW).learn(model, lambda e: reached(e.returns) or time.monotonic() - start >= cap)
    finally:
        model.get_env().close()
    best = None if episodes.best is None else round(episodes.best, 1)
    return {"reached": reached(episodes.returns), "seconds": round(time.monotonic() - start, 1),
            "steps": episodes.steps, "best_mean_20": best, "setting": setting_name(vec_env, threads)}


class Curve:
    """The mean return of the last `window` episodes at every mark (minutes from the start), as
    training reaches it."""

    def __init__(self, name: str, minutes: float, every: float, window: int):
        self.name, self.start, self.window = name, time.monotonic(), window
        self.marks = [every * k for k in range(1, int(minutes / every + 1e-9) + 1)]
        self.points: list[dict] = []

    def update(self, returns, steps: int) -> bool:
        """Records the marks passed; true once the last one is."""
        minutes = (time.monotonic() - self.start) / 60
        while self.marks and minutes >= self.marks[0]:
            recent = list(returns)[-self.window:]
            point = {"minutes": self.marks.pop(0), "steps": steps,
                     f"mean_{self.window}": round(float(np.mean(recent)), 1) if recent else None}
            self.points.append(point)
            print(f"  {self.name:8s} {point}", flush=True)
        return not self.marks


def own_curve(agent: str, env_id: str, minutes: float, every: float, window: int, steps: int,
              logdir: str) -> list[dict]:
    from workbench.rl import TrainConfig

    curve = Curve(agent, minutes, every, window)
    train_as_the_cli_does(TrainConfig(env=env_id, agent=agent, actors=2, steps=steps, logdir=logdir),
                          lambda progress: curve.update(progress.recent_returns, progress.step))
    return curve.points


ZOO_ATARI_STEPS = 10_000_000  # what RL Zoo's Atari PPO anneals its learning rate and clip range over


def sb3_curve_model(algo: str, env_id: str, vec_env: str = "dummy", threads: int = 1):
    """stable-baselines3's PPO with its defaults (the PPO paper's MuJoCo settings) and
    VecNormalize, or its SAC with RL Zoo's MuJoCo settings (SB3's defaults, learning after 10,000
    random steps); on Atari (ALE/...) its PPO with RL Zoo's Atari settings: AtariWrapper (the
    same preprocessing as workbench's, on the same v5 env: sticky actions, frameskip 4 by the
    wrapper), 4 frames stacked, 8 envs, n_steps 128, 4 epochs of minibatches of 256, learning
    rate 2.5e-4 and clip range 0.1 annealed over the Zoo's 10M steps, ent_coef 0.01. Its envs in
    one process ("dummy") or a process each ("subproc"), PyTorch on `threads`."""
    import torch

    torch.set_num_threads(threads)
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_atari_env, make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack, VecNormalize

    if env_id.startswith("ALE/"):
        import ale_py
        import gymnasium

        gymnasium.register_envs(ale_py)  # ALE/... ids, which forked workers inherit
        envs = VecFrameStack(make_atari_env(env_id, n_envs=8, seed=0, env_kwargs={"frameskip": 1},
                                            **vec_env_options(vec_env)), n_stack=4)
        return PPO("CnnPolicy", envs, n_steps=128, n_epochs=4, batch_size=256,
                   learning_rate=lambda remaining: 2.5e-4 * remaining, clip_range=lambda remaining: 0.1 * remaining,
                   vf_coef=0.5, ent_coef=0.01, seed=0, device="cpu")
    envs = make_vec_env(env_id, n_envs=1, seed=0, **vec_env_options(vec_env))
    if algo == "sac":
        return SAC("MlpPolicy", envs, learning_starts=10_000, seed=0, device="cpu")
    return PPO("MlpPolicy", VecNormalize(envs), seed=0, device="cpu")


def sb3_curve(algo: str, env_id: str, minutes: float, every: float, window: int, vec_env: str,
              threads: int) -> list[dict]:
    from harness import SB3Episodes

    curve = Curve(f"sb3-{algo}", minutes, every, window)  # from before its set-up, as workbench's
    model = sb3_curve_model(algo, env_id, vec_env, threads)
    total = ZOO_ATARI_STEPS if env_id.startswith("ALE/") else 10**9
    try:
        SB3Episodes(window).learn(model, lambda e: curve.update(e.returns, e.steps), total_timesteps=total)
    finally:
        model.get_env().close()
    return curve.points


def curves(env_id: str, minutes: float, every: float, window: int, steps: int, agents: list[str],
           peers: list[str], json_path: Path | None) -> int:
    logdir = tempfile.mkdtemp(prefix="rl-continuous-curve-")
    print(f"{env_id}: last-{window} mean return every {every:g} minutes for {minutes:g} minutes, "
          f"{os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}", flush=True)
    results = {"env": env_id, "minutes": minutes}
    for agent in agents:
        results[agent] = in_own_process(own_curve, agent, env_id, minutes, every, window, steps, logdir)
        print(f"load average: {os.getloadavg()[0]:.1f}", flush=True)
    for peer in peers:
        try:
            # its fastest setting here, sampled after its start-up (SAC's random steps, a first update)
            rates = sb3_settings(sb3_curve_model, (peer, env_id), seconds=20.0, warmup=15.0,
                                 console=lambda line: print(f"  sb3-{peer} {line.strip()}", flush=True))
            results[f"sb3-{peer}"] = in_own_process(sb3_curve, peer, env_id, minutes, every, window,
                                                    *max(rates, key=rates.get))
        except ImportError as error:
            print(f"  sb3-{peer} skipped: {error} (pip install torch stable-baselines3)", flush=True)
    results["load_average_after"] = os.getloadavg()
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def summary(runs: list[dict]) -> str:
    times = [r["seconds"] for r in runs if r["reached"]]
    median = f"median {statistics.median(times):.1f} s" if times else "never"
    return (f"reached {len(times)}/{len(runs)}, {median} (" + ", ".join(
        f"{r['seconds']} s / {r['steps']:,} steps"
        + ("" if r["reached"] else f" not reached, best {r['best_mean_20']}") for r in runs) + ")")


def main() -> int:
    import nets

    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--agents", default="a3c,ppo,sac", help="workbench's agents (default a3c,ppo,sac)")
    parser.add_argument("--cap", type=float, default=180.0, help="seconds per run (default 180)")
    parser.add_argument("--peers", default="ppo,a2c,sac",
                        help="stable-baselines3 algorithms (default ppo,a2c,sac; --curve takes ppo and sac)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--curve", metavar="ENV", help="a learning curve on ENV instead (e.g. HalfCheetah-v5)")
    parser.add_argument("--minutes", type=float, default=30.0, help="--curve: minutes per side (default 30)")
    parser.add_argument("--every", type=float, default=10.0, help="--curve: minutes between points (default 10)")
    parser.add_argument("--window", type=int, default=10,
                        help="--curve: episodes in the mean (default 10; 100 for Atari)")
    parser.add_argument("--steps", type=int, default=12_000_000,
                        help="--curve: workbench's --steps (default 12M: HalfCheetah took 25 minutes on 2 cores)")
    args = parser.parse_args()
    peers = [p for p in args.peers.split(",") if p]
    agents = [a for a in args.agents.split(",") if a]
    if args.curve:
        return curves(args.curve, args.minutes, args.every, args.window, args.steps, agents, peers, args.json)
    logdir = tempfile.mkdtemp(prefix="rl-continuous-")
    print(f"{ENV}: time to a last-{WINDOW} mean >= {BAR:g}, {os.cpu_count()} cores, cap {args.cap:g} s; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    results: dict = {"env": ENV, "bar": BAR, "window": WINDOW, "cap": args.cap,
                     "machine": f"{os.cpu_count()} cores", **{a: [] for a in agents},
                     **{f"sb3-{p}": [] for p in peers}}
    settings = {}
    for peer in list(peers):
        try:
            settings[peer] = sb3_fastest_setting(peer)
        except ImportError as error:
            print(f"  sb3-{peer} skipped: {error} (pip install torch stable-baselines3)", flush=True)
            peers.remove(peer)
    for seed in range(args.seeds):  # one seed of every side in turn: load falls on all alike
        for agent in agents:
            results[agent].append(in_own_process(own_run, seed, args.cap, logdir, agent))
            print(f"  {agent:8s} seed {seed}: {results[agent][-1]}", flush=True)
        for peer in peers:
            results[f"sb3-{peer}"].append(in_own_process(sb3_run, peer, seed, args.cap, *settings[peer]))
            print(f"  sb3-{peer:4s} seed {seed}: {results[f'sb3-{peer}'][-1]}", flush=True)
    results["load_average_after"] = os.getloadavg()
    for name in (*agents, *(f"sb3-{p}" for p in peers)):
        if results[name]:
            print(f"{name:8s} {summary(results[name])}", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
