"""DQN and its replay memory on this machine.

(a) replay: a 1M-step Atari memory (84x84 frames stacked 4 deep) filled with episodes of random
    length, then the time to sample a batch of 32: the indices (uniform, or from the sum tree with
    their importance weights), and the whole batch (indices, 32 frame stacks and 32 bootstrap
    stacks gathered, n-step returns); the bytes each step takes and the time to fill it.
(b) cartpole: wall-clock time until the mean of the last 100 training episodes reaches 475, for
    `dqn` with 2 actor processes, with its defaults and with RL Baselines3 Zoo's CartPole settings
    (where its defaults differ: lr 2.3e-3, 1-step, no double DQN; so that the implementation and
    the settings are told apart), and for stable-baselines3's DQN with those settings
    (benchmark-only: `pip install stable-baselines3`; it brings PyTorch; in a process of its own,
    PyTorch on one thread), seed by seed in the same run, each from the call (setup included) and
    capped.

    python benchmarks/dqn.py replay                    # about a minute; needs ~7 GB of memory
    python benchmarks/dqn.py cartpole --seeds 3 --cap 600
    python benchmarks/dqn.py replay --capacity 100000  # a smaller memory

Other people's load on a shared machine changes every figure: run it under a quiet machine
(/work/shared/tools/quiet here) and report the load average printed beside the figures.
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

SOLVED = 475.0
# RL Baselines3 Zoo, hyperparams/dqn.yml, CartPole-v1 (n_timesteps 5e4: the fraction is of that)
ZOO_CARTPOLE = dict(learning_rate=2.3e-3, batch_size=64, buffer_size=100_000, learning_starts=1000,
                    gamma=0.99, target_update_interval=10, train_freq=256, gradient_steps=128,
                    exploration_fraction=0.16, exploration_final_eps=0.04,
                    policy_kwargs=dict(net_arch=[256, 256]))
ZOO_TIMESTEPS = 50_000
# workbench's dqn set to the Zoo's values where its defaults differ (see agents/dqn.py)
ZOO_AS_WORKBENCH = {"lr": ZOO_CARTPOLE["learning_rate"], "n_step": 1, "double": False}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# -- (a) replay -------------------------------------------------------------------------------
def fill_atari(memory, seed: int = 0, chunk: int = 1000) -> float:
    """Fill `memory` with episodes of 20 to 2000 steps from 8 streams; returns seconds taken."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (chunk + 4, 84, 84), dtype=np.uint8)
    stacks = np.lib.stride_tricks.sliding_window_view(frames, 4, axis=0).transpose(0, 3, 1, 2)
    start, written, stream = time.perf_counter(), 0, 0
    while written < memory.capacity + 8 * chunk:  # every stream wraps past its oldest slots
        terminated = rng.random(chunk) < 1 / rng.integers(20, 2000)
        truncated = np.zeros(chunk, bool)
        truncated[-1] = not terminated[-1]
        final = {chunk - 1: stacks[chunk]} if truncated[-1] else None
        memory.add(stream % 8, stacks[:chunk], rng.integers(4, size=chunk), rng.random(chunk),
                   terminated, truncated, final, priorities=rng.random(chunk))
        written, stream = written + chunk, stream + 1
    return time.perf_counter() - start


def time_calls(call, repeats: int) -> tuple[float, float]:
    """(median, minimum) milliseconds of `call()`."""
    for _ in range(20):
        call()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times), 1e3 * min(times)


def replay(capacity: int, batch: int, repeats: int) -> dict:
    from agents.replay import ReplayMemory

    memory = ReplayMemory(capacity, (4, 84, 84), np.uint8, stack=4, prioritized=True,
                          rng=np.random.default_rng(0))
    fill_seconds = fill_atari(memory)
    results = {"capacity": capacity, "batch": batch, "fill_s": round(fill_seconds, 1),
               "bytes_per_step": round(memory.nbytes / capacity, 1),
               "gib": round(memory.nbytes / 2**30, 2), "sampleable": len(memory)}
    for mode in ("uniform", "prioritized"):
        memory.prioritized = mode == "prioritized"  # the same filled memory, sampled both ways
        indices, _ = memory.sample_indices(batch, 0.4)
        results[f"{mode}_indices_ms"] = time_calls(lambda: memory.sample_indices(batch, 0.4), repeats)
        results[f"{mode}_batch_ms"] = time_calls(lambda: memory.sample(batch, 0.4), repeats)
    results["priority_update_ms"] = time_calls(
        lambda: memory.update_priorities(indices, np.random.default_rng(1).random(batch)), repeats)
    return results


# -- (b) cartpole -----------------------------------------------------------------------------
def own_solve(seed: int, cap: float, logdir: str, actors: int, agent_config: dict | None = None) -> dict:
    from workbench.rl import TrainConfig, train

    start, best, state = time.monotonic(), [0.0], {"solved": False}

    def stop(progress):
        if len(progress.recent_returns) == 100:
            best[0] = max(best[0], progress.mean_return())
            state["solved"] = progress.mean_return() >= SOLVED
        return state["solved"] or time.monotonic() - start > cap

    result = train(TrainConfig(env="CartPole-v1", agent="dqn", actors=actors, steps=10**8, seed=seed,
                               logdir=logdir, agent_config=agent_config or {}),
                   should_stop=stop, console=lambda line: None)
    return {"solved": state["solved"], "seconds": round(time.monotonic() - start, 1),
            "steps": result.progress.step, "best_mean_100": round(best[0], 1)}


def sb3_solve(seed: int, cap: float) -> dict:
    import torch
    from stable_baselines3 import DQN

    from harness import SB3Episodes

    torch.set_num_threads(1)
    start = time.monotonic()
    model = DQN("MlpPolicy", "CartPole-v1", seed=seed, device="cpu", **ZOO_CARTPOLE)
    # exploration_fraction is of the total steps: keep the Zoo's 8,000-step schedule however long it runs
    model.exploration_schedule = lambda progress_remaining: max(
        ZOO_CARTPOLE["exploration_final_eps"],
        1 - (1 - ZOO_CARTPOLE["exploration_final_eps"]) * model.num_timesteps
        / (ZOO_CARTPOLE["exploration_fraction"] * ZOO_TIMESTEPS))
    episodes = SB3Episodes(100).learn(
        model, lambda e: (e.best or 0.0) >= SOLVED or time.monotonic() - start >= cap)
    best = episodes.best or 0.0
    return {"solved": best >= SOLVED, "seconds": round(time.monotonic() - start, 1),
            "steps": episodes.steps, "best_mean_100": round(best, 1)}


def summarize(runs: list[dict]) -> str:
    done = [r["seconds"] for r in runs if r["solved"]]
    median = f"median {statistics.median(done):.1f} s" if done else "never"
    return (f"solved {len(done)}/{len(runs)}, {median} (runs: "
            + ", ".join(f"{r['seconds']} s / {r['steps']:,} steps"
                        + ("" if r["solved"] else f" unsolved, best {r['best_mean_100']}") for r in runs) + ")")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", choices=("replay", "cartpole"))
    parser.add_argument("--capacity", type=int, default=1_000_000, help="replay: steps in the memory")
    parser.add_argument("--batch", type=int, default=32, help="replay: batch size (default 32)")
    parser.add_argument("--repeats", type=int, default=2000, help="replay: timed calls per measure")
    parser.add_argument("--seeds", type=int, default=3, help="cartpole: seeds per library")
    parser.add_argument("--cap", type=float, default=600, help="cartpole: seconds per run at most")
    parser.add_argument("--actors", type=int, default=2, help="cartpole: dqn's actor processes")
    parser.add_argument("--skip-sb3", action="store_true", help="cartpole: leave the peer out")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    for name, value in (("capacity", args.capacity), ("batch", args.batch), ("repeats", args.repeats),
                        ("seeds", args.seeds), ("actors", args.actors)):
        if value < 1:
            print(f"dqn.py: --{name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    from nets import threads

    threads.limit(1)
    results: dict = {"machine": f"{os.cpu_count()} cores", "load_before": load()}
    print(f"load average {results['load_before']} ({os.cpu_count()} cores)", flush=True)
    if args.part == "replay":
        r = replay(args.capacity, args.batch, args.repeats)
        results["replay"] = r
        print(f"replay memory: {r['capacity']:,} Atari steps, {r['gib']} GiB ({r['bytes_per_step']:,} "
              f"bytes a step), filled in {r['fill_s']} s; {r['sampleable']:,} sampleable")
        for key, label in (("uniform_indices_ms", "uniform indices"), ("prioritized_indices_ms",
                           "prioritized indices + weights"), ("uniform_batch_ms", "uniform batch"),
                           ("prioritized_batch_ms", "prioritized batch"),
                           ("priority_update_ms", "priority update")):
            median, best = r[key]
            print(f"  {label:32s} batch {r['batch']}: {median:.4f} ms (min {best:.4f})", flush=True)
    else:
        from harness import in_own_process

        logdir = tempfile.mkdtemp(prefix="dqn-benchmark-")
        ours, ours_zoo, peer = [], [], []
        for seed in range(1, args.seeds + 1):
            ours.append(own_solve(seed, args.cap, logdir, args.actors))
            print(f"  dqn seed {seed}: {ours[-1]}", flush=True)
            ours_zoo.append(own_solve(seed, args.cap, logdir, args.actors, ZOO_AS_WORKBENCH))
            print(f"  dqn with the Zoo's settings, seed {seed}: {ours_zoo[-1]}", flush=True)
            if not args.skip_sb3:
                peer.append(in_own_process(sb3_solve, seed, args.cap))
                print(f"  sb3 DQN seed {seed}: {peer[-1]}", flush=True)
        results["dqn"], results["dqn_zoo_settings"], results["sb3_dqn"] = ours, ours_zoo, peer
        print(f"CartPole-v1 time to solve, dqn ({args.actors} actors x 4 envs): {summarize(ours)}")
        print(f"  the same with RL Zoo's settings ({ZOO_AS_WORKBENCH}): {summarize(ours_zoo)}")
        if peer:
            print(f"CartPole-v1 time to solve, SB3 DQN (RL Zoo settings): {summarize(peer)}")
    results["load_after"] = load()
    print(f"load average {results['load_after']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
