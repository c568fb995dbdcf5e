"""The actor system: shared weights, actor processes dying and being replaced, and the learner
loop's bookkeeping (checkpoints, stopping, supervision)."""
import os
import re
import signal
import threading
import time

import numpy as np
import pytest
from multiprocess import forkserver, resource_tracker

import nets
from actors import ActorFailure, ActorSpec, InlineActors, Learner, LocalProcesses
from actors.shared import VERSION, SharedState
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
def test_publish_and_pull_copy_only_when_the_version_moves():
    buffer = bytearray(SharedState.size(5, 2))
    shared = SharedState(memoryview(buffer), 5, 2)
    local = np.zeros(5, np.float32)
    assert shared.pull(local, known_version=0) == 0 and not local.any()
    version = shared.publish(np.arange(5, dtype=np.float32), step=123)
    assert version == 2 and shared.step == 123
    assert shared.pull(local, known_version=0) == 2
    np.testing.assert_array_equal(local, np.arange(5))
    local[:] = -1
    assert shared.pull(local, known_version=2) == 2 and (local == -1).all()  # no copy


def test_pull_waits_out_a_publish_in_progress():
    buffer = bytearray(SharedState.size(3, 1))
    shared = SharedState(memoryview(buffer), 3, 1)
    shared.publish(np.zeros(3, np.float32), 0)
    shared.header[VERSION] += 1  # a writer is halfway through
    shared.weights[:] = 7

    def finish():
        time.sleep(0.05)
        shared.weights[:] = 9
        shared.header[VERSION] += 1

    writer = threading.Thread(target=finish)
    writer.start()
    local = np.zeros(3, np.float32)
    assert shared.pull(local, known_version=2) == 4
    writer.join()
    np.testing.assert_array_equal(local, 9)


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

    def scalars(self, values, step):
        for tag, value in values.items():
            self.points.setdefault(tag, []).append((step, value))


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
