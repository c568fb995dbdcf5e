"""The body of an actor process: act with the latest published weights, send rollouts (or
their gradients, computed with the weights the actor acted with, into its slots of the shared
block).

Flow control: an actor may have `max_in_flight` rollouts the learner has not yet learned from;
the learner answers each rollout with one credit byte on the same pipe when it publishes the
weights that learned from it. This bounds the policy lag (none for a lone actor with one in
flight) and lets idle actors sleep instead of competing with a busy learner for cores.
"""
from __future__ import annotations

import os
import pickle
import signal
import time

import numpy as np

from agents import Gradient, make_agent
from envs import EnvError, make_env
import nets
from nets import threads

from .collector import Collector
from .shared import Layout, SharedState
from .transport import ActorSpec, actor_seeds

CREDIT = b"+"
POLL_SECONDS = 0.2  # how often a waiting actor looks at the stop flag


def build_collector(spec: ActorSpec, slot: int, generation: int):
    """(agent, collector) for one actor: its envs, an acting-only agent and its policy."""
    nets.set_check_mode(spec.check)
    env_seeds, rng = actor_seeds(spec, slot, generation)
    envs = [make_env(spec.env_id, seed=s, **spec.env_options) for s in env_seeds]
    agent = make_agent(spec.agent, envs[0].observation_space, envs[0].action_space,
                       spec.agent_config, learner=False)
    return agent, Collector(envs, agent.policy(slot, rng), actor=slot,
                            tracker=agent.moment_tracker(len(envs)))


def experience(agent, collector: Collector, spec: ActorSpec, step: int, version: int):
    """The next rollout or, with `spec.compute_gradients`, its Gradient: the vector is the
    agent's own gradient (`network.flat().grad`), valid until the next call."""
    rollout = collector.collect(agent.rollout_length, step, version)
    if not spec.compute_gradients:
        return rollout
    return Gradient.of(rollout, agent.gradients(rollout), agent.network.flat().grad)


def act_with_newest(agent, shared: SharedState, slot: int, known_version: int) -> int:
    """Hold the newest published weights (and target) and rebind the agent's networks to them,
    without copying; returns their version."""
    version, weights, target = shared.acquire(slot)
    if version != known_version:
        agent.network.flat().rebind(data=weights)
        if target is not None:
            agent.target.flat().rebind(data=target)
    return version


# Exit codes of an actor that a replacement would not mend: the learner stops the run on them.
UNGUARDED_SCRIPT = 78  # its start re-ran the caller's script, which has no __main__ guard (rl.train)
STOPS_THE_RUN = 79  # an error every new actor would meet: the env's (EnvError)


def run_actor(spec: ActorSpec, slot: int, generation: int, block, layout: Layout, conn,
              max_in_flight: int) -> None:
    """`block`: the shared memory holding a SharedState. An error ends the actor with exit code 1
    (STOPS_THE_RUN for one a new actor would meet again) after sending its one-line description
    up the pipe (a str instead of a Rollout)."""
    for signum in (signal.SIGINT, signal.SIGTERM):  # sent to the whole group by Ctrl-C, timeout,
        signal.signal(signum, signal.SIG_IGN)        # systemd...: the learner stops us cleanly
    # One core's worth of threads, also where the fork server was started by someone other than
    # LocalProcesses (whose children start with one-thread variables): a multiprocess Pool, say.
    threads.limit(1)
    np.seterr(over="ignore", invalid="ignore", divide="ignore")  # the learner reports divergence
    try:
        if spec.working_dir:  # the fork server's may be another's (it outlives the runs it served)
            os.chdir(spec.working_dir)
        agent, collector = build_collector(spec, slot, generation)
        shared = SharedState(block, layout)
        version, in_flight, sent = -1, 0, 0
        while not shared.stopping:
            while conn.poll(0):  # credits for rollouts the learner has learned from
                conn.recv_bytes()
                in_flight -= 1
            if shared.version == 0:  # the learner has not published yet
                time.sleep(0.002)
                continue
            if in_flight >= max_in_flight:
                if conn.poll(POLL_SECONDS):
                    conn.recv_bytes()
                    in_flight -= 1
                continue
            version = act_with_newest(agent, shared, slot, version)
            if spec.compute_gradients:  # backward writes straight into a free slot of ours:
                index = sent % max_in_flight  # the learner credits them in order
                agent.network.flat().rebind(grad=shared.gradient(slot, index))
            item = experience(agent, collector, spec, shared.step, version)
            if spec.compute_gradients:  # the pipe carries where the vector lies
                item.grad, item.slot = None, index
            shared.beat(slot)
            conn.send_bytes(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
            in_flight += 1
            sent += 1
    except (BrokenPipeError, ConnectionResetError, EOFError):
        pass  # the learner is gone or closed our pipe: nothing left to do
    except Exception as error:  # noqa: BLE001 - whatever it is, the learner reports it
        try:
            conn.send_bytes(pickle.dumps(f"{type(error).__name__}: {error}".splitlines()[0]))
        except OSError:
            pass
        raise SystemExit(STOPS_THE_RUN if isinstance(error, EnvError) else 1) from None
    finally:
        conn.close()
