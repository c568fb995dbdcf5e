"""SAC: the squashed Gaussian's log-probability and gradients, the soft target and the
temperature's step by hand, Polyak averaging, a short Pendulum run, resume, and refusals."""
import math

import numpy as np
import pytest

import nets
from agents import make_agent, make_config
from agents.sac import SquashedSample, soft_targets
from envs import make_env
from nets import F, Tensor, checkpoint
from nets.gradcheck import gradcheck
from workbench.rl import TrainConfig, train

from test_train_cli import workbench


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_the_squashed_log_probability_is_the_gaussian_one_with_tanhs_change_of_variables(rng):
    mean, log_std, noise = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)) * 0.3, rng.normal(size=(5, 2))
    scale, bias = np.array([2.0, 0.5]), np.array([0.0, 1.0])
    action, log_prob = SquashedSample(noise, scale, bias)(Tensor(mean), Tensor(log_std))
    u = mean + np.exp(log_std) * noise
    gaussian = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    np.testing.assert_allclose(action.data, np.tanh(u) * scale + bias, rtol=1e-12)
    np.testing.assert_allclose(log_prob.data, (gaussian - np.log(scale * (1 - np.tanh(u) ** 2) + 1e-6)).sum(axis=1),
                               rtol=1e-10)


def test_the_squashed_sample_gradient(rng):
    mean, log_std = (Tensor(rng.normal(size=(6, 3)) * 0.5, requires_grad=True) for _ in range(2))
    op_args = (rng.normal(size=(6, 3)), np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 0.5]))
    weights, row_weights = Tensor(rng.normal(size=(6, 3))), Tensor(rng.normal(size=6))

    def objective():  # both outputs reach the loss, as in the actor's
        action, log_prob = SquashedSample(*op_args)(mean, log_std)
        return F.sum(action * weights) + F.sum(log_prob * row_weights)
    gradcheck(objective, [mean, log_std])


def test_the_soft_target_by_hand():
    y = soft_targets(np.array([1.0, 0.5], np.float32), np.array([0.9, 0.0], np.float32),
                     np.array([2.0, 7.0]), np.array([3.0, 1.0]), np.array([-1.5, 4.0]), alpha=0.2)
    np.testing.assert_allclose(y, [1.0 + 0.9 * (2.0 + 0.2 * 1.5), 0.5], rtol=1e-6)  # terminal: r alone


def sac_agent(**settings):
    env = make_env("Pendulum-v1")
    settings = {"hidden": [16], "batch_size": 8, "learning_starts": 0, **settings}
    return make_agent("sac", env.observation_space, env.action_space, make_config("sac", settings))


def memory_sample(rng, batch=8):
    return {"obs": rng.normal(size=(batch, 3)).astype(np.float32),
            "next_obs": rng.normal(size=(batch, 3)).astype(np.float32),
            "actions": rng.uniform(-2, 2, (batch, 1)).astype(np.float32),
            "returns": rng.normal(size=batch).astype(np.float32), "discounts": np.full(batch, 0.99, np.float32)}


def test_a_gradient_step_moves_the_temperature_towards_the_target_entropy_and_polyak_averages(rng):
    nets.seed(0)
    agent = sac_agent(tau=0.25, lr=1e-3, alpha_init=0.5)
    log_alpha = float(agent.temperature.log_alpha.data[0])
    target, critic_before = agent.target.flat().data.copy(), agent.critic.flat().data.copy()
    assert np.array_equal(target, critic_before)
    policy_before = agent.network.flat().data.copy()
    stats = agent.gradient_step(memory_sample(rng), None)
    # alpha_loss = -log alpha (mean log pi + target entropy): its gradient in log alpha is -gap, and
    # Adam's first step moves log alpha by lr against that gradient's sign
    gap = stats["alpha_loss"] / -log_alpha
    assert float(agent.temperature.log_alpha.data[0]) == pytest.approx(log_alpha + 1e-3 * np.sign(gap), abs=1e-6)
    critic_after = agent.critic.flat().data
    assert not np.array_equal(critic_after, critic_before)
    np.testing.assert_allclose(agent.target.flat().data, 0.75 * target + 0.25 * critic_after, rtol=1e-5, atol=1e-7)
    assert not np.array_equal(agent.network.flat().data, policy_before)
    for name in ("qf1_loss", "qf2_loss", "actor_loss", "alpha", "alpha_loss", "q_values"):
        assert np.isfinite(stats[name]), name


def test_a_fixed_temperature_is_not_learned(rng):
    nets.seed(0)
    agent = sac_agent(alpha=0.1)
    stats = agent.gradient_step(memory_sample(rng), None)
    assert stats["alpha"] == pytest.approx(0.1) and "alpha_loss" not in stats


def test_actions_stay_inside_the_bounds_and_are_random_before_learning_starts(rng):
    nets.seed(0)
    agent = sac_agent(learning_starts=100)
    obs = rng.normal(size=(500, 3)).astype(np.float32)
    acting = agent.policy(0, np.random.default_rng(0))
    early, _ = acting.act(obs, 0)
    late, _ = acting.act(obs, 100)
    greedy, _ = agent.play_policy(True, np.random.default_rng(0)).act(obs, 0)
    for actions in (early, late, greedy):
        assert actions.dtype == np.float32 and (np.abs(actions) <= 2).all()
    assert early.std() > 1.0 > late.std()  # uniform on [-2, 2] against the initial policy's tanh samples


@pytest.mark.slow
def test_a_short_pendulum_run_improves_clearly_over_random(tmp_path):
    """Random play scores about -1,200 an episode on Pendulum-v1."""
    config = TrainConfig(env="Pendulum-v1", agent="sac", actors=1, steps=6000, backend="inline", seed=0,
                         logdir=str(tmp_path), agent_config={"hidden": [64, 64], "batch_size": 64,
                                                             "learning_starts": 1000, "lr": 1e-3})
    result = train(config, console=lambda line: None)
    last = list(result.progress.recent_returns)[-5:]
    assert np.mean(last) > -700, last


def test_resume_restores_networks_targets_temperature_and_optimizers(tmp_path):
    settings = {"hidden": [16], "batch_size": 16, "learning_starts": 64, "t_max": 8}
    config = TrainConfig(env="Pendulum-v1", agent="sac", actors=1, steps=400, backend="inline",
                         logdir=str(tmp_path), agent_config=settings)
    first = train(config, name="sac", console=lambda line: None, should_stop=lambda p: p.step >= 200)
    header, arrays = checkpoint.read(first.run.checkpoint_path())
    names = set(arrays)
    for part in ("model/policy.", "model/critic.", "model/target.", "model/temperature.log_alpha"):
        assert any(name.startswith(part) for name in names), part
    steps = int(arrays["optimizer/policy.steps"])
    assert steps == int(arrays["optimizer/critic.steps"]) == int(arrays["optimizer/temperature.steps"]) > 0
    lines = []
    second = train(config, resume=first.run, console=lines.append)
    assert any("replay memory is not kept" in line for line in lines)
    assert second.outcome == "finished" and second.progress.step >= 400
    _, arrays = checkpoint.read(second.run.checkpoint_path())
    assert int(arrays["optimizer/policy.steps"]) > steps


def test_discrete_actions_and_gradients_on_actors_are_refused_in_one_line(tmp_path):
    result = workbench("train", "--agent", "sac", "--logdir", str(tmp_path))
    assert result.returncode == 2 and result.stderr.startswith(
        "workbench train: error: agent sac needs continuous (Box) actions; for discrete actions use a3c")
    result = workbench("train", "--env", "Pendulum-v1", "--agent", "sac", "--gradients-on", "actors",
                       "--logdir", str(tmp_path))
    assert result.returncode == 2 and "sac computes its gradients on the learner" in result.stderr


@pytest.mark.gpu
def test_gpu_sac_gradient_steps_match_cpu(rng):
    """`--agent sac --device gpu`: ten gradient steps from the same samples on each device give
    the same statistics and policy, critic, target and temperature."""
    from nets import backend

    samples = [memory_sample(rng) for _ in range(10)]
    env = make_env("Pendulum-v1")
    config = make_config("sac", {"hidden": [16], "batch_size": 8, "learning_starts": 0})
    results = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        agent = make_agent("sac", env.observation_space, env.action_space, config, device=device)
        stats = [agent.gradient_step(s, None) for s in samples]
        results.append((stats[-1], [backend.to_host(m.flat().data) for m in
                                    (agent.network, agent.critic, agent.target, agent.temperature)]))
    (cpu_stats, cpu_arrays), (gpu_stats, gpu_arrays) = results
    for key, value in cpu_stats.items():
        assert gpu_stats[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    for cpu, gpu in zip(cpu_arrays, gpu_arrays):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5)
