"""A3C-LSTM: the actor carries the LSTM state and zeroes it at episode ends, rollouts carry their
initial state, and the learner's unroll reproduces what the actor computed step by step."""
import numpy as np
import pytest

import nets
from actors.collector import Collector
from agents import join, make_agent, make_config
from envs import make_env


@pytest.fixture
def agent():
    nets.seed(0)
    env = make_env("CartPole-v1")
    return make_agent("a3c-lstm", env.observation_space, env.action_space,
                      make_config("a3c-lstm", {"lstm_size": 8, "hidden": (16,)}))


class Recording:
    """Wraps a policy, keeping the logits of every act from the state the policy held."""

    def __init__(self, policy, network):
        self.policy, self.network, self.logits = policy, network, []

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def act(self, obs, step):
        state = self.policy.state or self.network.zero_state(len(obs))
        with nets.no_grad():
            logits, _, _ = self.network.step(obs, state)
        self.logits.append(logits.data)
        return self.policy.act(obs, step)


def test_the_learner_unroll_matches_the_actor_step_by_step(agent):
    # episodes of 3 steps end inside rollouts of 5: the state must be zeroed where they do
    envs = [make_env("CartPole-v1", seed=s, max_episode_steps=3) for s in (1, 2)]
    policy = Recording(agent.policy(0, np.random.default_rng(0)), agent.network)
    collector = Collector(envs, policy)
    first = collector.collect(5, step=0)
    np.testing.assert_array_equal(first.initial_state[0], 0)  # a new actor starts from zeros
    second = collector.collect(5, step=10)
    assert np.abs(second.initial_state[0]).sum() > 0  # carried over from the first rollout
    assert (first.terminated | first.truncated)[2].all()  # episodes ended at t = 2

    for rollout, acted in ((first, policy.logits[:5]), (second, policy.logits[5:])):
        batch = join([rollout])
        starts = np.zeros(batch.rewards.shape, bool)
        starts[1:] = (batch.terminated | batch.truncated)[:-1]
        with nets.no_grad():
            logits, _, _ = agent.network.unroll(batch.obs, batch.initial_state, starts)
        np.testing.assert_allclose(logits.data, np.concatenate(acted), rtol=1e-5, atol=1e-6)


def test_episode_ends_zero_only_their_envs_state(agent):
    policy = agent.policy(0, np.random.default_rng(0))
    policy.act(np.ones((3, 4), np.float32), 0)
    h, c = policy.recurrent_state(3)
    assert np.abs(h).min() > 0
    policy.episodes_ended(np.array([False, True, False]))
    h2, c2 = policy.recurrent_state(3)
    assert not h2[1].any() and not c2[1].any()
    np.testing.assert_array_equal(h2[[0, 2]], h[[0, 2]])


def test_rollouts_join_their_states_along_envs_and_the_update_moves_the_weights(agent):
    envs = [make_env("CartPole-v1", seed=s) for s in range(3)]
    collectors = [Collector(envs[:2], agent.policy(0, np.random.default_rng(0))),
                  Collector(envs[2:], agent.policy(1, np.random.default_rng(1)))]
    rollouts = [c.collect(5, step=0) for c in collectors for _ in range(2)][1::2]  # non-zero states
    batch = join(rollouts)
    assert batch.initial_state[0].shape == (3, 8)
    np.testing.assert_array_equal(batch.initial_state[1][2], rollouts[1].initial_state[1][0])
    before = agent.network.flat().data.copy()
    stats = agent.update(batch, 0.0)
    assert np.isfinite(stats["policy_loss"]) and stats["grad_norm"] > 0
    assert not np.array_equal(before, agent.network.flat().data)
    with pytest.raises(ValueError, match="initial LSTM state"):
        agent.update(join([collectors[0].collect(5, 0)]).__class__(
            **{**vars(batch), "initial_state": None}), 0.0)
