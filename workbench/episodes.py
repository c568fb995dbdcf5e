"""Playing whole episodes with a trained network: what `workbench play` and the evaluation process
during training share.

A run's checkpoint and its config rebuild the same env (without the learning-only Atari wrappers:
whole games, real score) and the same network. Acting is greedy or sampled, as the agent's
`play_policy` says (Q agents sample epsilon-greedy with epsilon 0.05, the DQN evaluation
protocol; a Gaussian policy's greedy action is its mean).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import nets
from agents import make_agent
from envs import LONGEST_EPISODE, EnvError, make_env
from nets import backend, checkpoint

from .runs import CONFIG, RunDir, describe, read_json


class Player:
    """Chooses actions for one env with the agent's play policy (`Agent.play_policy`), which
    carries a recurrent network's state through an episode."""

    def __init__(self, agent, greedy: bool, rng: np.random.Generator):
        self.policy = agent.play_policy(greedy, rng)

    def reset(self) -> None:
        """Start of an episode: a recurrent network's state goes back to zero."""
        self.policy.episodes_ended(np.ones(1, bool))

    def act(self, obs: np.ndarray):
        """An action: an int, or a float32 vector for continuous actions."""
        action = self.policy.act(np.asarray(obs)[None], 0)[0][0]
        return action if action.ndim else int(action)


class LoadError(ValueError):
    """A run folder or checkpoint that cannot be loaded, in one line."""


def find_checkpoint(target) -> tuple[Path, dict | None, Path | None]:
    """(checkpoint file, the run's config or None, run folder or None) for a run folder (or its
    config.json, as --resume takes it), a checkpoint file, or a checkpoint path without its .npz
    suffix."""
    path = Path(target)
    if path.name == CONFIG and path.is_file():
        path = path.parent
    if path.is_dir():
        run = RunDir.existing(path)
        latest = run.latest_checkpoint()
        if latest is None:
            raise LoadError(f"{path} has no checkpoint yet (checkpoints/latest.npz)")
        return latest, run.read_config(), run.path
    if not path.is_file() and path.suffix != ".npz" and path.with_name(path.name + ".npz").is_file():
        path = path.with_name(path.name + ".npz")
    if not path.is_file():
        raise LoadError(f"no run folder or checkpoint at {target}")
    folder = path.resolve().parent.parent  # RUN/checkpoints/FILE.npz
    if (folder / CONFIG).is_file():
        return path, read_json(folder / CONFIG), folder
    return path, None, None


def check_match(path: Path, saved: dict | None, meta: dict, config: dict, folder: Path) -> None:
    """A checkpoint from another env, agent or network than its run folder's config: one line."""
    if saved is not None:
        same = describe(saved) == describe(config)
        trained = describe(saved)
    else:  # an older checkpoint: it names its env and agent only
        same = meta.get("env", config.get("env")) == config.get("env") and \
            meta.get("agent", config.get("agent")) == config.get("agent")
        trained = f"{meta.get('env')} ({meta.get('agent')})"
    if not same:
        raise LoadError(f"{path} was trained on {trained}, but {folder / 'config.json'} is for "
                        f"{describe(config)}; play it from its own run folder")


def build(config: dict, render: bool = False, seed: int | None = None):
    """(env, agent) from a run's saved config: the evaluation env (whole games, real rewards)
    and an agent whose `model` a checkpoint of that run loads into."""
    from workbench.rl import TrainConfig  # late: workbench.rl imports the actor system

    train_config = TrainConfig.from_dict(config)
    options = dict(train_config.env_options)
    if render:
        options["render_mode"] = "rgb_array"
    try:
        env = make_env(train_config.env, seed=seed, training=False, **options)
    except ImportError as error:  # e.g. CartPole's renderer needs pygame
        raise LoadError(f"rendering {train_config.env} needs {error.name}: "
                        f"pip install \"gymnasium[classic-control]\"") from None
    except TypeError as error:  # a user's env function or class that takes no render_mode; the
        # cause is the env's own error, without gymnasium.make's addition of the keywords it passed
        raise LoadError(f"recording {train_config.env} needs its env to take render_mode=\"rgb_array\" "
                        f"({error.__cause__ or error})") from None
    agent = make_agent(train_config.agent, env.observation_space, env.action_space,
                       train_config.agent_settings())
    return env, agent


@dataclass
class Restored:
    """A trained run, ready to play: the evaluation env, the agent with the checkpoint's weights."""

    env: object
    agent: object
    config: dict  # the run's config.json
    checkpoint: Path
    step: int  # env steps the checkpoint was trained for


def restore(target, render: bool = False, seed: int | None = None) -> Restored:
    """The run folder or checkpoint `target` (see `find_checkpoint`) rebuilt: its env and its
    agent with the checkpoint's weights; LoadError (one line) where it cannot be."""
    path, config, folder = find_checkpoint(target)
    if config is not None and "recipe" in config:
        raise LoadError(f"{folder} is a run of `workbench recipe {config['recipe']}`; play and load take "
                        f"runs of `workbench train`")
    meta = checkpoint.read(path)[0]["meta"]
    if not isinstance(meta, dict):
        raise LoadError(f"{path} holds no run metadata (its meta is a {type(meta).__name__}); it was not "
                        f"written by workbench train")
    saved = meta.get("config")
    if config is None:
        if saved is None:
            raise LoadError(f"{path} is not inside a run folder and holds no config; pass its run folder")
        config, folder = saved, path.parent
    else:
        check_match(path, saved, meta, config, folder)
    env, agent = build(config, render=render, seed=seed)
    try:
        checkpoint.load(path, agent.model)
    except checkpoint.CheckpointError as error:
        reason = str(error).removeprefix(f"{path}: ").removeprefix(f"{path} ")
        raise LoadError(f"{path} does not fit the network of {describe(config)}: {reason}") from None
    if not np.isfinite(backend.to_host(agent.network.flat().data)).all():
        raise LoadError(f"{path} holds non-finite weights (NaN or Inf): play an earlier checkpoint of the "
                        f"run, checkpoints/step-*.npz")
    return Restored(env, agent, config, path, int(meta.get("step", 0)))


def play_episodes(env, player: Player, episodes: int, max_steps: int | None = None,
                  on_frame: Callable[[np.ndarray], None] | None = None,
                  on_episode: Callable[[int, float, int], None] | None = None,
                  should_stop: Callable[[], bool] = lambda: False) -> list[tuple[float, int]]:
    """(return, length) of `episodes` episodes; an episode stops at `max_steps` steps if given, else
    at LONGEST_EPISODE (an env without a time limit played one episode forever).
    `on_frame` gets env.render() after the reset and after every step (an env made with
    render_mode="rgb_array"). `should_stop` is asked before every step: when it answers True, the
    episodes played to their end so far are returned."""
    results = []
    for episode in range(episodes):
        obs, _ = env.reset()
        player.reset()
        if on_frame:
            on_frame(env.render())
        total, steps, done = 0.0, 0, False
        while not done and steps < (max_steps or LONGEST_EPISODE):
            if should_stop():
                return results
            obs, reward, terminated, truncated, info = env.step(player.act(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if on_frame:
                on_frame(env.render())
        results.append((total, steps))
        if on_episode:
            on_episode(episode, total, steps)
    return results


class Evaluator:
    """Evaluation during training: a low-priority process that plays `episodes` whole episodes
    with a copy of the learner's weights every `every` env steps, and hands back
    eval/episodic_return and eval/episodic_length for TensorBoard.

    `tick(step, weights)` is cheap and called from the learner's loop: it collects finished
    results and, when a multiple of `every` has been passed and the previous evaluation is done,
    sends the weights (one copy). A slow evaluation skips evaluation points rather than queueing
    them. The process runs at nice 10, so it takes the cores only when actors and learner leave
    them idle.
    """

    def __init__(self, config: dict, every: int, episodes: int, seed: int,
                 report: Callable[[int, list[tuple[float, int]]], None], failed: Callable[[str], None],
                 first_step: int = 0):
        import multiprocess as mp

        from actors.local import child_process

        ctx = mp.get_context("forkserver")
        self.conn, child = ctx.Pipe(duplex=True)
        self.process = child_process(ctx, _evaluate, (config, episodes, seed, child, os.getcwd()), "evaluator")
        with nets.threads.for_children(1):  # the fork server may start here (inline backend)
            self.process.start()
        child.close()
        self.every, self.report, self.failed, self.busy = every, report, failed, False
        self.next = (first_step // every + 1) * every

    def tick(self, step: int, weights: np.ndarray) -> None:
        """An evaluation process that died (killed from outside), or whose env failed (`failed`
        gets the reason), ends evaluation, not training."""
        try:
            while self.conn.poll(0):
                done_step, results = self.conn.recv()
                if isinstance(results, str):
                    self.busy, self.next = True, float("inf")
                    self.failed(results)
                    return
                self.busy = False
                self.report(done_step, results)
            if step >= self.next:
                if not self.busy and self.process.is_alive():
                    self.conn.send((step, backend.to_host(weights).copy()))
                    self.busy = True
                self.next = (step // self.every + 1) * self.every
        except (EOFError, OSError):
            self.busy, self.next = True, float("inf")

    def stop(self) -> None:
        """Ends the process at once: an evaluation still running is dropped."""
        self.process.kill()
        self.process.join(timeout=2.0)
        self.conn.close()


def _evaluate(config: dict, episodes: int, seed: int, conn, working_dir: str) -> None:
    """The evaluation process: wait for weights, play, send (step, [(return, length), ...]).
    It works in the learner's `working_dir`, as actors do (ActorSpec)."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group: the learner
        signal.signal(signum, signal.SIG_IGN)        # decides when to stop
    os.nice(10)
    os.chdir(working_dir)
    env, agent = build(config)
    weights = agent.network.flat().data
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0xE7A1]))
    player = Player(agent, greedy=False, rng=rng)
    step = None
    try:
        while True:
            step, published = conn.recv()
            np.copyto(weights, published)
            env.reset(seed=int(rng.integers(2**31)))
            conn.send((step, play_episodes(env, player, episodes)))
    except (EOFError, OSError):
        pass  # the learner closed the pipe
    except EnvError as error:  # the learner says it in one line (it was a traceback amid the progress)
        conn.send((step, str(error)))
