"""Atari (ALE) environments with the DQN / A3C preprocessing, built from Gymnasium's wrappers.

From the inside out:
    ALE env, frameskip 1 (AtariPreprocessing skips), sticky actions as the env id says (v5: 0.25)
    AtariPreprocessing  no-op reset (up to 30), skip 4 with a max over the last two frames,
                        84x84 grayscale uint8
    FireOnReset         presses FIRE after a reset and after a lost life, in games that need it
    RecordEpisodeStatistics   the real game: whole games (every life), unclipped score
    training only:
        EpisodicLife    a lost life is `terminated` for learning; the game goes on underneath
        TransformReward sign(reward): rewards clipped to -1, 0, 1
    FrameStackObservation     the last 4 frames, (4, 84, 84) uint8

Gymnasium has no wrapper for fire-on-reset or for life loss as a soft episode end (its
AtariPreprocessing `terminal_on_life_loss` ends the episode for the statistics too), so those two
are here (as in OpenAI Baselines' atari_wrappers). Observations stay uint8; networks scale them.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np

FRAME_STACK = 4
NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84


class FireOnReset(gym.Wrapper):
    """Presses FIRE (then its second action, as Baselines does) after every reset and after every
    lost life, for games that wait for FIRE to (re)start; a policy that never learned to fire
    (its training started each life for it) would otherwise stall until the time limit."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"{env.spec.id if env.spec else env} has no FIRE action to press")
        self.lives = 0

    def _fire(self, obs, info):
        """FIRE, then action 2; returns (obs, reward, terminated, truncated, info) after both."""
        total = 0.0
        for action in (1, 2):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        self.lives = info.get("lives", self.lives)
        return obs, total, terminated, truncated, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        obs, _, terminated, truncated, info = self._fire(obs, info)
        if terminated or truncated:  # a game over within two steps of the start: start over
            obs, info = self.env.reset(**kwargs)
        self.lives = info.get("lives", 0)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = info.get("lives", self.lives)
        if lives < self.lives and not (terminated or truncated):
            obs, extra, terminated, truncated, info = self._fire(obs, info)
            reward = float(reward) + extra
        self.lives = info.get("lives", lives)
        return obs, reward, terminated, truncated, info


class EpisodicLife(gym.Wrapper):
    """A lost life ends the episode for the learner (`terminated`), not for the game: the
    following `reset()` continues the same game from where it was, and only a real game over (or
    the time limit) resets the game. Wrappers inside this one, such as RecordEpisodeStatistics,
    still see whole games; `info["life_lost"]` marks the soft ends."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True
        self.last = None  # (obs, info) to continue from after a lost life

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = info.get("lives", 0)
        if 0 < lives < self.lives and not self.game_over:
            terminated = True
            info = {**info, "life_lost": True}
        self.lives = lives
        self.last = (obs, info)
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        if self.game_over or self.last is None or kwargs.get("seed") is not None:
            obs, info = self.env.reset(**kwargs)
            self.game_over = False
        else:
            obs, info = self.last
            info = {k: v for k, v in info.items() if k not in ("life_lost", "episode")}
        self.lives = info.get("lives", 0)
        return obs, info


def ale_id(env_id: str) -> bool:
    return env_id.startswith("ALE/")


OWN_OPTIONS = ("frame_stack", "noop_max")  # make_atari's keywords; the rest go to gymnasium.make
FIXED_OPTIONS = ("frameskip", "obs_type")  # ALE's keywords the preprocessing sets itself


def make_atari(env_id: str, *, training: bool = True, frame_stack: int = FRAME_STACK,
               noop_max: int = NOOP_MAX, **options) -> gym.Env:
    """The preprocessed env (see the module docstring). `options` go to `gymnasium.make`, e.g.
    `repeat_action_probability=0.0` (no sticky actions) or `render_mode="rgb_array"` (real game
    frames from `env.render()`). `training=False` (evaluation, play) keeps lives and the true
    reward in every step, as in the game."""
    options.setdefault("disable_env_checker", True)
    # The preprocessing reads the screen itself; a grayscale frame per emulator frame is the
    # cheapest observation it accepts (RGB costs ~5% of the frame rate).
    options.setdefault("obs_type", "grayscale")
    if options.pop("frameskip", 1) != 1:
        raise ValueError("Atari frame skipping is done by the preprocessing (4, max over the last "
                         "two frames); leave the env's frameskip option out")
    env = gym.make(env_id, frameskip=1, **options)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=noop_max, frame_skip=FRAME_SKIP,
                                          screen_size=SCREEN_SIZE, terminal_on_life_loss=False,
                                          grayscale_obs=True, scale_obs=False)
    meanings = env.unwrapped.get_action_meanings()
    if len(meanings) >= 3 and meanings[1] == "FIRE":
        env = FireOnReset(env)
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if training:
        env = EpisodicLife(env)
        env = gym.wrappers.TransformReward(env, lambda r: float(np.sign(r)))
    return gym.wrappers.FrameStackObservation(env, frame_stack)
