"""The generalization suite: every agent that takes the env, with its CLI defaults, on Gymnasium's
built-in small envs, over seeds, against stable-baselines3's A2C and PPO with their defaults in
the same run.

    python benchmarks/suite.py                                  # every env, 3 seeds
    python benchmarks/suite.py --envs Acrobot-v1,FrozenLake-v1 --agents a3c,ppo --seeds 3
    python benchmarks/suite.py --quick                          # a tenth of the steps, 1 seed
    python -m benchmarks suite                                  # the same, in the benchmark report

Each run trains for the env's step budget (STEPS) and is judged on its own training episodes:
the final mean return of its last `window` episodes (100; Blackjack's 1,000) and the best such
mean it reached. A table gives, per env and
agent, the median over seeds of the final mean with its 95% bootstrap interval, the median best,
and the peers' medians beside them. stable-baselines3 and PyTorch are benchmark-only peers
(`pip install torch stable-baselines3`); SB3 gets one-hot Discrete observations by itself and
Gymnasium's FlattenObservation for Tuple and Dict ones, as workbench does. SB3's A2C runs 8 envs
(RL Zoo's usual count for classic control), its PPO its default one; PyTorch gets one thread, as
workbench's learner has on 2 cores.
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

from harness import Measure, SB3Episodes, in_own_process, train_as_the_cli_does  # noqa: E402

# Env -> env steps per run: the same budget for every agent and peer.
STEPS = {
    "CartPole-v1": 100_000, "Acrobot-v1": 100_000, "MountainCar-v0": 200_000, "FrozenLake-v1": 100_000,
    "Taxi-v4": 200_000, "CliffWalking-v1": 100_000, "Blackjack-v1": 100_000, "Pendulum-v1": 200_000,
    "MountainCarContinuous-v0": 200_000, "LunarLander-v3": 300_000,
}
PEERS = ("a2c", "ppo")
# Episodes per mean. Blackjack's returns are -1, 0 or 1 for episodes of a step or two: a mean of 100
# has a std of about 0.1, more than the gap between a fair policy and the best (10 seeds' finals of
# one agent spread from -0.25 to 0.14).
WINDOWS = {"Blackjack-v1": 1000}


def window(env_id: str) -> int:
    return WINDOWS.get(env_id, 100)


def final_and_best(returns: list[float], width: int) -> tuple[float | None, float | None]:
    """The mean of the last `width` returns and the best mean of `width` in a row (each the mean of
    them all while there are fewer); None, None without any."""
    from logs.curves import smooth

    if not returns:
        return None, None
    means = smooth(np.asarray(returns, np.float64), width)
    whole = means[width - 1:] if len(means) >= width else means[-1:]  # the windows that are full
    return float(means[-1]), float(whole.max())


def agents_for(env_id: str) -> list[str]:
    """The registered agents that take the env's actions."""
    from agents import AGENTS
    from envs import probe

    actions = probe(env_id).action_space
    takers = []
    for name, cls in AGENTS.items():
        try:
            cls.check_action_space(actions)
            takers.append(name)
        except ValueError:
            pass
    return takers


def own_run(env_id: str, agent: str, seed: int, steps: int, logdir: str, overrides: dict | None = None) -> dict:
    """One run with the CLI's defaults (and `overrides` of the agent's settings, as `--set`):
    final and best means of its training episodes (`final_and_best`)."""
    from logs.curves import read_scalars
    from workbench.rl import TrainConfig

    start = time.monotonic()
    result = train_as_the_cli_does(TrainConfig(env=env_id, agent=agent, steps=steps, seed=seed, logdir=logdir,
                                               agent_config=overrides or {}), lambda progress: False)
    returns = read_scalars(result.path, "charts/episodic_return").values.tolist()  # every episode's
    final, best = final_and_best(returns, window(env_id))
    return {"final": final, "best": best, "episodes": result.progress.episodes,
            "seconds": round(time.monotonic() - start, 1)}


def sb3_env(env_id: str):
    import gymnasium as gym

    env = gym.make(env_id)
    if isinstance(env.observation_space, (gym.spaces.Tuple, gym.spaces.Dict)):
        env = gym.wrappers.FlattenObservation(env)
    return env


def sb3_run(algo: str, env_id: str, seed: int, steps: int) -> dict:
    import torch

    torch.set_num_threads(1)
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    start = time.monotonic()
    n_envs = 8 if algo == "a2c" else 1
    env = make_vec_env(lambda: sb3_env(env_id), n_envs=n_envs, seed=seed)
    model = (A2C if algo == "a2c" else PPO)("MlpPolicy", env, seed=seed, device="cpu")
    episodes = SB3Episodes().learn(model, lambda e: e.steps >= steps)
    final, best = final_and_best(episodes.returns, window(env_id))
    return {"final": final, "best": best, "episodes": len(episodes.returns),
            "seconds": round(time.monotonic() - start, 1)}


def number(value: float) -> str:
    """A return as the table shows it: two decimals where returns are small (FrozenLake's are
    success rates), one elsewhere."""
    return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"


def interval(values: list[float]) -> str:
    from logs.curves import bootstrap_interval

    if len(values) < 2:
        return ""
    low, high = bootstrap_interval(values)
    return f"[{number(low)}, {number(high)}]"


def table(results: dict) -> str:
    """Per env and agent: the median final (95% interval) and median best over seeds."""
    rows = [("env", "agent", "final median", "95% interval", "best median", "seeds")]
    for env_id, by_agent in results["runs"].items():
        for name, runs in by_agent.items():
            finals = [r["final"] for r in runs if r["final"] is not None]
            bests = [r["best"] for r in runs if r["best"] is not None]
            rows.append((env_id, name, number(statistics.median(finals)) if finals else "no episode",
                         interval(finals), number(statistics.median(bests)) if bests else "-",
                         ", ".join("-" if r["final"] is None else number(r["final"]) for r in runs)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def suite(envs: list[str], agents: list[str] | None, seeds: int, peers: list[str], scale: float,
          json_path: Path | None = None, overrides: dict | None = None) -> dict:
    """Every run in a fresh process of its own (harness.in_own_process)."""
    from envs import MissingExtraError

    logdir = tempfile.mkdtemp(prefix="suite-")
    results: dict = {"seeds": seeds, "scale": scale, "load_average_before": os.getloadavg()[0], "runs": {}}
    print(f"suite: {len(envs)} env(s), {seeds} seed(s), {os.cpu_count()} cores; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    for env_id in envs:
        steps = max(1_000, int(STEPS[env_id] * scale))
        try:
            takers = [a for a in agents_for(env_id) if agents is None or a in agents]
        except MissingExtraError as error:
            print(f"{env_id}: skipped ({error})", flush=True)
            continue
        by_agent = results["runs"].setdefault(env_id, {})
        for seed in range(seeds):  # one seed of every side in turn: load falls on all alike
            for agent in takers:
                by_agent.setdefault(agent, []).append(
                    in_own_process(own_run, env_id, agent, seed, steps, logdir, overrides))
                print(f"  {env_id} {agent} seed {seed}: {by_agent[agent][-1]}", flush=True)
            for peer in peers:
                try:
                    outcome = in_own_process(sb3_run, peer, env_id, seed, steps)
                    by_agent.setdefault(f"sb3-{peer}", []).append(outcome)
                    print(f"  {env_id} sb3-{peer} seed {seed}: {outcome}", flush=True)
                except ImportError as error:  # no row for a peer that is not installed
                    print(f"  sb3-{peer} skipped: {error} (pip install torch stable-baselines3)", flush=True)
                    peers = [p for p in peers if p != peer]
    results["load_average_after"] = os.getloadavg()[0]
    print(table(results), flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}", flush=True)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def median_final(runs: list[dict]) -> float | None:
    finals = [r["final"] for r in runs if r["final"] is not None]
    return statistics.median(finals) if finals else None


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list[Measure]:
    """`python -m benchmarks suite`: per env, the best agent's median final mean against the best
    peer's (SB3 A2C's or PPO's; higher is better); --quick: a tenth of the steps and one seed;
    --smoke: CartPole."""
    import nets

    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    envs = ["CartPole-v1"] if smoke else list(STEPS)
    results = suite(envs, None, 1 if quick else 3, list(PEERS), 0.1 if quick else 1.0)
    measures = []
    for env_id, by_agent in results["runs"].items():
        medians = {name: median_final(runs) for name, runs in by_agent.items()}
        own = {name: value for name, value in medians.items() if value is not None and not name.startswith("sb3-")}
        peers = {name: value for name, value in medians.items() if value is not None and name.startswith("sb3-")}
        best, best_peer = (max(side, key=side.get) if side else None for side in (own, peers))
        measures.append(Measure(f"{env_id} final last-{window(env_id)} ({best or 'none'})", "return",
                                own.get(best), peers.get(best_peer), (best_peer or "sb3").replace("-", " "),
                                better="higher", note="" if best_peer else "no peer installed or none ended an episode"))
    return measures


def main() -> int:
    import nets
    from workbench.commands.train import key_value

    nets.threads.limit(1)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", default=",".join(STEPS), help="comma-separated (default: every env of the suite)")
    parser.add_argument("--agents", help="comma-separated workbench agents (default: every one that takes the env)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--peers", default=",".join(PEERS), help="stable-baselines3 algorithms (default a2c,ppo)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the steps, 1 seed")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--set", type=key_value, action="append", metavar="KEY=VALUE", default=[],
                        help="an agent setting for every workbench run, as train's --set (repeatable)")
    args = parser.parse_args()
    envs = [e for e in args.envs.split(",") if e]
    unknown = [e for e in envs if e not in STEPS]
    if unknown:
        parser.error(f"not in the suite: {', '.join(unknown)}; the suite's envs are {', '.join(STEPS)}")
    suite(envs, args.agents.split(",") if args.agents else None, 1 if args.quick else args.seeds,
          [p for p in args.peers.split(",") if p], 0.1 if args.quick else 1.0, args.json, dict(args.set))
    return 0


if __name__ == "__main__":
    sys.exit(main())
