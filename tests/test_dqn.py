"""DQN: targets, action log-probabilities and Ape-X priorities by hand, the epsilon ladder,
settings, updates into the weight ring, and short runs: one that learns CartPole, Ape-X on actor
processes and on Ray, a resumed run, `play --greedy`."""
import os
import subprocess
import sys

import numpy as np
import pytest

import nets
from nets import checkpoint
from agents import Rollout, make_agent, make_config
from agents.dqn import DQNPolicy, apex_epsilons, dqn_targets
from agents.replay import VALID
from envs import make_env
from workbench.rl import TrainConfig, train

F_, T_ = False, True
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}


def workbench(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **ONE_THREAD})


def test_targets_by_hand_plain_and_double():
    returns, discounts = np.array([1.0, 2.0], np.float32), np.array([0.5, 0.0], np.float32)
    target_next = np.array([[1.0, 5.0], [3.0, 2.0]], np.float32)
    online_next = np.array([[2.0, 1.0], [0.0, 4.0]], np.float32)
    # DQN: the target net's best value, 5 and 3 (the second step was terminal)
    np.testing.assert_allclose(dqn_targets(returns, discounts, target_next), [1 + 0.5 * 5, 2])
    # double DQN: the online net picks actions 0 and 1, the target net values them: 1 and 2
    np.testing.assert_allclose(dqn_targets(returns, discounts, target_next, online_next), [1 + 0.5 * 1, 2])


def test_apex_epsilons_follow_the_paper_ladder():
    eight = apex_epsilons(0, 8, 8)
    np.testing.assert_allclose(eight, [0.4 ** (1 + 7 * i / 7) for i in range(8)], rtol=1e-6)
    assert eight[0] == pytest.approx(0.4) and eight[-1] == pytest.approx(0.4 ** 8)
    np.testing.assert_allclose(apex_epsilons(4, 4, 8), eight[4:])  # actor 1 of 2, 4 envs each
    assert apex_epsilons(0, 1, 1)[0] == pytest.approx(0.4)


class TableQ:
    """Q(s) = (s, 2 s) for scalar states s."""

    def __call__(self, obs):
        x = np.asarray(obs, np.float32).reshape(-1, 1)
        return nets.Tensor(np.concatenate([x, 2 * x], axis=1))


def test_actor_priorities_are_nstep_td_errors_by_hand():
    config = make_config("dqn", {"apex": True, "n_step": 2, "gamma": 0.5, "apex_actors": 2})
    policy = DQNPolicy(TableQ(), np.random.default_rng(0), config, actor_index=1)
    obs = np.array([[[1.0]], [[2.0]], [[3.0]]], np.float32)  # (T=3, E=1, 1)
    log_probs = np.stack([policy.act(obs[t], step=0)[1] for t in range(3)])
    assert policy.scalars(0)["epsilon"] == pytest.approx(0.4 ** 8)  # the last of 2 envs
    rollout = Rollout(obs=obs, actions=np.array([[0], [1], [0]]), log_probs=log_probs,
                      rewards=np.ones((3, 1), np.float32),
                      terminated=np.zeros((3, 1), bool), truncated=np.array([[F_], [F_], [T_]]),
                      final_obs=np.array([[4.0]], np.float32), final_index=np.array([[2, 0]]))
    policy.rollout_done(rollout)
    # Q(s, a) = 1, 4, 3; max Q = 2, 4, 6 and 8 in the state the rollout was cut at
    # G0 = 1 + .5 + .25 * 6 = 3; G1 = 1 + .5 + .25 * 8 = 3.5; G2 = 1 + .5 * 8 = 5
    np.testing.assert_allclose(rollout.priorities[:, 0], [2.0, 0.5, 2.0])
    assert policy.q_rows == []


@pytest.mark.parametrize("key,value,message", [
    ("optimizer", "sgd", "optimizer must be one of adam, rmsprop, got 'sgd'"),
    ("tau", 0, "tau must be in (0, 1], got 0"),
    ("batch_size", 0, "batch_size must be >= 1, got 0"),
    ("apex_epsilon", 1.5, "apex_epsilon must be in (0, 1), got 1.5"),
])
def test_bad_settings_are_one_line_errors(key, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config("dqn", {key: value})


def test_actions_carry_their_epsilon_greedy_log_probabilities():
    config = make_config("dqn", {"epsilon_start": 0.3, "epsilon_final": 0.3})
    policy = DQNPolicy(TableQ(), np.random.default_rng(0), config, actor_index=0)
    actions, log_probs = policy.act(np.ones((1000, 1), np.float32), step=0)  # greedy: action 1
    assert log_probs.dtype == np.float32 and 0.1 < np.mean(actions == 0) < 0.2
    np.testing.assert_allclose(np.exp(log_probs), np.where(actions == 1, 0.7 + 0.3 / 2, 0.3 / 2), rtol=1e-6)


def cartpole_rollout(rng, steps=40):
    """One env's `steps` random steps, with a terminal step at 19 and the rollout cut at the end."""
    obs = rng.standard_normal((steps, 1, 4)).astype(np.float32)
    return Rollout(obs=obs, actions=rng.integers(2, size=(steps, 1)), log_probs=np.zeros((steps, 1), np.float32),
                   rewards=np.ones((steps, 1), np.float32), terminated=np.eye(steps, dtype=bool)[[19]].T,
                   truncated=np.eye(steps, dtype=bool)[[steps - 1]].T, final_obs=obs[:1, 0],
                   final_index=np.array([[steps - 1, 0]]))


def test_a_gradient_step_refreshes_priorities_and_the_target():
    env = make_env("CartPole-v1", seed=0)
    nets.seed(0)
    config = make_config("dqn", {"prioritized": True, "double": True, "n_step": 3, "batch_size": 8,
                                 "learning_starts": 20, "train_frequency": 4, "gradient_steps": 1,
                                 "target_update_interval": 2, "hidden": [16]})
    agent = make_agent("dqn", env.observation_space, env.action_space, config)
    rollout = cartpole_rollout(np.random.default_rng(0))
    agent.remember([rollout])
    assert len(agent.memory) == 37  # the last 3 steps wait for what follows the last state
    published = agent.network.flat().data
    before, target = published.copy(), agent.target.flat().data.copy()
    into = np.empty_like(published)  # a free slot of the weight ring (Learner: transport.next_weights)
    stats = agent.update(rollout, 0.5, into)  # 40 new steps at one gradient step per 4
    assert agent.optimizer.steps == 10 and stats["grad_norm"] > 0
    np.testing.assert_array_equal(published, before)  # what the actors act from is untouched
    assert agent.network.flat().data is into and not np.allclose(into, before)
    assert not np.allclose(agent.target.flat().data, target)
    np.testing.assert_array_equal(agent.target.flat().data, into)  # refreshed on 10, from the newest
    assert len(set(agent.memory.raw[:40].tolist())) > 10  # TD errors replaced the first priority


def test_polyak_refresh_reads_the_newest_weights_into_the_target_in_place():
    """In place: on the GPU the loss is a CUDA graph that reads the target where it was captured."""
    env = make_env("CartPole-v1", seed=0)
    agent = make_agent("dqn", env.observation_space, env.action_space,
                       make_config("dqn", {"tau": 0.25, "hidden": [16]}))
    target = agent.target.flat().data
    np.testing.assert_array_equal(target, agent.network.flat().data)  # starts as the online net
    newest = np.random.default_rng(0).standard_normal(len(target)).astype(np.float32)
    agent.network.flat().rebind(data=newest)  # as a step into the next weight slot leaves it
    old = target.copy()
    agent.sync_target()
    assert agent.target.flat().data is target
    np.testing.assert_allclose(target, 0.75 * old + 0.25 * newest, rtol=1e-6)


@pytest.mark.gpu
@pytest.mark.parametrize("settings", [{"double": False, "n_step": 1, "huber_delta": None},
                                      {"prioritized": True, "tau": 0.5, "optimizer": "rmsprop"}])
def test_gpu_dqn_gradient_steps_match_cpu(settings):
    """`--agent dqn --device gpu`: ten gradient steps from the same replay memory on each device
    give the same statistics, online and target weights, and refreshed priorities; on the GPU
    the last seven replay the loss's CUDA graph (a fall-back to eager calls would warn)."""
    import warnings

    from nets import backend

    env = make_env("CartPole-v1", seed=0)
    config = make_config("dqn", {"batch_size": 8, "learning_starts": 20, "train_frequency": 4,
                                 "gradient_steps": 1, "target_update_interval": 2, "hidden": [16],
                                 **settings})
    rollout = cartpole_rollout(np.random.default_rng(0))
    results = []
    for device in ("cpu", "gpu"):
        nets.seed(0)
        agent = make_agent("dqn", env.observation_space, env.action_space, config, device=device)
        agent.remember([rollout])
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message="CapturedGradients")  # a fall-back warns
            stats = agent.update(rollout, 0.5)
        assert agent.optimizer.steps == 10
        assert agent._sample_gradients.replaying == (device == "gpu")
        results.append((stats, backend.to_host(agent.network.flat().data),
                        backend.to_host(agent.target.flat().data),
                        agent.memory.raw[:40].copy() if agent.memory.prioritized else None))
    (cpu_stats, *cpu_arrays), (gpu_stats, *gpu_arrays) = results
    for key, value in cpu_stats.items():
        assert gpu_stats[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
    for name, cpu, gpu in zip(("online", "target", "priorities"), cpu_arrays, gpu_arrays):
        if cpu is not None:
            np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.gpu
@pytest.mark.slow
def test_dqn_trains_with_a_gpu_learner_and_plays_on_the_cpu(tmp_path):
    done = workbench("train", "--env", "CartPole-v1", "--agent", "dqn", "--actors", "1", "--steps", 3000,
                     "--device", "gpu", "--set", "learning_starts=500", "--logdir", tmp_path, "--name", "gpu")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "learner on the GPU" in done.stdout and "done: " in done.stdout
    played = workbench("play", tmp_path / "gpu", "--episodes", 1, "--greedy")
    assert played.returncode == 0, played.stderr[-2000:]
    assert "mean" in played.stdout


@pytest.mark.slow
def test_dqn_learns_cartpole_in_a_short_run(tmp_path):
    """Its defaults reach a last-20 mean of 150 (random play averages 22) well inside 16k steps:
    seeds 0-2 by 6.7k-7k; the run stops there."""
    nets.threads.limit(1)

    def reached(progress):
        returns = list(progress.recent_returns)
        return len(returns) >= 20 and np.mean(returns[-20:]) >= 150

    result = train(TrainConfig(env="CartPole-v1", agent="dqn", actors=1, envs_per_actor=4, steps=16_000,
                               seed=1, backend="inline", logdir=str(tmp_path)),
                   should_stop=reached, console=lambda line: None)
    assert reached(result.progress), (result.progress.step, list(result.progress.recent_returns)[-20:])


def test_gradients_on_actors_is_refused_on_the_command_line_with_one_line(tmp_path):
    assert TrainConfig(agent="dqn").resolved_gradients_on == "learner"
    result = workbench("train", "--agent", "dqn", "--gradients-on", "actors", "--logdir", tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "dqn computes its gradients on the learner: leave out --gradients-on actors" in result.stderr
    assert not any(tmp_path.iterdir())


def test_bad_settings_fail_on_the_command_line_with_one_line(tmp_path):
    result = workbench("train", "--agent", "dqn", "--set", "optimizer=sgd", "--logdir", tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "optimizer must be one of adam, rmsprop, got 'sgd'" in result.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_a_resumed_run_says_the_memory_is_rebuilt_and_plays_greedily(tmp_path):
    quick = ("--agent", "dqn", "--backend", "inline", "--actors", 1, "--set", "learning_starts=200",
             "--logdir", tmp_path)
    first = workbench("train", *quick, "--steps", 1500, "--name", "run")
    assert first.returncode == 0, first.stderr
    assert "replay memory: 100,000 steps" in first.stdout
    folder = tmp_path / "run"
    before = checkpoint.read(folder / "checkpoints" / "latest.npz")[0]["meta"]
    resumed = workbench("train", "--resume", folder, "--steps", 3000)
    assert resumed.returncode == 0, resumed.stderr
    assert "the replay memory is not kept in checkpoints: it starts empty, and learning resumes " \
           "once it holds 200 steps" in resumed.stdout
    header, arrays = checkpoint.read(folder / "checkpoints" / "latest.npz")
    assert header["meta"]["step"] >= 3000 and header["optimizer"]["type"] == "Adam"
    assert int(arrays["optimizer/steps"]) > int(before["updates"])  # gradient steps went on
    played = workbench("play", folder, "--greedy", "--episodes", 2)
    assert played.returncode == 0, played.stderr
    assert "greedy actions" in played.stdout and "mean return" in played.stdout


@pytest.mark.slow
def test_apex_actor_processes_send_the_priorities_steps_are_inserted_with(tmp_path):
    """Learning never starts, so no gradient step refreshes a priority: what the memory holds is
    what arrived from the actor processes."""
    nets.threads.limit(1)
    agents = []
    config = TrainConfig(env="CartPole-v1", agent="dqn", actors=2, envs_per_actor=2, steps=4000,
                         seed=0, logdir=str(tmp_path), agent_config={"apex": True, "learning_starts": 10**6})
    result = train(config, on_start=agents.append, console=lambda line: None)
    assert result.outcome == "finished" and result.restarts == 0
    memory = agents[0].memory
    assert memory.prioritized and len(memory) > 3000 and agents[0].optimizer.steps == 0
    # each step arrived with its own |TD error| (without, all would share the largest so far, 1.0)
    priorities = memory.raw[np.flatnonzero(memory.flags[:memory.size] & VALID)]
    assert len(np.unique(priorities)) > 0.9 * len(priorities)


@pytest.mark.slow
def test_dqn_on_breakout_stores_frames_once_and_takes_gradient_steps_on_stacks(tmp_path):
    pytest.importorskip("ale_py")
    nets.threads.limit(1)
    agents = []
    config = TrainConfig(env="ALE/Breakout-v5", agent="dqn", actors=1, envs_per_actor=2, steps=800,
                         backend="inline", logdir=str(tmp_path),
                         agent_config={"learning_starts": 300, "buffer_size": 5000, "t_max": 16})
    lines = []
    result = train(config, on_start=agents.append, console=lines.append)
    agent = agents[0]
    assert result.outcome == "finished" and agent.optimizer.steps >= (800 - 300) // 4 - 16
    assert agent.memory.frames.shape == (5000, 84 * 84) and agent.memory.size >= 800
    assert any(line.startswith("replay memory: 5,000 steps") and "one 84x84 frame a step" in line
               for line in lines)
    assert type(agent.network.trunk).__name__ == "ConvTrunk" and agent.network.trunk.out_features == 512
