"""PPO: the clipped objective against hand computation and finite differences, the update's
minibatches, advantage normalisation and target-KL stop, synchronous and asynchronous learning,
a CartPole learning check with the CLI defaults, resume, and the one-line refusals."""
import numpy as np
import pytest

import nets
from actors import ActorSpec, InlineActors, Learner
from agents import make_agent, make_config
from agents import ppo as ppo_module
from agents.ppo import ClippedSurrogateLoss
from envs import make_env
from nets import Tensor, checkpoint
from nets.gradcheck import gradcheck
from workbench.rl import TrainConfig, train

from test_train_cli import workbench


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def surrogate(*inputs, **options):
    values = dict(actions=options["actions"], old_log_probs=options["old"], advantages=options["advantages"],
                  returns=options["returns"], old_values=options.get("old_values"), clip_range=0.2,
                  value_clip=options.get("value_clip"), entropy_beta=0.05, value_coef=0.5)
    op = ClippedSurrogateLoss(**values)
    return op(*inputs), op


def test_the_clipped_objective_matches_hand_computation():
    logits = np.array([[0.0, 0.0], [np.log(3.0), 0.0], [0.0, np.log(3.0)]])
    p = np.array([[0.5, 0.5], [0.75, 0.25], [0.25, 0.75]])
    actions = np.array([0, 0, 0])
    old = np.log(np.array([0.5, 0.5, 0.5]))  # ratios 1, 1.5 (above 1.2), 0.5 (below 0.8)
    advantages = np.array([1.0, 2.0, -1.0])
    returns, values = np.array([1.0, 0.0, 2.0]), np.array([[0.0], [1.0], [2.0]])
    loss, op = surrogate(Tensor(logits), Tensor(values), actions=actions, old=old, advantages=advantages,
                         returns=returns)
    ratio = p[:, 0] / 0.5
    objective = np.minimum(ratio * advantages, np.clip(ratio, 0.8, 1.2) * advantages)  # 1, 2.4, -0.8
    np.testing.assert_allclose(objective, [1.0, 2.4, -0.8])
    entropy = -(p * np.log(p)).sum(axis=1)
    value_loss = 0.5 * np.mean((values[:, 0] - returns) ** 2)
    expected = -objective.mean() - 0.05 * entropy.mean() + 0.5 * value_loss
    np.testing.assert_allclose(float(loss.data), expected, rtol=1e-12)
    assert op.stats["clipfrac"] == pytest.approx(2 / 3)
    assert op.stats["approx_kl"] == pytest.approx(np.mean((ratio - 1) - np.log(ratio)))


@pytest.mark.parametrize("ratio_shift,sign", [(0.0, 1), (0.0, -1), (0.6, 1), (0.6, -1), (-0.6, 1), (-0.6, -1)])
def test_the_clipped_objective_gradient_inside_and_outside_the_clip_range(rng, ratio_shift, sign):
    """Old log-probabilities shifted from the current ones put every ratio inside (0) or outside
    (+-0.6 in log space) the clip range, for advantages of both signs."""
    logits = Tensor(rng.normal(size=(6, 3)), requires_grad=True)
    values = Tensor(rng.normal(size=(6, 1)), requires_grad=True)
    actions = rng.integers(3, size=6)
    logp = logits.data - np.log(np.exp(logits.data).sum(axis=1, keepdims=True))
    old = logp[np.arange(6), actions] - ratio_shift
    advantages = sign * rng.uniform(0.5, 1.5, size=6)
    options = dict(actions=actions, old=old, advantages=advantages, returns=rng.normal(size=6))
    gradcheck(lambda: surrogate(logits, values, **options)[0], [logits, values])
    _, op = surrogate(logits, values, **options)
    outside = ratio_shift != 0 and (ratio_shift > 0) == (sign > 0)  # the clipped term is the smaller
    assert (op.g_log_probs == 0).all() == outside


@pytest.mark.parametrize("shift", [0.05, 0.5])
def test_the_value_clip_gradient_where_the_value_moved_little_or_much(rng, shift):
    logits, values = (Tensor(rng.normal(size=shape), requires_grad=True) for shape in ((5, 2), (5, 1)))
    old_values = values.data[:, 0] + rng.choice([-shift, shift], size=5)
    options = dict(actions=rng.integers(2, size=5), old=rng.normal(size=5) - 1, advantages=rng.normal(size=5),
                   returns=rng.normal(size=5), old_values=old_values, value_clip=0.2)
    gradcheck(lambda: surrogate(logits, values, **options)[0], [logits, values])


def test_the_gaussian_objective_gradient(rng):
    mean, log_std, values = (Tensor(rng.normal(size=shape) * 0.5, requires_grad=True) for shape in ((6, 2), (2,), (6, 1)))
    actions = rng.normal(size=(6, 2))
    options = dict(actions=actions, old=rng.normal(size=6) - 2, advantages=rng.normal(size=6),
                   returns=rng.normal(size=6))
    gradcheck(lambda: surrogate(mean, log_std, values, **options)[0], [mean, log_std, values])


def cartpole_batch(agent, n_envs=4, length=16, seed=0):
    from actors.collector import Collector

    envs = [make_env("CartPole-v1", seed=seed + i) for i in range(n_envs)]
    return Collector(envs, agent.policy(0, np.random.default_rng(seed))).collect(length, 0)


class Spy:
    """Records what each ClippedSurrogateLoss of an update was given."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = ppo_module.ClippedSurrogateLoss

        def make(*args, **kwargs):
            self.calls.append(args)
            return real(*args, **kwargs)
        monkeypatch.setattr(ppo_module, "ClippedSurrogateLoss", make)


def ppo_agent(**settings):
    env = make_env("CartPole-v1")
    return make_agent("ppo", env.observation_space, env.action_space, make_config("ppo", settings))


def test_an_update_takes_every_step_once_per_epoch_with_advantages_normalised(monkeypatch):
    nets.seed(0)
    agent = ppo_agent(epochs=3, minibatches=5)
    batch = cartpole_batch(agent)
    batch.log_probs = -np.arange(1, batch.steps + 1, dtype=np.float32).reshape(batch.rewards.shape) / 100
    spy = Spy(monkeypatch)
    stats = agent.update(batch, 0.0)
    assert len(spy.calls) == 15 and agent.optimizer.steps == 15
    for epoch in range(3):  # the behaviour log-probabilities tell the steps apart
        taken = np.concatenate([call[1] for call in spy.calls[5 * epoch:5 * epoch + 5]])
        assert sorted(taken.tolist()) == sorted(batch.log_probs.reshape(-1).tolist())
    for call in spy.calls:
        advantages = call[2]
        assert abs(advantages.mean()) < 1e-5 and advantages.std() == pytest.approx(1.0, rel=1e-3)
    for name in ("policy_loss", "value_loss", "entropy", "approx_kl", "clipfrac", "explained_variance"):
        assert np.isfinite(stats[name]), name


def test_updates_replayed_from_a_captured_graph_are_the_eager_ones():
    """On a GPU each minibatch's loss and backward pass is one CUDA graph (nets.CapturedGradients,
    held here with tests/test_capture.py's stand-in graph): two updates at different clip ranges,
    the second replaying, give the eager updates' statistics and weights, with no fall-back."""
    import warnings

    from test_capture import Graphs

    results = []
    for captured in (False, True):
        nets.seed(0)
        agent = ppo_agent(epochs=2, minibatches=4, clip_anneal=True)
        if captured:
            agent._minibatch_gradients._graphs = Graphs(agent.network)
            agent._minibatch_gradients.eager_reason = None
        batch = cartpole_batch(agent)
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="CapturedGradients")  # a fall-back warns
            stats = [agent.update(batch, progress) for progress in (0.0, 0.5)]
        assert agent._minibatch_gradients.replaying == captured
        results.append((stats, agent.network.flat().data.copy()))
    (eager_stats, eager_weights), (replayed_stats, replayed_weights) = results
    assert replayed_stats == eager_stats and eager_stats[1]["clip_range"] == pytest.approx(0.1)
    np.testing.assert_array_equal(replayed_weights, eager_weights)


def test_target_kl_stops_the_epochs_of_an_update():
    nets.seed(0)
    agent = ppo_agent(epochs=4, minibatches=2, target_kl=1e-12, lr=1e-2)
    agent.update(cartpole_batch(agent), 0.0)
    assert agent.optimizer.steps == 2  # one epoch: its KL already passed the target


def test_synchronous_ppo_learns_from_every_actor_at_once_asynchronous_from_each(monkeypatch):
    for asynchronous, rollouts_per_update in ((False, 3), (True, 1)):
        nets.seed(0)
        config = make_config("ppo", {"t_max": 8, "epochs": 1, "minibatches": 2, "asynchronous": asynchronous})
        agent = ppo_agent(t_max=8, epochs=1, minibatches=2, asynchronous=asynchronous)
        spec = ActorSpec("CartPole-v1", "ppo", config, envs_per_actor=2)
        learner = Learner(agent, InlineActors(spec, 3), 8 * 2 * 3 * 4, console=lambda line: None)
        assert learner.run() == "finished"
        assert learner.progress.updates == 4 * 3 // rollouts_per_update


def test_the_ratio_is_taken_against_the_policy_that_acted(monkeypatch):
    """An asynchronous update learns from rollouts acted with older weights: the loss's old
    log-probabilities are the rollout's, not the learner's policy's."""
    nets.seed(0)
    agent = ppo_agent(asynchronous=True, epochs=1, minibatches=1)
    batch = cartpole_batch(agent)
    agent.network.flat().data[...] += 0.05  # the learner moved on since
    spy = Spy(monkeypatch)
    agent.update(batch, 0.0)
    (call,) = spy.calls
    np.testing.assert_array_equal(np.sort(call[1]), np.sort(batch.log_probs.reshape(-1)))


def test_vtrace_targets_are_gae_on_policy(monkeypatch):
    """With V-trace and rollouts acted by the learner's own weights, every ratio is 1 and its
    targets are GAE's returns (lambda as the trace cut)."""
    seen = {}
    for use_vtrace in (False, True):
        nets.seed(0)
        agent = ppo_agent(asynchronous=True, vtrace=use_vtrace, epochs=1, minibatches=1)
        batch = cartpole_batch(agent)
        spy = Spy(monkeypatch)
        agent.update(batch, 0.0)
        seen[use_vtrace] = np.sort(spy.calls[-1][3])
    np.testing.assert_allclose(seen[True], seen[False], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_ppo_learns_cartpole_with_its_cli_defaults(tmp_path):
    """The CLI's defaults as `workbench train --agent ppo --backend inline` runs them: a last-100
    mean of 475 within 100k steps (seeds 0-4 reached it, see the closing note); stopped there."""
    result = train(TrainConfig(agent="ppo", steps=100_000, backend="inline", seed=0, logdir=str(tmp_path)),
                   should_stop=lambda p: len(p.recent_returns) == 100 and p.mean_return() >= 475,
                   console=lambda line: None)
    assert result.mean_return >= 475, (result.progress.step, result.mean_return)


@pytest.mark.slow
def test_ppo_learns_pendulum_with_its_cli_defaults(tmp_path):
    """The result docs/performance.md#ppo-pendulum claims, as `workbench train --env Pendulum-v1
    --agent ppo --backend inline` runs it: a last-20 mean of -250 (random swinging scores about
    -1,200) within 150k steps (the benchmark's processes reached it at 78k-86k, seeds 0-2)."""
    result = train(TrainConfig(env="Pendulum-v1", agent="ppo", steps=150_000, backend="inline", seed=0,
                               logdir=str(tmp_path)),
                   should_stop=lambda p: len(p.recent_returns) >= 20 and np.mean(list(p.recent_returns)[-20:]) >= -250,
                   console=lambda line: None)
    last = np.mean(list(result.progress.recent_returns)[-20:])
    assert result.outcome == "stopped" and last >= -250, (result.progress.step, last)


def test_resume_continues_the_schedules(tmp_path):
    settings = {"t_max": 16, "epochs": 2, "minibatches": 2, "lr_anneal": True, "clip_anneal": True}
    config = TrainConfig(agent="ppo", steps=64 * 4, actors=2, backend="inline", logdir=str(tmp_path),
                         agent_config=settings)
    first = train(config, name="ppo", console=lambda line: None, should_stop=lambda p: p.updates >= 2)
    assert first.outcome == "stopped" and first.progress.step == 128
    header, arrays = checkpoint.read(first.run.checkpoint_path())
    assert int(arrays["optimizer/steps"]) == 2 * 4  # updates x epochs x minibatches
    second = train(config, resume=first.run, console=lambda line: None)
    assert second.outcome == "finished" and second.progress.step == 256 and second.progress.updates == 4
    header, arrays = checkpoint.read(second.run.checkpoint_path())
    assert int(arrays["optimizer/steps"]) == 4 * 4


def test_gradients_on_actors_is_refused_in_one_line(tmp_path):
    result = workbench("train", "--agent", "ppo", "--gradients-on", "actors", "--logdir", str(tmp_path))
    assert result.returncode == 2 and result.stderr.strip() == (
        "workbench train: error: ppo computes its gradients on the learner: leave out --gradients-on actors")


@pytest.mark.gpu
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_gpu_ppo_update_matches_cpu(env_id):
    """`--agent ppo --device gpu`: one update (3 epochs of 4 minibatches) of the same batch from
    the same seed gives the same statistics and weights on each device."""
    import warnings

    from actors.collector import Collector
    from nets import backend

    env = make_env(env_id, seed=0)
    config = make_config("ppo", {"epochs": 3, "minibatches": 4, "hidden": [16], "value_clip": 0.2})
    results = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        agent = make_agent("ppo", env.observation_space, env.action_space, config, device=device)
        if device == "cpu":
            actor = make_agent("ppo", env.observation_space, env.action_space, config, learner=False)
            actor.network.flat().data[...] = agent.network.flat().data
            envs = [make_env(env_id, seed=i) for i in range(2)]
            batch = Collector(envs, actor.policy(0, np.random.default_rng(0)),
                              tracker=actor.moment_tracker(2)).collect(32, 0)
        nets.seed(1)  # the same minibatches on each device
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="CapturedGradients")  # a fall-back warns
            stats = agent.update(batch, 0.25)
        assert agent.optimizer.steps == 12
        assert agent._minibatch_gradients.replaying == (device == "gpu")  # the last eight replay its graph
        results.append((stats, backend.to_host(agent.network.flat().data)))
    (cpu_stats, cpu_weights), (gpu_stats, gpu_weights) = results
    for key, value in cpu_stats.items():
        assert gpu_stats[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    np.testing.assert_allclose(gpu_weights, cpu_weights, rtol=1e-4, atol=1e-5)
