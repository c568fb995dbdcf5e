"""Parallel RL benchmark on this machine's cores.

(a) Wall-clock time to solve CartPole-v1 (mean return of 100 episodes >= 475) for A3C and async
    n-step Q with 2 actor processes, over several seeds, and for stable-baselines3's A2C with RL
    Zoo's CartPole settings (8 envs) when it is installed (benchmark-only: `pip install
    stable-baselines3`; it brings PyTorch), at its fastest here: its envs in one process or in
    subprocesses, PyTorch on 1 thread or on a thread per core, whichever steps fastest in a short
    measurement first; each run in a process of its own. Times include each library's setup.
    A3C and A2C are judged on their last 100 training episodes. The Q agent's training episodes explore (epsilon 0.01), so its greedy
    policy is evaluated every few seconds instead (100 episodes, cut short once they cannot reach
    the bar), and that time counts.
(b) Throughput: env steps/s of a whole training run (actors + learner on the same cores) against
    raw `env.step` with random actions in as many processes as there are actors.
(c) Weight sharing: one publish plus one pull of the A3C Atari net's 678k float32 parameters
    through the shared segment.
(d) Backends (rl_backends.py): publish + pull, whole-system steps/s and the learner's updates/s,
    local processes vs Ray actors, at 2, 4 and 8 actors.

    python benchmarks/rl.py                  # 3 seeds, up to 120 s per run
    python benchmarks/rl.py --budget quick   # 1 seed, shorter caps: about two minutes in all
    python benchmarks/rl.py --env ALE/Breakout-v5   # Atari throughput instead (rl_atari.py)

Other people's load on a shared machine changes every figure; (b) interleaves its raw and
system measurements and reports the load average next to them.
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

import nets
from envs import make_env
from harness import (SB3Episodes, in_own_process, random_steps, sb3_settings, setting_name,
                     training_steps_per_second, vec_env_options)
from workbench.rl import TrainConfig, train

SOLVED = 475.0
MAX_RETURN = 500.0  # CartPole-v1's time limit
BUDGETS = {  # seeds, cap per own run (s), cap per SB3 run (s), seconds per throughput sample
    "quick": (1, 60, 60, 4),
    "full": (3, 120, 300, 8),
}


def solved(returns) -> bool:
    return len(returns) >= 100 and float(np.mean(list(returns)[-100:])) >= SOLVED


def greedy_returns(agent, episodes: int = 100, n_envs: int = 25, seed: int = 10_000) -> list[float]:
    """Returns of greedy episodes (argmax of the Q values or policy logits) in `n_envs` envs at
    once. Stops as soon as the 100-episode mean can no longer reach the bar (episodes score at
    most 500, so the shortfalls below 500 may add up to 100 x 25 at most)."""
    envs = [make_env("CartPole-v1", seed=seed + i) for i in range(n_envs)]
    obs = np.stack([env.reset()[0] for env in envs])
    running, returns = np.zeros(n_envs), []
    network = agent.network
    while len(returns) < episodes:
        if sum(MAX_RETURN - r for r in returns) > episodes * (MAX_RETURN - SOLVED):
            break
        with nets.no_grad():
            scores = network.logits(obs) if hasattr(network, "logits") else network(obs)
        for i, (env, action) in enumerate(zip(envs, scores.data.argmax(axis=1).tolist())):
            obs[i], reward, terminated, truncated, _ = env.step(action)
            running[i] += reward
            if terminated or truncated:
                returns.append(running[i])
                running[i] = 0.0
                obs[i] = env.reset()[0]
    return returns[:episodes]


def own_solve(agent: str, seed: int, cap: float, logdir: str, steps: int,
              evaluate_every: float | None = None, gradients_on: str | None = None) -> dict:
    """Seconds (from the call, setup included) and env steps until solved, or the best 100-episode
    mean reached within `cap` seconds. With `evaluate_every` (seconds), judged by greedy
    evaluation instead of the training episodes."""
    start = time.monotonic()
    best, learner_agent, state = [0.0], [], {"next_eval": evaluate_every, "solved": False}

    def stop(progress):
        if evaluate_every is None:
            if progress.recent_returns:
                best[0] = max(best[0], progress.mean_return())
            state["solved"] = solved(progress.recent_returns)
        elif time.monotonic() - start >= state["next_eval"]:
            returns = greedy_returns(learner_agent[0])
            best[0] = max(best[0], float(np.mean(returns)))
            state["solved"] = len(returns) == 100 and bool(np.mean(returns) >= SOLVED)
            state["next_eval"] = time.monotonic() - start + evaluate_every
        return state["solved"] or time.monotonic() - start > cap

    result = train(TrainConfig(env="CartPole-v1", agent=agent, actors=2, steps=steps, seed=seed,
                               gradients_on=gradients_on, logdir=logdir), should_stop=stop,
                   console=lambda line: None, on_start=learner_agent.append)
    return {"solved": state["solved"], "seconds": round(time.monotonic() - start, 1),
            "steps": result.progress.step, "best_mean_100": round(best[0], 1)}


# RL Zoo's a2c.yml for CartPole-v1 (n_envs 8, ent_coef 0.0; the rest SB3's A2C defaults)
SB3_CARTPOLE = dict(n_envs=8, ent_coef=0.0)


def _sb3_a2c(seed: int, vec_env: str, threads: int):
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(threads)
    env = make_vec_env("CartPole-v1", n_envs=SB3_CARTPOLE["n_envs"], seed=seed, **vec_env_options(vec_env))
    return A2C("MlpPolicy", env, ent_coef=SB3_CARTPOLE["ent_coef"], seed=seed)


def sb3_solve(seed: int, cap: float, vec_env: str = "dummy", threads: int = 1) -> dict:
    start = time.monotonic()
    model = _sb3_a2c(seed, vec_env, threads)
    try:
        episodes = SB3Episodes(100).learn(model, lambda e: solved(e.returns) or time.monotonic() - start >= cap)
    finally:
        model.get_env().close()
    return {"solved": solved(episodes.returns), "seconds": round(time.monotonic() - start, 1),
            "steps": episodes.steps, "best_mean_100": round(episodes.best or 0.0, 1),
            "setting": setting_name(vec_env, threads)}


def sb3_fastest_setting(console=print) -> tuple[str, int]:
    """SB3 A2C's fastest setting here (harness.sb3_settings; its learning per env step is the
    same in each)."""
    rates = sb3_settings(_sb3_a2c, (0,), seconds=8.0, console=console)
    return max(rates, key=rates.get)


def raw_steps(seconds: float, seed: int) -> int:
    """env.step with pre-drawn random actions for `seconds`; returns the steps taken."""
    return random_steps(make_env("CartPole-v1", seed=seed), seconds, seed, chunk=4096)


def raw_throughput(processes: int, seconds: float) -> float:
    import multiprocess as mp

    with mp.get_context("forkserver").Pool(processes) as pool:
        counts = pool.starmap(raw_steps, [(seconds, seed) for seed in range(processes)])
    return sum(counts) / seconds


def system_throughput(seconds: float, envs_per_actor: int, logdir: str, warmup: float = 2.0) -> float:
    """Env steps/s learned from by a 2-actor A3C run, after `warmup` seconds."""
    config = TrainConfig(env="CartPole-v1", agent="a3c", actors=2, steps=10**9,
                         envs_per_actor=envs_per_actor, logdir=logdir)
    return training_steps_per_second(config, seconds, warmup)


def publish_and_pull_ms(n_params: int = 678_000, repeats: int = 200) -> tuple[float, float]:
    """Median milliseconds of a publish and of a pull that finds a new version (sharing.py)."""
    from sharing import publish_and_pull

    publish, pull = publish_and_pull(n_params)
    publish_times, pull_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        publish()
        t1 = time.perf_counter()
        pull()
        pull_times.append(time.perf_counter() - t1)
        publish_times.append(t1 - t0)
    return 1e3 * statistics.median(publish_times), 1e3 * statistics.median(pull_times)


def summarize(runs: list[dict]) -> str:
    done = [r["seconds"] for r in runs if r["solved"]]
    median = f"median {statistics.median(done):.1f} s" if done else "never"
    return (f"solved {len(done)}/{len(runs)}, {median} "
            f"(runs: {', '.join(str(r['seconds']) + ('' if r['solved'] else ' unsolved') for r in runs)})")


# For run(): CartPole seconds per throughput sample and envs per actor; solve seeds and the caps
# (s) of our run and SB3's; Breakout (seconds per sample, warm-up seconds, system samples).
RUN_MODES = {
    "quick": dict(sample=2.0, envs=(4,), seeds=0, caps=(0, 0), atari=None),
    "default": dict(sample=5.0, envs=(4, 32), seeds=1, caps=(60, 120), atari=(10.0, 10.0, 1)),
    "full": dict(sample=8.0, envs=(4, 32, 64), seeds=3, caps=(120, 300), atari=(20.0, 10.0, 2)),
}


def _half_range(samples) -> float:
    return (max(samples) - min(samples)) / 2 / statistics.mean(samples) if len(samples) > 1 else 0.0


def run(quick: bool = False, full: bool = False, smoke: bool = False):
    """Measures for `python -m benchmarks rl`: CartPole (and Breakout, when ale-py is installed)
    throughput of the whole system against raw env.step on the same cores, and CartPole
    time-to-solve of A3C against SB3's A2C. Measures a mode leaves out stay in the list, empty,
    with a note, so that runs in different modes compare by name. `smoke` runs as `quick`."""
    import numba

    from harness import Measure

    mode = RUN_MODES["quick" if quick else "full" if full else "default"]
    logdir = tempfile.mkdtemp(prefix="rl-benchmark-")
    measures = []
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # the learner's one thread, as in main()
    try:
        raw, system = [], {}
        for envs_per_actor in (4, 32, 64):
            if envs_per_actor in mode["envs"]:
                raw.append(raw_throughput(2, mode["sample"]))
                system[envs_per_actor] = system_throughput(mode["sample"], envs_per_actor, logdir)
        raw.append(raw_throughput(2, mode["sample"]))
        for envs_per_actor in (4, 32, 64):
            name = f"cartpole steps/s, a3c 2 actors x {envs_per_actor} envs"
            if envs_per_actor in system:
                measures.append(Measure(name, "steps/s", system[envs_per_actor], statistics.mean(raw),
                                        "raw env.step", "higher", spread=_half_range(raw)))
            else:
                measures.append(Measure(name, "steps/s", None, None, "raw env.step", "higher",
                                        note="runs with --full"))
        measures.extend(_atari_measures(mode["atari"], logdir))
        measures.append(_solve_measure(mode["seeds"], mode["caps"], logdir))
    finally:
        numba.set_num_threads(threads)
    return measures


def _atari_measures(setting, logdir: str):
    """Breakout with the Nature net and train's defaults, against the raw emulator and against
    stable-baselines3's A2C with the same net (rl_atari.py)."""
    from harness import Measure

    name, env_id = "breakout frames/s, a3c nature net, train's defaults", "ALE/Breakout-v5"
    against_raw = Measure(name, "frames/s", None, None, "raw emulator", "higher")
    against_sb3 = Measure(name + " (vs sb3)", "frames/s", None, None, "sb3 a2c nature cnn", "higher")
    try:
        import ale_py  # noqa: F401
    except ImportError:
        against_raw.note = against_sb3.note = "ale-py not installed"
        return [against_raw, against_sb3]
    if setting is None:
        against_raw.note = against_sb3.note = "runs without --quick"
        return [against_raw, against_sb3]
    from rl_atari import alternating_samples, sb3_at_its_best, system_config

    seconds, warmup, rounds = setting
    raw, system = alternating_samples(system_config(env_id, "nature", logdir), seconds, warmup, rounds)
    against_raw.workbench = against_sb3.workbench = statistics.mean(system)
    against_raw.peer, against_raw.spread = statistics.mean(raw), _half_range(raw)
    try:
        settings = sb3_at_its_best(env_id, seconds, warmup, "cpu")
    except ImportError:
        against_sb3.note = "stable-baselines3 not installed"
    else:
        against_sb3.note = max(settings, key=settings.get)  # the peer's fastest setting, reported
        against_sb3.peer = settings[against_sb3.note]
    return [against_raw, against_sb3]


def _solve_measure(seeds: int, caps: tuple, logdir: str):
    """Median seconds to solve over the seeds (None when no seed solved within the cap)."""
    from harness import Measure

    own_cap, sb3_cap = caps
    name = f"cartpole time to solve, a3c 2 actors vs sb3 a2c ({seeds or 1} seed{'s' * (seeds > 1)})"
    measure = Measure(name, "s", None, None, "sb3 a2c")
    if not seeds:
        measure.note = "runs without --quick"
        return measure
    own = [own_solve("a3c", seed, own_cap, logdir, 200_000) for seed in range(seeds)]
    notes = [f"a3c solved {sum(r['solved'] for r in own)}/{seeds} (cap {own_cap} s)"]
    measure.workbench = _median_solved(own)
    try:
        vec_env, threads = sb3_fastest_setting(console=lambda line: None)
        sb3 = [in_own_process(sb3_solve, seed, sb3_cap, vec_env, threads) for seed in range(seeds)]
        notes.append(f"sb3 solved {sum(r['solved'] for r in sb3)}/{seeds} (cap {sb3_cap} s; {sb3[0]['setting']})")
        measure.peer = _median_solved(sb3)
    except ImportError:
        notes.append("stable-baselines3 not installed")
    measure.note = "; ".join(notes)
    return measure


def _median_solved(runs: list[dict]):
    done = [r["seconds"] for r in runs if r["solved"]]
    return statistics.median(done) if done else None


def main() -> int:
    nets.threads.limit(1)  # the learner's one thread, as `workbench train` gives it on 2 cores
    if any(a == "--env" or a.startswith("--env=") for a in sys.argv[1:]):  # Atari: rl_atari.py
        from rl_atari import main as atari_main

        return atari_main(sys.argv[1:])
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", choices=BUDGETS, default="full",
                        help="quick: 1 seed, short caps; full: 3 seeds (default)")
    parser.add_argument("--steps", type=int, default=200_000,
                        help="--steps of our runs: their learning rate anneals to 0 over it "
                             "(default 200000)")
    parser.add_argument("--skip", action="append", default=[],
                        choices=("solve", "sb3", "throughput", "weights", "backends"),
                        help="leave a part out (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    seeds, own_cap, sb3_cap, sample = BUDGETS[args.budget]
    results: dict = {"machine": f"{os.cpu_count()} cores", "budget": args.budget}
    logdir = tempfile.mkdtemp(prefix="rl-benchmark-")
    print(f"CartPole-v1 on {os.cpu_count()} cores, budget {args.budget}; run folders in {logdir}",
          flush=True)

    if "solve" not in args.skip:
        for agent, evaluate_every in (("a3c", None), ("nstep-q", 2.0)):
            runs = []
            for seed in range(seeds):
                runs.append(own_solve(agent, seed, own_cap, logdir, args.steps, evaluate_every))
                print(f"  {agent} seed {seed}: {runs[-1]}", flush=True)
            results[agent] = runs
            print(f"(a) {agent:8s} 2 actors: {summarize(runs)}", flush=True)
    if "sb3" not in args.skip:
        try:
            vec_env, threads = sb3_fastest_setting(console=lambda line: print(line, flush=True))
            runs = []
            for seed in range(seeds):
                runs.append(in_own_process(sb3_solve, seed, sb3_cap, vec_env, threads))
                print(f"  sb3-a2c seed {seed}: {runs[-1]}", flush=True)
            results["sb3-a2c"] = runs
            print(f"(a) sb3-a2c  RL Zoo, 8 envs, {vec_env}, torch {threads} thread(s): {summarize(runs)}",
                  flush=True)
        except ImportError as error:
            print(f"(a) sb3-a2c  skipped: {error} (pip install stable-baselines3)", flush=True)

    if "throughput" not in args.skip:
        raw, system = [], {}
        for envs_per_actor in (4, 32, 64):  # the default, and batching for throughput
            raw.append(raw_throughput(2, sample))
            system[envs_per_actor] = system_throughput(sample, envs_per_actor, logdir)
        raw.append(raw_throughput(2, sample))
        raw_mean = statistics.mean(raw)
        results["throughput"] = {"raw_steps_per_s": round(raw_mean),
                                 "raw_samples": [round(r) for r in raw],
                                 "load_average": os.getloadavg()}
        print(f"(b) raw env.step, random actions, 2 processes: {raw_mean:,.0f} steps/s "
              f"(samples {', '.join(f'{r:,.0f}' for r in raw)}; load average "
              f"{os.getloadavg()[0]:.1f})", flush=True)
        for envs_per_actor, rate in system.items():
            results["throughput"][f"system_{envs_per_actor}_envs_per_actor"] = round(rate)
            print(f"    whole system, a3c, 2 actors x {envs_per_actor:2d} envs: {rate:,.0f} steps/s = "
                  f"{100 * rate / raw_mean:.0f}% of raw", flush=True)
    if "weights" not in args.skip:
        publish, pull = publish_and_pull_ms()
        results["weights_ms"] = {"publish": round(publish, 3), "pull": round(pull, 3)}
        print(f"(c) 678k parameters: publish {publish:.3f} ms + pull {pull:.3f} ms = "
              f"{publish + pull:.3f} ms", flush=True)
    if "backends" not in args.skip:
        from rl_backends import measure as backends

        results["backends"] = backends(sample, logdir, lambda line: print(line, flush=True))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
