"""Atari environment cost: CPU milliseconds per agent step (4 emulator frames, preprocessed,
stacked) of the env workbench's actors step, against ale-py's C++ `AtariVectorEnv` with the same
preprocessing, E envs at a time, one thread, random actions, measured alternately.

    python benchmarks/atari_envs.py [--env ALE/Breakout-v5] [--envs 4] [--seconds 10]

workbench: `envs.make_env` (Gymnasium's AtariPreprocessing, fire on reset, life loss for learning,
    clipped rewards, frame stack 4), E envs stepped one after another, as an actor does.
ale-py: `ale_py.vector_env.AtariVectorEnv(num_envs=E, num_threads=1)`: no-op reset (30), skip 4
    with a max over the last two frames, 84x84 gray, stack 4, fire reset, life loss in the info,
    sticky actions 0.25 as v5; one batched step for the E envs, which a C++ thread carries out.
    CPU time counts every thread of the process.
(EnvPool, the other C++ candidate, is not measured: its 1.2 wheel ships no Atari ROMs and pulls in
matplotlib and MuJoCo assets, so it does not install cleanly beside ale-py.)
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def workbench_stepper(env_id: str, envs: int):
    from envs import make_env

    group = [make_env(env_id, seed=s) for s in range(envs)]
    for env in group:
        env.reset()
    rng = np.random.default_rng(0)

    def step():
        for env in group:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(4)))
            if terminated or truncated:
                env.reset()
    return step


def ale_stepper(env_id: str, envs: int):
    from ale_py.vector_env import AtariVectorEnv

    game = env_id.split("/")[-1].split("-")[0].lower()
    vector = AtariVectorEnv(game, envs, num_threads=1, repeat_action_probability=0.25,
                            episodic_life=False, life_loss_info=True, reward_clipping=True,
                            use_fire_reset=True)
    vector.reset(seed=0)
    rng = np.random.default_rng(0)
    return lambda: vector.step(rng.integers(4, size=envs))


def cpu_ms_per_agent_step(step, envs: int, seconds: float) -> float:
    step()
    calls, cpu, end = 0, time.process_time(), time.monotonic() + seconds
    while time.monotonic() < end:
        step()
        calls += 1
    return 1e3 * (time.process_time() - cpu) / (calls * envs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="ALE/Breakout-v5", help="an ALE env id (default ALE/Breakout-v5)")
    parser.add_argument("--envs", type=int, default=4, help="envs stepped together (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per sample (default 10)")
    parser.add_argument("--rounds", type=int, default=3, help="samples of each, alternating (default 3)")
    args = parser.parse_args(argv)
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    steppers = {"workbench (Gymnasium wrappers)": workbench_stepper(args.env, args.envs),
                "ale-py AtariVectorEnv": ale_stepper(args.env, args.envs)}
    samples = {name: [] for name in steppers}
    for _ in range(args.rounds):
        for name, step in steppers.items():
            samples[name].append(cpu_ms_per_agent_step(step, args.envs, args.seconds))
    print(f"{args.env}, {args.envs} envs, one thread: CPU ms per agent step (median of {args.rounds})")
    for name, values in samples.items():
        print(f"  {name:32s} {statistics.median(values):6.3f}  ({', '.join(f'{v:.3f}' for v in values)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
