"""Stepping E environments with a policy into Rollouts: the body of every actor.

The envs are stepped in a plain loop (no vector-env wrapper): each one is reset when its episode
ends, and the policy sees all E observations in one batched forward pass. Where a return must
bootstrap (an episode truncated by its time limit, or still running when the rollout ends), the
state it bootstraps from is kept in `final_obs`: the learner then needs nothing else.
"""
from __future__ import annotations

import numpy as np

from agents import Policy, Rollout
from envs import LONGEST_EPISODE, EnvError


class Collector:
    """`tracker` (agents.normalize.Tracker, or None) counts each rollout's observations and
    returns for the learner's normalisation statistics."""

    def __init__(self, envs: list, policy: Policy, actor: int = 0, tracker=None):
        self.envs, self.policy, self.actor, self.tracker = envs, policy, actor, tracker
        first = [env.reset()[0] for env in envs]
        self.obs = np.stack(first)
        self.episodes = 0

    def collect(self, length: int | None, step: int, version: int = 0) -> Rollout:
        """`length` steps in every env, or (length None, one env) one whole episode. `step` is the
        run's global env step when the rollout starts (for exploration schedules)."""
        whole_episode = length is None
        if whole_episode and len(self.envs) != 1:
            raise ValueError("whole-episode rollouts take one env per actor")
        E = len(self.envs)
        obs, actions, log_probs, rewards, terminated, truncated, ended = [], [], [], [], [], [], []
        final_obs, final_index, returns, lengths = [], [], [], []
        initial_state = self.policy.recurrent_state(E)
        t = 0
        while whole_episode or t < length:
            current = self.obs.copy()
            chosen, chosen_log_probs = self.policy.act(current, step + t * E)
            last_row = not whole_episode and t == length - 1
            row_r, row_term, row_trunc, row_ended = [], [], [], []
            # continuous actions go to the env as float32 rows, discrete ones as Python ints
            for e, (env, action) in enumerate(zip(self.envs, chosen if chosen.ndim > 1 else chosen.tolist())):
                o, r, term, trunc, info = env.step(action)
                cut = not term and (trunc or last_row)
                row_r.append(r)
                row_term.append(term)
                row_trunc.append(cut)
                row_ended.append(term or trunc)
                if cut:
                    final_obs.append(o)
                    final_index.append((t, e))
                if term or trunc:
                    if "episode" in info:  # absent when a lost life ends an Atari episode for learning only
                        returns.append(float(info["episode"]["r"]))
                        lengths.append(int(info["episode"]["l"]))
                    o, _ = env.reset()
                self.obs[e] = o
            row_ended = np.asarray(row_ended)
            self.policy.episodes_ended(row_ended)
            ended.append(row_ended)
            obs.append(current)
            actions.append(chosen)
            log_probs.append(chosen_log_probs)
            rewards.append(row_r)
            terminated.append(row_term)
            truncated.append(row_trunc)
            t += 1
            if whole_episode and returns:
                break
            if whole_episode and t >= LONGEST_EPISODE:
                raise EnvError(f"an episode has gone on for {t:,} steps without ending, and this agent "
                               f"learns from whole episodes: give the env a time limit with --env-option "
                               f"max_episode_steps=N")
        self.episodes += len(returns)
        shape = self.obs.shape[1:]
        obs, rewards, actions = np.stack(obs), np.asarray(rewards, dtype=np.float32), np.stack(actions)
        final_obs = np.asarray(final_obs, dtype=self.obs.dtype).reshape(-1, *shape)
        _check_finite(step, observation=obs, reward=rewards, bootstrap_observation=final_obs)
        moments = self.tracker.moments(obs, rewards, np.stack(ended)) if self.tracker else {}
        rollout = Rollout(
            obs=obs, actions=actions if actions.dtype == np.float32 else actions.astype(np.int64),
            log_probs=np.stack(log_probs).astype(np.float32), rewards=rewards, moments=moments,
            terminated=np.asarray(terminated, dtype=bool), truncated=np.asarray(truncated, dtype=bool),
            final_obs=final_obs,
            final_index=np.asarray(final_index, dtype=np.int64).reshape(-1, 2),
            initial_state=initial_state, episode_returns=returns, episode_lengths=lengths,
            actor=self.actor, version=version, scalars=self.policy.scalars(step))
        self.policy.rollout_done(rollout)
        return rollout


class NonFiniteEnvValue(EnvError):
    """The env gave a NaN or infinite observation or reward: a new actor would meet it again."""


def _check_finite(step: int, **arrays: np.ndarray) -> None:
    """A one-line NonFiniteEnvValue where the env gave a NaN or infinite value (as float32): the
    losses would turn NaN and the run would seem to diverge, with advice about the learning rate."""
    for what, values in arrays.items():
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise NonFiniteEnvValue(f"the env gave a non-finite {what.replace('_', ' ')} (NaN or inf, as "
                                    f"float32) in the rollout from env step {step:,}; workbench learns "
                                    f"from finite numbers: check the env, or wrap it to replace them")
