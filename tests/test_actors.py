"""The actor system: shared weights, actor processes dying and being replaced, and the learner
loop's bookkeeping (checkpoints, stopping, supervision)."""
import ctypes
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from multiprocess import forkserver, resource_tracker

import nets
from nets import checkpoint
from actors import ActorFailure, ActorSpec, InlineActors, Learner, LocalProcesses
from actors.shared import VERSION, WEIGHTS, Layout, SharedState
from agents import make_agent, make_config
from envs import make_env


@pytest.fixture(scope="module", autouse=True)
def no_helper_processes_left():
    """The fork server and resource tracker outlive a transport by design (they serve the whole
    learner process); stop them so this module leaves no child process behind."""
    yield
    forkserver._forkserver._stop()
    resource_tracker._resource_tracker._stop()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is as good as gone
        return f.read().split(") ")[1][0] != "Z"


def cartpole_agent(name="a3c"):
    env = make_env("CartPole-v1")
    config = make_config(name)
    return make_agent(name, env.observation_space, env.action_space, config), config


# -- shared weights ---------------------------------------------------------------------------
def shared_state(n_params=5, n_actors=2, targets=False, context=None):
    layout = Layout(n_params, n_actors, targets)
    buffer = (context.RawArray(ctypes.c_uint8, layout.nbytes) if context
              else memoryview(bytearray(layout.nbytes)))
    shared = SharedState(buffer, layout)
    shared.initialize()
    return shared, buffer


def test_publish_copies_only_weights_outside_the_slots_and_an_actor_reads_them_in_place():
    shared, _ = shared_state()
    initial = np.arange(5, dtype=np.float32)
    assert shared.publish(initial, step=123) == 2 and shared.step == 123
    version, weights, target = shared.acquire(0)
    assert version == 2 and target is None and not np.shares_memory(weights, initial)
    np.testing.assert_array_equal(weights, initial)  # the learner's own vector was copied in
    into = shared.next_weights()
    assert shared.slot_of(into) is not None and not np.shares_memory(into, weights)
    into[:] = 7  # what the optimizer's out-of-place step does
    assert shared.publish(into, step=130) == 4
    version, weights, _ = shared.acquire(1)
    assert version == 4 and np.shares_memory(weights, into)  # published where it lies
    assert shared.publish(into, step=140) == 6  # a skipped step publishes the same slot again
    assert np.shares_memory(shared.acquire(1)[1], into)


def test_acquire_waits_out_a_publish_in_progress():
    shared, _ = shared_state(3, 1)
    shared.publish(np.zeros(3, np.float32), 0)
    into = shared.next_weights()
    into[:] = 9
    shared.header[VERSION] += 1  # a writer is halfway through: the header still names the old slot

    def finish():
        time.sleep(0.05)
        shared.header[WEIGHTS] = shared.slot_of(into)
        shared.header[VERSION] += 1

    writer = threading.Thread(target=finish)
    writer.start()
    version, weights, _ = shared.acquire(0)
    writer.join()
    assert version == 4
    np.testing.assert_array_equal(weights, 9)


def test_slots_that_actors_hold_or_that_are_published_are_never_written():
    shared, _ = shared_state(4, n_actors=2, targets=True)
    target = np.full(4, -1, np.float32)
    shared.publish(np.zeros(4, np.float32), 0, target)
    _, held, held_target = shared.acquire(0)  # actor 0 keeps acting from these
    for value in range(1, 40):
        into = shared.next_weights()
        assert not np.shares_memory(into, held) and not np.shares_memory(into, held_target)
        into[:] = value
        if value % 10 == 0:
            target = into.copy()  # the agent's new target network: a new vector
        shared.publish(into, value, target)
        if value % 3 == 0:
            shared.acquire(1)  # actor 1 moves on
    np.testing.assert_array_equal(held, 0)
    np.testing.assert_array_equal(held_target, -1)
    _, weights, newest_target = shared.acquire(0)
    np.testing.assert_array_equal(weights, 39)
    np.testing.assert_array_equal(newest_target, 30)
    assert not np.shares_memory(newest_target, target)  # copied in once, when it was new


def hold_and_check(block, layout, seconds, errors):
    """An actor process: hold the newest slot, check it twice with a pause between, repeat."""
    shared, end, checks = SharedState(block, layout), time.monotonic() + seconds, 0
    while time.monotonic() < end:
        version, weights, _ = shared.acquire(0)
        first = weights.copy()
        time.sleep(0.0005)  # meanwhile the learner publishes on
        if not (first == first[0]).all() or not np.array_equal(weights, first) or first[0] != version:
            errors.value += 1
        checks += 1
    errors.value = errors.value if checks > 100 else -1


@pytest.mark.slow
def test_no_torn_or_overwritten_weights_under_a_fast_learner():
    """A learner publishing as fast as it can (each slot filled with its version) and an actor
    process holding the newest slot: every read is one whole version, unchanged while held."""
    import multiprocess as mp

    context = mp.get_context("forkserver")
    shared, block = shared_state(200_000, n_actors=1, context=context)
    errors = context.RawValue(ctypes.c_int64, 0)
    shared.publish(np.full(200_000, 2, np.float32), 0)
    actor = context.Process(target=hold_and_check, args=(block, shared.layout, 1.5, errors))
    actor.start()
    while actor.is_alive():
        into = shared.next_weights()
        into[:] = shared.version + 2  # the version this publish will have
        shared.publish(into, 0)
    assert actor.exitcode == 0 and errors.value == 0


# -- local processes --------------------------------------------------------------------------
def test_actor_killed_by_sigkill_is_detected_and_replaced():
    agent, config = cartpole_agent()
    weights = agent.network.flat().data
    spec = ActorSpec("CartPole-v1", "a3c", config, envs_per_actor=2, seed=1)
    transport = LocalProcesses(spec, 2, len(weights), actor_timeout=30)
    try:
        transport.start()
        transport.publish(weights, 0)
        first = transport.pids()

        def rollouts_from(slots, deadline=20.0):
            seen, end = set(), time.monotonic() + deadline
            while not slots <= seen and time.monotonic() < end:
                seen |= {r.actor for r in transport.receive(timeout=0.1)}
            return seen

        assert rollouts_from({0, 1}) == {0, 1}
        os.kill(first[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        dead = {}
        while not dead and time.monotonic() < deadline:
            transport.receive(timeout=0.05)
            dead = transport.dead_actors()
        assert dead == {0: "was killed by SIGKILL"}
        transport.restart(0)
        assert transport.pids()[0] != first[0] and transport.pids()[1] == first[1]
        assert 0 in rollouts_from({0})
        assert transport.dead_actors() == {}
    finally:
        transport.stop()
    for pid in (*first.values(), *transport.pids().values()):
        assert not alive(pid)


def test_an_actor_that_fails_reports_its_error_and_exit_status():
    agent, config = cartpole_agent()
    spec = ActorSpec("CartPole-v1", "a3c", config, env_options={"no_such_option": 1})
    transport = LocalProcesses(spec, 1, len(agent.network.flat()))
    try:
        transport.start()
        dead, deadline = {}, time.monotonic() + 20
        while not dead and time.monotonic() < deadline:
            transport.receive(timeout=0.05)
            dead = transport.dead_actors()
    finally:
        transport.stop()
    assert dead[0].startswith("exited with code 1 (TypeError: ") and "no_such_option" in dead[0]


def test_a_lone_actor_acts_with_the_weights_learned_from_its_last_rollout():
    """The credit for a rollout comes with the publish that learned from it: a slow update does
    not let the actor start its next rollout on the weights from before (REINFORCE collapsed
    with that one-update lag)."""
    agent, config = cartpole_agent()
    weights = agent.network.flat().data
    transport = LocalProcesses(ActorSpec("CartPole-v1", "a3c", config), 1, len(weights))

    def next_rollout(deadline=20.0):
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if rollouts := transport.receive(timeout=0.1):
                return rollouts[0]
        raise AssertionError("no rollout arrived")

    try:
        transport.start()
        first = transport.publish(weights, 0)
        assert next_rollout().version == first
        time.sleep(0.3)  # a slow update
        learned = transport.publish(weights, 5)
        assert next_rollout().version == learned
    finally:
        transport.stop()


def test_silent_actor_counts_as_hung_and_is_killed():
    agent, config = cartpole_agent()
    transport = LocalProcesses(ActorSpec("CartPole-v1", "a3c", config), 1, len(agent.network.flat()),
                               actor_timeout=0.5)
    try:
        transport.start()  # never published: the actor waits and sends nothing
        pid = transport.pids()[0]
        time.sleep(0.6)
        dead = transport.dead_actors()
        assert list(dead) == [0] and dead[0].startswith("sent nothing for ")
        transport.actors[0].process.join(timeout=5)
        assert not alive(pid)
    finally:
        transport.stop()


# -- the learner loop -------------------------------------------------------------------------
def test_learner_counts_steps_checkpoints_and_stops_on_request():
    nets.seed(0)
    agent, config = cartpole_agent()
    spec = ActorSpec("CartPole-v1", "a3c", config, envs_per_actor=2)
    saved = []
    learner = Learner(agent, InlineActors(spec, 2), 1000, console=lambda line: None,
                      checkpoint=lambda p, periodic: saved.append((p.step, periodic)),
                      checkpoint_every=300)
    assert learner.run() == "finished"
    assert learner.progress.step == 1000 and learner.progress.updates == 100  # 5 steps x 2 envs
    assert [periodic for _, periodic in saved] == [True, True, True, False]
    assert [step for step, _ in saved] == [300, 600, 900, 1000]

    learner = Learner(agent, InlineActors(spec, 1), 10_000, console=lambda line: None)
    assert learner.run(should_stop=lambda p: p.step >= 50) == "stopped"
    assert learner.progress.step == 50


class RecordedEvents:
    def __init__(self):
        self.points: dict[str, list[tuple[int, float]]] = {}
        self.wall_times: dict[str, list[float | None]] = {}

    def scalars(self, values, step, wall_time=None):
        for tag, value in values.items():
            self.points.setdefault(tag, []).append((step, value))
            self.wall_times.setdefault(tag, []).append(wall_time)


def test_every_episode_is_one_point_at_the_step_it_ended():
    nets.seed(0)
    agent, config = cartpole_agent()
    spec = ActorSpec("CartPole-v1", "a3c", config, envs_per_actor=2)
    events = RecordedEvents()
    learner = Learner(agent, InlineActors(spec, 2), 3000, console=lambda line: None, events=events,
                      scalar_every=1e9)  # one scalar window for the whole run
    learner.run()
    returns, lengths = events.points["charts/episodic_return"], events.points["charts/episodic_length"]
    assert len(returns) == len(lengths) == learner.progress.episodes > 20
    steps = [step for step, _ in returns]
    assert steps == sorted(steps) and len(set(steps)) > 10 and steps[-1] <= 3000
    assert [value for _, value in returns] == [value for _, value in lengths]  # CartPole: +1 a step
    assert len(events.points["losses/policy_loss"]) == 1  # update statistics stay windowed
    # each at the time it ended, not the window's write at the end (plot --x time would stack them)
    times = events.wall_times["charts/episodic_return"]
    assert None not in times and times == sorted(times)
    assert times[-1] - times[0] > 0.5 * learner.progress.elapsed


def test_progress_lines_wait_for_the_first_rollouts_before_an_eta():
    agent, config = cartpole_agent()
    spec = ActorSpec("CartPole-v1", "a3c", config, envs_per_actor=2)
    lines = []
    learner = Learner(agent, InlineActors(spec, 1), 400, console=lines.append)
    learner._session = None
    learner._progress_line(0, 1.0)
    assert "waiting for the actors' first rollouts" in lines[-1] and "ETA" not in lines[-1]
    learner.run()
    assert re.search(r"step 400/400 100% .* ETA 0:00 \| learner busy \d+%$", lines[-1]), lines[-1]


class FlakyTransport(InlineActors):
    """Actor 1 is found dead at every check; with `ever_works` its replacement then delivers."""

    def __init__(self, spec, ever_works):
        super().__init__(spec, 2)
        self.ever_works, self.restarts = ever_works, 0

    def receive(self, timeout):
        rollouts = super().receive(timeout)
        if not self.ever_works:
            return [r for r in rollouts if r.actor != 1]
        return rollouts

    def dead_actors(self):
        return {1: "exited with code 1"} if self.restarts < 2 else {}

    def restart(self, slot):
        self.restarts += 1
        return super().restart(slot)


def test_supervisor_replaces_dead_actors_and_gives_up_on_one_that_never_starts():
    agent, config = cartpole_agent()
    spec = ActorSpec("CartPole-v1", "a3c", config)
    lines = []
    learner = Learner(agent, FlakyTransport(spec, ever_works=True), 400, console=lines.append,
                      supervise_every=0.0)
    assert learner.run() == "finished"
    assert learner.restarts == 2 and "actor 1 exited with code 1; replaced it (in process)" in lines

    class NeverStarts(FlakyTransport):
        def dead_actors(self):
            return {1: "exited with code 1"}

    learner = Learner(agent, NeverStarts(spec, ever_works=False), 10**6, console=lines.append,
                      supervise_every=0.0, max_startup_failures=3)
    with pytest.raises(ActorFailure, match="actor 1 exited with code 1, 4 times in a row"):
        learner.run()


# -- actors that compute gradients --------------------------------------------------------------
@pytest.mark.parametrize("env_id,name", [
    *(("CartPole-v1", name) for name in ("a3c", "a3c-lstm", "impala", "nstep-q", "onestep-q", "reinforce")),
    *(("Pendulum-v1", name) for name in ("a3c", "a3c-lstm", "reinforce"))])
def test_gradients_from_actors_step_the_learner_as_its_own_would(env_id, name):
    """Inline actors act on-policy, so a learner stepping on the gradients its actors computed
    (with the published weights and target network) ends where one computing them itself does.
    On Pendulum (Gaussian policies, normalised observations and rewards) that takes the rollouts'
    moments merged alike from rollouts and from gradients, and actors that scale rewards with the
    published statistics as the learner does."""
    from workbench.rl import TrainConfig

    finals = []
    for on_actors in (False, True):
        nets.seed(0)
        env = make_env(env_id)
        overrides = ({"target_update_interval": 4} if "q" in name else
                     {"lstm_size": 16} if name == "a3c-lstm" else {})
        config = TrainConfig(env=env_id, agent=name, agent_config=overrides).agent_settings()
        agent = make_agent(name, env.observation_space, env.action_space, config)
        spec = ActorSpec(env_id, name, config, envs_per_actor=1 if name == "reinforce" else 2,
                         seed=3, compute_gradients=on_actors)
        whole_pendulum_episodes = env_id == "Pendulum-v1" and name == "reinforce"
        learner = Learner(agent, InlineActors(spec, 2), 2400 if whole_pendulum_episodes else 300,
                          console=lambda line: None)
        learner.run()
        finals.append((agent.network.state_dict(), agent.target and agent.target.flat().data.copy()))
    assert learner.progress.updates > 10
    (central, central_target), (from_actors, actors_target) = finals
    for key, value in central.items():  # parameters, and the normaliser's float64 buffers
        np.testing.assert_array_equal(from_actors[key], value, err_msg=key)
    np.testing.assert_array_equal(actors_target, central_target)
    if env_id == "Pendulum-v1":
        assert agent.normalizer.obs_count[0] == agent.normalizer.return_count[0] == learner.progress.step


def test_actors_that_compute_gradients_use_the_published_target_network():
    """Q targets bootstrap from the target network: a target whose Q head says 1e4 everywhere
    must show in the gradient an actor process sends (with the squared error: a Huber loss
    would clip it)."""
    env = make_env("CartPole-v1")
    config = make_config("nstep-q", {"huber_delta": None})
    agent = make_agent("nstep-q", env.observation_space, env.action_space, config)
    weights = agent.network.flat().data
    spec = ActorSpec("CartPole-v1", "nstep-q", config, envs_per_actor=2, compute_gradients=True)
    transport = LocalProcesses(spec, 1, len(weights))
    norms = []
    try:
        transport.start()
        for bias in (0.0, 1e4):
            target = weights.copy()
            target[-agent.n_actions:] = bias  # the Q head's biases come last
            version = transport.publish(weights, 0, target)
            arrived, end = [], time.monotonic() + 20
            while not arrived and time.monotonic() < end:
                arrived = transport.receive(timeout=0.1)
            gradient, = arrived
            assert gradient.version == version and gradient.steps == 10
            norms.append(float(np.linalg.norm(gradient.grad)))
    finally:
        transport.stop()
    assert np.isfinite(norms).all() and norms[1] > 100 * norms[0]


@pytest.mark.parametrize("name,on_actors", [("nstep-q", True), ("nstep-q", False), ("dqn", False)])
def test_only_actors_that_compute_gradients_get_the_target_network(name, on_actors):
    """The loss is an actor's only reader of the target network: a central learner (dqn's is
    always one) publishes none, and its weight ring keeps no slots for one."""
    agent, config = cartpole_agent(name)
    spec = ActorSpec("CartPole-v1", name, config, envs_per_actor=2, compute_gradients=on_actors)
    with LocalProcesses(spec, 2, len(agent.network.flat())) as transport:
        assert transport.layout.targets is on_actors
    published = []

    class Recording(InlineActors):
        def publish(self, weights, step, target=None):
            published.append(target)
            return super().publish(weights, step, target)

    Learner(agent, Recording(spec, 1), 200, console=lambda line: None).run()
    assert len(published) > 2 and all((target is not None) is on_actors for target in published)


def test_a_run_with_gradients_on_actors_resumes_from_its_checkpoint(tmp_path):
    from workbench.rl import TrainConfig, train

    config = TrainConfig(agent="nstep-q", backend="inline", gradients_on="actors", steps=400,
                         envs_per_actor=2, logdir=str(tmp_path), log_every=60.0)
    first = train(config, name="run", console=lambda line: None)
    config.steps = 800
    resumed = train(config, resume=first.run, console=lambda line: None)
    assert first.progress.step == 400 and resumed.progress.step == 800
    header, arrays = checkpoint.read(first.run.checkpoint_path())
    assert int(arrays["optimizer/steps"]) == header["meta"]["updates"] == resumed.progress.updates


def test_gradients_are_on_the_actors_by_default_but_for_a_central_learners_agents():
    from workbench.rl import TrainConfig

    assert TrainConfig().resolved_gradients_on == "actors"
    assert TrainConfig(agent="impala").resolved_gradients_on == "learner"  # V-trace's reason to be
    assert TrainConfig(device="gpu").resolved_gradients_on == "learner"
    assert TrainConfig(agent="nstep-q").resolved_gradients_on == "learner"
    assert TrainConfig(agent="impala", gradients_on="actors").resolved_gradients_on == "actors"
    assert TrainConfig(agent="onestep-q").to_dict()["gradients_on"] == "actors"  # a resume keeps it


def test_gradients_that_arrive_together_are_stepped_one_by_one():
    """As each of the A3C paper's threads steps the shared weights with its own gradient: two that
    arrive in one update make two clipped steps, not one step of their sum."""
    from agents import Gradient

    agent, config = cartpole_agent()
    twin, _ = cartpole_agent()
    twin.network.flat().data[...] = agent.network.flat().data
    learner = Learner(agent, InlineActors(ActorSpec("CartPole-v1", "a3c", config, compute_gradients=True), 2),
                      10_000)
    rng = np.random.default_rng(0)
    n = agent.network.flat().data.size
    grads = [rng.standard_normal(n).astype(np.float32) * 30 for _ in range(2)]  # each over the clip
    arrived = [Gradient(g.copy(), {"loss": 1.0}, 40, [], [], actor, 0, {}) for actor, g in enumerate(grads)]
    learner._learn(arrived)
    for g in grads:
        twin.network.flat().grad[...] = g
        twin.step(0.0)
    np.testing.assert_allclose(agent.network.flat().data, twin.network.flat().data, rtol=1e-5, atol=1e-7)
