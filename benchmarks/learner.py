"""The learner alone: updates per second from ready-made rollouts, on the CPU or the GPU.

    python benchmarks/learner.py [--env ALE/Pong-v5] [--agent a3c] [--device gpu]
                                 [--rollouts 1,4,15] [--updates 50] [--profile]

Each update is what the learner's loop does with the rollouts it received: join them, update
the agent (forward, loss, backward, clip, optimizer step) and publish the weights into a host
vector the size of the shared segment. Rollouts are random observations of the env's shape with
the actors' t_max and envs per actor, so the figure is the learner's ceiling in env steps/s:
when actors deliver more, the learner is the bottleneck. `--profile` prints where the time of the
largest batch goes (cProfile, by own time).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

import numpy as np

import nets
from agents import Rollout, join, make_agent
from envs import make_env
from nets import backend
from workbench.rl import TrainConfig


def _rollout(rng, agent, t_max: int, envs: int, actor: int) -> Rollout:
    shape, n = agent.observation_shape, agent.n_actions
    obs_dtype = np.uint8 if len(shape) == 3 else np.float32
    draw = (lambda *s: rng.integers(0, 256, s, dtype=np.uint8)) if obs_dtype == np.uint8 else \
        (lambda *s: rng.standard_normal(s).astype(np.float32))
    return Rollout(obs=draw(t_max, envs, *shape), actions=rng.integers(0, n, (t_max, envs)),
                   log_probs=np.full((t_max, envs), -np.log(n), np.float32),
                   rewards=rng.standard_normal((t_max, envs)).astype(np.float32),
                   terminated=np.zeros((t_max, envs), bool),
                   truncated=_last_row(t_max, envs),
                   final_obs=draw(envs, *shape), final_index=np.stack([np.full(envs, t_max - 1), np.arange(envs)], 1),
                   actor=actor)


def _last_row(t_max: int, envs: int) -> np.ndarray:
    """Every env's episode runs on past the rollout: its last step bootstraps from final_obs."""
    cut = np.zeros((t_max, envs), bool)
    cut[-1] = True
    return cut


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="ALE/Pong-v5")
    parser.add_argument("--agent", default="a3c")
    parser.add_argument("--device", default="cpu", choices=backend.DEVICES)
    parser.add_argument("--rollouts", default="1,4,15", help="rollouts per update (comma-separated)")
    parser.add_argument("--updates", type=int, default=50, help="timed updates per batch size")
    parser.add_argument("--profile", action="store_true", help="profile the largest batch")
    args = parser.parse_args(argv)
    try:
        backend.check_device(args.device)
        sizes = [int(n) for n in args.rollouts.split(",")]
    except ValueError as error:
        parser.error(str(error))
    config = TrainConfig(env=args.env, agent=args.agent)
    env = make_env(args.env)
    nets.seed(0)
    agent = make_agent(args.agent, env.observation_space, env.action_space, config.agent_settings(),
                       device=args.device)
    env.close()
    t_max, envs = agent.rollout_length or 1, config.resolved_envs_per_actor
    host = np.empty(len(agent.network.flat()), np.float32)  # the shared segment's stand-in
    rng = np.random.default_rng(0)
    print(f"{args.agent} on {args.env}, learner on the {args.device}: {len(host):,} parameters, "
          f"rollouts of {t_max} steps x {envs} envs")

    def update(rollouts):
        agent.update(join(rollouts), 0.0)
        backend.copy_to_host(host, agent.network.flat().data)

    for n in sizes:
        rollouts = [_rollout(rng, agent, t_max, envs, i) for i in range(n)]
        for _ in range(3):
            update(rollouts)
        start = time.perf_counter()
        for _ in range(args.updates):
            update(rollouts)
        seconds = (time.perf_counter() - start) / args.updates
        print(f"  {n:3d} rollouts ({n * t_max * envs:5d} steps): {seconds * 1e3:7.2f} ms/update, "
              f"{n * t_max * envs / seconds:9,.0f} env steps/s")
    if args.profile:
        rollouts = [_rollout(rng, agent, t_max, envs, i) for i in range(sizes[-1])]
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(args.updates):
            update(rollouts)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
