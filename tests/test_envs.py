"""make_env: seeding, Gymnasium's episode statistics, options, and unknown ids."""
import numpy as np
import pytest
from gymnasium.spaces import Box

from envs import UnknownEnvError, make_env


def play(env, steps):
    env.reset()
    out = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        out.append(obs)
        if terminated or truncated:
            env.reset()
    return np.array(out)


def test_same_seed_same_episodes_other_seed_others():
    a, b, c = (make_env("CartPole-v1", seed=s) for s in (5, 5, 6))
    np.testing.assert_array_equal(play(a, 50), play(b, 50))
    assert not np.array_equal(play(make_env("CartPole-v1", seed=5), 50), play(c, 50))


def test_episode_statistics_and_gymnasium_options():
    env = make_env("CartPole-v1", seed=0, max_episode_steps=4)
    env.reset()
    for _ in range(4):  # four pushes cannot tip the pole past 12 degrees: the limit ends it
        obs, reward, terminated, truncated, info = env.step(0)
    assert truncated and not terminated
    assert info["episode"]["l"] == 4 and info["episode"]["r"] == 4.0


@pytest.mark.parametrize("typo,match", [("CartPol-v1", "CartPole-v1"), ("cartpole", "CartPole-v1"),
                                        ("MountainCar-v9", "MountainCar-v0")])
def test_unknown_id_is_one_line_with_close_matches(typo, match):
    with pytest.raises(UnknownEnvError) as error:
        make_env(typo)
    message = str(error.value)
    assert "\n" not in message and f"unknown environment id {typo!r}" in message and match in message


def test_unknown_id_without_any_match_points_to_the_registry():
    with pytest.raises(UnknownEnvError, match="pprint_registry"):
        make_env("Zzzzzz-v0")


def test_a_dict_with_a_float32_box_is_flattened_without_warnings():
    """Gymnasium warns that the flattened float64 bounds lose precision in float32: meant here,
    and it printed in the learner and every actor."""
    import warnings

    import gymnasium as gym
    from gymnasium import spaces

    from envs.make import prepare

    class Sensors(gym.Env):
        observation_space = spaces.Dict({"a": spaces.Box(-1, 1, (2,), np.float32), "b": spaces.Discrete(3)})
        action_space = spaces.Discrete(2)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env, _ = prepare(Sensors())
    assert env.observation_space.shape == (5,) and env.observation_space.dtype == np.float32


def test_text_parts_are_left_out_at_any_depth():
    """A Text inside a nested Dict or Tuple was flattened into its characters' indices (ten numbers
    in [0, 62]) while the docs say text parts are left out; only the top level's were."""
    import gymnasium as gym
    from gymnasium import spaces

    from envs.make import prepare

    class Mission(gym.Env):
        observation_space = spaces.Tuple((spaces.Text(5),
                                          spaces.Dict({"goal": spaces.Text(10), "at": spaces.Discrete(3)}),
                                          spaces.Dict({"name": spaces.Text(4)})))
        action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return ("go", {"goal": "door", "at": 2}, {"name": "bob"}), {}

    env, notes = prepare(Mission())
    assert notes[0] == "the observations' text parts (0, 1.goal, 2.name) are left out"
    assert env.observation_space.shape == (3,)
    np.testing.assert_array_equal(env.reset()[0], [0, 0, 1])


@pytest.mark.parametrize("space,message", [
    (Box(0, 10, (2,), np.int64), "has actions Box(0, 10, (2,), int64); workbench's agents learn Discrete or "
                                 "one-dimensional Box actions of floats"),
    (Box(-1, 1, (0,), np.float32), "has actions Box([], [], (0,), float32); workbench's agents learn"),
])
def test_integer_or_empty_box_actions_are_refused_in_one_line(space, message):
    """Gaussian policies sent an integer Box unrounded floats; an empty one made a network with no
    outputs."""
    from envs import UnsupportedEnvError
    from envs.make import check_actions

    with pytest.raises(UnsupportedEnvError) as error:
        check_actions(space, "mine:Levers-v0")
    assert f"environment 'mine:Levers-v0' {message}" in str(error.value)


def test_an_observation_space_with_no_numbers_is_refused_in_one_line():
    """It was numpy's 'cannot reshape array of size 0 into shape (0)', with exit 2."""
    import gymnasium as gym
    from gymnasium import spaces

    from envs import UnsupportedEnvError
    from envs.make import prepare

    class Blind(gym.Env):
        observation_space = spaces.Box(0, 1, (0,), np.float32)
        action_space = spaces.Discrete(2)

    with pytest.raises(UnsupportedEnvError, match=r"^the observation space Box\(\[\], \[\], \(0,\), float32\) holds "
                                                  r"no numbers; workbench learns from Box, Discrete"):
        prepare(Blind())


def test_a_uint8_grid_that_is_no_image_is_flattened():
    """Pixels are uint8 in [0, 255] (stable-baselines3's rule too): a board of 0, 1 and 2 was taken
    for an image and its resizing failed on the bounds, so the env could not train at all."""
    import gymnasium as gym
    from gymnasium import spaces

    from envs.make import prepare

    class Board(gym.Env):
        observation_space = spaces.Box(0, 2, (3, 3), np.uint8)
        action_space = spaces.Discrete(9)

    env, notes = prepare(Board())
    assert env.observation_space.shape == (9,) and notes == ["observations Box(0, 2, (3, 3), uint8) are flattened "
                                                             "to vectors of 9"]
