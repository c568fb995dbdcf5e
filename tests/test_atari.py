"""Atari preprocessing on real ALE games (skipped without ale-py), the conv networks, and the
clear error when ale-py is missing."""
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ale_py")

from agents import make_agent, make_config  # noqa: E402
from agents.networks import make_trunk  # noqa: E402
from envs import UnknownEnvError, make_env  # noqa: E402
from envs.atari import FireOnReset  # noqa: E402


def test_observations_are_four_stacked_84x84_uint8_frames():
    env = make_env("ALE/Breakout-v5", seed=0)
    obs, _ = env.reset()
    assert env.observation_space.shape == obs.shape == (4, 84, 84)
    assert env.observation_space.dtype == obs.dtype == np.uint8
    frames = [obs]
    for action in (1, 2, 2, 3, 3, 0):
        frames.append(env.step(action)[0])
    last = frames[-1]
    assert last.dtype == np.uint8 and last.shape == (4, 84, 84)
    # the stack shifts by one frame per step: the newest three of a step are the oldest three next
    np.testing.assert_array_equal(frames[-2][1:], last[:3])
    assert last.max() > 0 and not np.array_equal(last[0], last[3])


def test_same_seed_same_frames():
    a, b = make_env("ALE/Breakout-v5", seed=3), make_env("ALE/Breakout-v5", seed=3)
    for env in (a, b):
        env.reset()
    for action in [1, 2, 3, 0, 2] * 4:
        np.testing.assert_array_equal(a.step(action)[0], b.step(action)[0])


def play_until_game_over(env, seed, max_steps=20_000):
    """Random actions; per step (reward, terminated, truncated, info), with resets after the
    soft (lost-life) ends, until a real game over."""
    rng = np.random.default_rng(seed)
    env.reset()
    steps = []
    for _ in range(max_steps):
        _, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        steps.append((reward, terminated, truncated, info))
        if "episode" in info:
            return steps
        if terminated or truncated:
            env.reset()
    raise AssertionError("the game did not end")


def test_lost_life_ends_the_learning_episode_not_the_game_and_rewards_are_clipped():
    # Space Invaders: 3 lives, rewards of 5 to 30 points per alien
    training = play_until_game_over(make_env("ALE/SpaceInvaders-v5", seed=1), seed=1)
    lost = [info for _, terminated, _, info in training if terminated and "episode" not in info]
    assert len(lost) == 2 and all(info["life_lost"] for info in lost)
    assert [info["lives"] for info in lost] == [2, 1]
    rewards = [r for r, *_ in training]
    assert set(rewards) <= {0.0, 1.0} and sum(rewards) > 0  # clipped for learning
    episode = training[-1][3]["episode"]
    assert episode["l"] == len(training)  # one game over all lives
    assert episode["r"] > sum(rewards)  # the real score: aliens are worth 5 to 30

    # evaluation: the same game, whole and with the real rewards
    real = play_until_game_over(make_env("ALE/SpaceInvaders-v5", seed=1, training=False), seed=1)
    assert not any(terminated for _, terminated, _, info in real[:-1])
    assert sum(r for r, *_ in real) == real[-1][3]["episode"]["r"] == episode["r"]
    assert not any("life_lost" in info for *_, info in real)


def test_fire_is_pressed_after_reset_and_after_a_lost_life():
    """With NOOPs only, Breakout's ball is never served unless the wrapper fires."""
    fired = make_env("ALE/Breakout-v5", seed=0, training=False, repeat_action_probability=0.0)
    assert any(isinstance(w, FireOnReset) for w in _wrappers(fired))
    fired.reset()
    lives = [fired.step(0)[4]["lives"] for _ in range(400)]
    assert lives[0] == 5 and min(lives) <= 3  # served, missed, served again after the lost life

    import gymnasium as gym
    plain = gym.wrappers.AtariPreprocessing(gym.make("ALE/Breakout-v5", frameskip=1,
                                                     repeat_action_probability=0.0))
    plain.reset(seed=0)
    assert all(plain.step(0)[4]["lives"] == 5 for _ in range(400))


def _wrappers(env):
    while hasattr(env, "env"):
        yield env
        env = env.env


def test_sticky_actions_follow_the_env_id_unless_set():
    assert make_env("ALE/Breakout-v5").unwrapped.ale.getFloat("repeat_action_probability") == 0.25
    env = make_env("ALE/Breakout-v5", repeat_action_probability=0.0)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    with pytest.raises(ValueError, match="frameskip"):
        make_env("ALE/Breakout-v5", frameskip=4)


@pytest.mark.parametrize("trunk,features,params", [
    # weights and biases: conv1 16*4*8*8+16, conv2 32*16*4*4+32, dense 2592*256+256
    ("small", 256, (4112 + 8224 + 663808)),
    ("nature", 512, (8224 + 32832 + 36928 + 3136 * 512 + 512)),
])
def test_conv_trunks_have_the_papers_sizes(trunk, features, params):
    module = make_trunk(trunk, (4, 84, 84), (64, 64))
    assert module.out_features == features and len(module.flat()) == params
    out = module(np.full((3, 4, 84, 84), 255, np.uint8))
    assert out.shape == (3, features) and out.data.dtype == np.float32 and (out.data >= 0).all()


def test_agents_pick_the_conv_net_for_frames_and_the_mlp_for_vectors():
    atari = make_env("ALE/Breakout-v5")
    a3c = make_agent("a3c", atari.observation_space, atari.action_space, make_config("a3c"))
    assert type(a3c.network.trunk).__name__ == "ConvTrunk"
    logits, values = a3c.network(np.zeros((2, 4, 84, 84), np.uint8))
    assert logits.shape == (2, 4) and values.shape == (2, 1)
    q = make_agent("nstep-q", atari.observation_space, atari.action_space,
                   make_config("nstep-q", {"trunk": "nature"}))
    assert q.network.trunk.out_features == 512
    cartpole = make_env("CartPole-v1")
    mlp = make_agent("a3c", cartpole.observation_space, cartpole.action_space, make_config("a3c"))
    assert type(mlp.network.trunk).__name__ == "MLPTrunk"
    with pytest.raises(ValueError, match="image observations"):
        make_trunk("small", (4,), ())


def test_missing_ale_py_says_how_to_install_it():
    code = ("import sys; sys.modules['ale_py'] = None\n"
            "from envs import make_env\n"
            "make_env('ALE/Breakout-v5')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("envs.make.UnknownEnvError:") and 'pip install -e ".[atari]"' in last
    assert UnknownEnvError.__name__ in last


def test_atari_defaults_to_one_actor_per_core_and_8_envs_for_the_actor_critics(monkeypatch):
    from workbench.rl import TrainConfig

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    breakout = TrainConfig(env="ALE/Breakout-v5")
    assert (breakout.resolved_actors, breakout.resolved_envs_per_actor) == (15, 8)
    saved = breakout.to_dict()
    assert (saved["actors"], saved["envs_per_actor"]) == (15, 8)  # config.json: what ran
    assert TrainConfig(env="ALE/Breakout-v5", agent="nstep-q").resolved_envs_per_actor == 4
    assert TrainConfig(env="ALE/Breakout-v5", actors=3, envs_per_actor=2).to_dict()["actors"] == 3
    assert TrainConfig(env="CartPole-v1").resolved_actors == 2
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert TrainConfig(env="ALE/Breakout-v5").resolved_actors == 2  # never fewer than 2


def test_the_learner_gets_the_cores_its_actors_leave(monkeypatch):
    from workbench.rl import TrainConfig

    monkeypatch.setattr("os.cpu_count", lambda: 16)
    assert TrainConfig(env="ALE/Breakout-v5").learner_threads == 1  # 15 actors
    assert TrainConfig(actors=4).learner_threads == 12
    assert TrainConfig(actors=4, backend="inline").learner_threads == 12
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert TrainConfig(actors=2).learner_threads == 1


def test_an_atari_option_it_does_not_take_names_the_preprocessing_s_own():
    from envs import probe

    with pytest.raises(ValueError, match=r"^--env-option noop: ALE/Pong-v5 takes no such keyword; did you mean "
                                         r"noop_max\? its own: game, mode, .*, frame_stack, noop_max; "):
        probe("ALE/Pong-v5", {"noop": 3})
