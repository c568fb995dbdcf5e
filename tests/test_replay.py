"""The replay memory: every sampleable step and its n-step return against the env's own
transitions (frame stacks across episode boundaries, wrap-around eviction), n-step returns by
hand, the sum tree's sampling frequencies (chi-square), importance weights by hand."""
import re

import gymnasium as gym
import numpy as np
import pytest

from actors.collector import Collector
from agents import Policy
from agents.replay import FINAL, VALID, ReplayMemory
from envs import make_env

F_, T_ = False, True


class RandomPolicy(Policy):
    def __init__(self, n_actions, seed=0):
        self.n, self.rng = n_actions, np.random.default_rng(seed)

    def act(self, obs, step):
        return self.rng.integers(self.n, size=len(obs)), np.full(len(obs), -np.log(self.n), np.float32)


class Recorded(gym.Wrapper):
    """Logs every transition the env makes: (obs, action, reward, terminated, truncated, next obs)."""

    def __init__(self, env):
        super().__init__(env)
        self.log, self.obs = [], None

    def reset(self, **kwargs):
        self.obs, info = self.env.reset(**kwargs)
        return self.obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.log.append((self.obs, action, float(reward), terminated, truncated, obs))
        self.obs = obs
        return obs, reward, terminated, truncated, info


def fill(memory, envs, lengths, actor=0, seed=0):
    """Collect rollouts of the given lengths into `memory`; returns, per env, (slot, stamp) of
    each of its steps in order (the slots a call writes, in stamp order, less final states)."""
    collector = Collector(envs, RandomPolicy(envs[0].action_space.n, seed), actor=actor)
    slots = [[] for _ in envs]
    for length in lengths:
        r = collector.collect(length, 0)
        finals = {}
        for (t, e), state in zip(r.final_index.tolist(), r.final_obs):
            finals.setdefault(e, {})[t] = state
        for e in range(len(envs)):
            clock = int(memory.state[2])
            memory.add((actor, e), r.obs[:, e], r.actions[:, e], r.rewards[:, e], r.terminated[:, e],
                       r.truncated[:, e], finals.get(e))
            written = np.flatnonzero(memory.stamps >= clock)
            written = written[np.argsort(memory.stamps[written])]
            slots[e] += [(int(s), int(memory.stamps[s])) for s in written if not memory.flags[s] & FINAL]
    return slots


def expected(log, j, n, gamma):
    """(obs, action, n-step return, discount, bootstrap state) of logged step j."""
    total, scale = 0.0, 1.0
    for k in range(n):
        obs, action, reward, terminated, truncated, after = log[j + k]
        total += scale * reward
        scale *= gamma
        if terminated:
            return log[j][0], log[j][1], total, 0.0, None
        if truncated or k == n - 1:
            return log[j][0], log[j][1], total, scale, after


def check_against_logs(memory, envs, slots, n, gamma):
    """Every sampleable step gathers as its env made it (a slot written more than once, as its
    last writer's); returns how many were checked."""
    owner = {slot: (e, j) for e, env_slots in enumerate(slots) for j, (slot, stamp) in enumerate(env_slots)
             if memory.stamps[slot] == stamp}
    checked = 0
    for slot, (e, j) in owner.items():
        if not memory.flags[slot] & VALID:
            continue
        batch = memory.gather(np.array([slot]))
        obs, action, ret, discount, after = expected(envs[e].log, j, n, gamma)
        np.testing.assert_array_equal(batch["obs"][0], obs)
        assert batch["actions"][0] == action
        assert batch["returns"][0] == pytest.approx(ret)
        assert batch["discounts"][0] == pytest.approx(discount)
        if after is not None:
            np.testing.assert_array_equal(batch["next_obs"][0], after)
        checked += 1
    return checked


def test_steps_and_nstep_returns_equal_the_envs_transitions():
    # 3 CartPole envs (streams interleaved a rollout column at a time) with a 13-step time limit
    # (truncations inside rollouts and at their ends), rollouts of changing length, n = 3
    envs = [Recorded(make_env("CartPole-v1", seed=i, max_episode_steps=13)) for i in range(3)]
    memory = ReplayMemory(100_000, (4,), np.float32, n_step=3, gamma=0.5)
    slots = fill(memory, envs, [5, 1, 13, 7, 20, 3] * 4)
    steps = sum(len(env.log) for env in envs)
    checked = check_against_logs(memory, envs, slots, 3, 0.5)
    assert checked == len(memory) and checked > steps - 3 * 3  # only each env's newest wait
    assert sum(entry[4] for env in envs for entry in env.log) > 10  # time-limit truncations


def test_frame_stacks_equal_the_envs_across_episode_boundaries_and_wrap_around():
    pytest.importorskip("ale_py")
    # Breakout: a lost life ends an episode for learning and a 240-frame (60-step) time limit
    # truncates games; a 400-slot memory wraps around several times
    envs = [Recorded(make_env("ALE/Breakout-v5", seed=i, max_episode_steps=240)) for i in range(2)]
    memory = ReplayMemory(400, (4, 84, 84), np.uint8, stack=4, n_step=2, gamma=0.9)
    assert memory.frames.shape == (400, 84 * 84)  # one frame a step, not four
    slots = fill(memory, envs, [9, 30, 4, 17] * 12)
    assert sum(map(len, slots)) > 2 * 400
    assert check_against_logs(memory, envs, slots, 2, 0.9) > 300
    log = envs[0].log + envs[1].log
    assert sum(entry[3] for entry in log) >= 4 and sum(entry[4] for entry in log) >= 4


@pytest.mark.parametrize("others, sampleable", [(7, [102, 103, 104, 105]), (8, [103, 104, 105, 106])])
def test_a_stalled_stream_never_samples_overwritten_frames(others, sampleable):
    # frames are numbered; stream A sends 2 steps and stalls while B fills the 8-slot ring (7
    # steps: A's newest slot is the next to go; 8: it is gone), then A's episode goes on: its
    # state whose stack reached an overwritten frame is never sampled, nor is B's
    def stacks(frames):  # states of one episode, newest frame last, padded with the first
        padded = [frames[0]] + list(frames)
        return np.array([[[[padded[t]]], [[padded[t + 1]]]] for t in range(len(frames))], np.uint8)

    memory = ReplayMemory(8, (2, 1, 1), np.uint8, stack=2)
    a, b = stacks([10, 11, 12, 13, 14]), stacks(list(range(100, 110)))
    cut = [F_, T_]
    memory.add("A", a[:2], [0, 0], [0, 0], [F_, F_], cut, {1: a[2]})
    memory.add("B", b[:others], [0] * others, [0] * others, [F_] * others, [F_] * (others - 1) + [T_],
               {others - 1: b[others]})
    memory.add("A", a[2:4], [0, 0], [0, 0], [F_, F_], cut, {1: a[4]})
    truth = {int(state[1, 0, 0]): state for state in np.concatenate([a, b])}
    batch = memory.gather(np.flatnonzero(memory.flags & VALID))
    for state, following in zip(batch["obs"], batch["next_obs"]):
        np.testing.assert_array_equal(state, truth[int(state[1, 0, 0])])
        np.testing.assert_array_equal(following, truth[int(following[1, 0, 0])])
    # 12's stack held 11, overwritten by then; the newest of A and B wait for successors
    assert sorted(batch["obs"][:, 1, 0, 0].tolist()) == sampleable


def test_nstep_returns_by_hand():
    # one stream, rewards 1, 2, 4, 8, 16, gamma 0.5, n 2; the episode terminates after step 2,
    # a new one is truncated by its time limit after step 4 (its final state is 9)
    memory = ReplayMemory(20, (1,), np.float32, n_step=2, gamma=0.5)
    obs = np.array([[0], [1], [2], [3], [4]], np.float32)
    memory.add(0, obs, [0, 1, 0, 1, 0], [1, 2, 4, 8, 16], [F_, F_, T_, F_, F_],
               [F_, F_, F_, F_, T_], {4: np.array([9], np.float32)})
    # the last step's cut waits for the next call: the episode may go on from state 9
    assert len(memory) == 3
    memory.add(0, np.array([[5]], np.float32), [1], [32], [T_], [F_])  # not 9: state 9 was final
    assert len(memory) == 6
    valid = np.flatnonzero(memory.flags & VALID)
    batch = memory.gather(valid)
    by_state = {int(s): k for k, s in enumerate(batch["obs"][:, 0])}
    cases = {  # state: (return, discount, bootstrap state)
        0: (1 + 0.5 * 2, 0.25, 2), 1: (2 + 0.5 * 4, 0.0, None), 2: (4, 0.0, None),
        3: (8 + 0.5 * 16, 0.25, 9), 4: (16, 0.5, 9), 5: (32, 0.0, None)}
    for state, (ret, discount, after) in cases.items():
        k = by_state[state]
        assert batch["returns"][k] == ret and batch["discounts"][k] == discount
        if after is not None:
            assert batch["next_obs"][k, 0] == after


def prioritized(priorities, alpha, seed=0):
    """A memory whose len(priorities) one-step episodes have these priorities."""
    n = len(priorities)
    memory = ReplayMemory(n, (1,), np.float32, prioritized=True, alpha=alpha,
                          rng=np.random.default_rng(seed))
    memory.add(0, np.arange(n, dtype=np.float32)[:, None], np.zeros(n), np.zeros(n), np.ones(n, bool),
               np.zeros(n, bool), priorities=np.asarray(priorities) - memory.priority_eps)
    return memory


def test_sum_tree_sampling_frequencies_follow_the_priorities():
    priorities = np.random.default_rng(3).uniform(0.01, 5.0, 37)
    memory = prioritized(priorities, alpha=0.7)
    counts = np.zeros(37)
    for _ in range(400):
        indices, _ = memory.sample_indices(256)
        np.add.at(counts, indices, 1)
    def chi_square(p):
        return ((counts - p * counts.sum()) ** 2 / (p * counts.sum())).sum()

    bar = 67.985  # the chi-square distribution's 99.9% point at 36 degrees of freedom
    assert chi_square(priorities ** 0.7 / (priorities ** 0.7).sum()) < bar
    assert chi_square(priorities / priorities.sum()) > bar  # another alpha is told apart


def test_importance_weights_by_hand():
    # priorities 1, 2, 3, 4 and alpha 1: P = .1, .2, .3, .4; N = 4, beta .5:
    # w = (N P)^-beta = .4^-.5, .8^-.5, 1.2^-.5, 1.6^-.5, over the batch's largest
    memory = prioritized([1.0, 2.0, 3.0, 4.0], alpha=1.0)
    indices, weights = memory.sample_indices(4, beta=0.5)  # stratified: one draw per quarter of the mass
    raw = {0: 0.4 ** -0.5, 1: 0.8 ** -0.5, 2: 1.2 ** -0.5, 3: 1.6 ** -0.5}
    top = max(raw[i] for i in indices.tolist())
    np.testing.assert_allclose(weights, [raw[i] / top for i in indices.tolist()], rtol=1e-6)
    # new priorities move the draws: all mass on slot 2
    memory.update_priorities(np.array([0, 1, 3]), np.zeros(3))
    indices, weights = memory.sample_indices(8, beta=0.5)
    assert set(indices.tolist()) == {2} and np.allclose(weights, 1.0)
    # a new exponent rebuilds the tree from the stored priorities: alpha 0 is uniform
    memory.set_alpha(0.0)
    assert memory.tree[1] == pytest.approx(4.0)


def test_uniform_sampling_skips_steps_still_waiting():
    memory = ReplayMemory(50, (1,), np.float32, n_step=3, rng=np.random.default_rng(0))
    memory.add(0, np.arange(10, dtype=np.float32)[:, None], np.zeros(10), np.ones(10), np.zeros(10, bool),
               np.eye(10, dtype=bool)[9], {9: np.array([99], np.float32)})
    assert memory.size == 10 and len(memory) == 7  # the last 3 wait for what follows state 99
    indices, weights = memory.sample_indices(500)
    assert set(indices.tolist()) == set(range(7)) and (weights == 1).all()
    with pytest.raises(ValueError, match="no complete step"):
        ReplayMemory(5, (1,), np.float32).sample_indices(1)


def test_a_million_atari_steps_fit_well_under_8_gib():
    memory = ReplayMemory(1_000_000, (4, 84, 84), np.uint8, stack=4, prioritized=True)
    assert memory.nbytes < 7 * 2**30  # reserved lazily: pages are only touched when written
    assert "1,000,000 steps" in memory.describe()


@pytest.mark.parametrize("options", [dict(observation_shape=(4,)),
                                     dict(observation_shape=(4, 84, 84), dtype=np.uint8, stack=4, prioritized=True),
                                     dict(observation_shape=(3,), action_size=2, n_step=3)])
def test_bytes_needed_is_what_a_memory_allocates(options):
    assert ReplayMemory.bytes_needed(100, **options) == ReplayMemory(100, **options).nbytes


def test_a_replay_memory_bigger_than_the_machine_is_refused_before_anything_starts(tmp_path, capsys):
    from workbench import cli

    assert cli.main(["train", "--agent", "dqn", "--env", "CartPole-v1", "--set", "buffer_size=10000000000",
                     "--logdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"workbench train: error: dqn's replay memory of 10,000,000,000 steps needs [0-9,.]+ GiB; "
                        r"this machine has [0-9,.]+ GiB available: lower --set buffer_size\n", err), err
    assert list(tmp_path.iterdir()) == []
