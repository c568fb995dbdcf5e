"""The Ray backend on a real two-node Ray cluster on loopback: training with actors on both nodes,
an actor process killed mid-run, and a run stopped on Ray resumed on local processes. Skipped
where ray is not installed (`pip install -e ".[cluster]"`)."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from nets import checkpoint
from workbench.rl import TrainConfig, train
from workbench.runs import RunDir

from test_train_cli import assert_events_written, workbench

MIB = 2**20


@pytest.fixture(scope="module")
def cluster():
    """Two Ray nodes on this machine (2 CPUs each, the minimum object store), shared by the
    module's tests; the tests' `train` calls join it as the driver."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "object_store_memory": 80 * MIB, "include_dashboard": False})
    try:
        nodes.add_node(num_cpus=2, object_store_memory=80 * MIB)
        ray.init(address=nodes.address, log_to_driver=False)
        yield nodes
    finally:
        ray.shutdown()
        nodes.shutdown()


def quick(tmp_path, **overrides) -> TrainConfig:
    values = dict(env="CartPole-v1", agent="a3c", actors=4, envs_per_actor=2, steps=2000,
                  backend="ray", logdir=str(tmp_path), histogram_every=5, log_every=0.5)
    return TrainConfig(**{**values, **overrides})


def started_actors(lines) -> dict[int, tuple[int, str]]:
    """slot -> (pid, node id) from the learner's "started actors:" line."""
    line = next(line for line in lines if line.startswith("started actors: "))
    return {int(slot): (int(pid), node)
            for slot, pid, node in re.findall(r"(\d+) \(pid (\d+) on [^,]+, node (\w+)\)", line)}


@pytest.mark.slow
def test_a3c_trains_on_two_nodes_and_writes_events_and_a_checkpoint(cluster, tmp_path):
    lines, first = [], []  # trained for 2.5 s from its first update: TensorBoard gets a point a second

    def enough(progress):
        if progress.step and not first:
            first.append(progress.elapsed)
        return progress.step >= 2000 and progress.elapsed >= first[0] + 2.5

    result = train(quick(tmp_path, steps=10_000_000), name="two-nodes", console=lines.append,
                   should_stop=enough)
    assert result.outcome == "stopped" and result.progress.step >= 2000 and result.restarts == 0
    placed = started_actors(lines)
    assert sorted(placed) == [0, 1, 2, 3]
    assert len({node for _, node in placed.values()}) == 2  # SPREAD put actors on both nodes
    folder = tmp_path / "two-nodes"
    header, _ = checkpoint.read(folder / "checkpoints" / "latest.npz")
    assert header["meta"]["step"] == result.progress.step and header["meta"]["updates"] > 0
    assert json.loads((folder / "config.json").read_text())["backend"] == "ray"
    assert_events_written(folder)


@pytest.mark.slow
def test_an_actor_killed_mid_run_is_replaced_and_the_run_finishes(cluster, tmp_path):
    lines, killed = [], []

    def kill_once(progress):
        if not killed and progress.step >= 400:
            pid, _ = started_actors(lines)[0]
            os.kill(pid, signal.SIGKILL)  # as an out-of-memory kill or a lost node would
            killed.append(pid)
        return False

    result = train(quick(tmp_path, steps=4000), name="kill", console=lines.append,
                   should_stop=kill_once)
    assert killed and result.outcome == "finished" and result.progress.step >= 4000
    assert result.restarts == 1
    assert any(re.match(r"actor 0 died \(.+\); replaced it \(ray actor \w+\)", line) for line in lines), lines
    assert "1 actor(s) replaced" in (tmp_path / "kill" / "summary.txt").read_text()


@pytest.mark.slow
def test_a_run_stopped_on_ray_resumes_on_local_processes(cluster, tmp_path):
    """With gradients computed by the Ray actors, then by the learner: the checkpoint is the same."""
    stopped = train(quick(tmp_path, steps=10**6, gradients_on="actors"), name="move",
                    console=lambda line: None, should_stop=lambda p: p.step >= 1000)
    assert stopped.outcome == "stopped"
    step, updates = stopped.progress.step, stopped.progress.updates
    run = RunDir.existing(tmp_path / "move")
    _, arrays = checkpoint.read(run.path / "checkpoints" / "latest.npz")
    optimizer_steps = int(arrays["optimizer/steps"])  # one per gradient: an update may take several
    lines = []
    resumed = train(quick(tmp_path, steps=step + 1000, backend="processes", actors=2, gradients_on="learner"), resume=run,
                    console=lines.append)
    assert f"resuming {run.path} at step {step:,} (update {updates:,})" in lines
    assert resumed.outcome == "finished" and resumed.progress.updates > updates
    header, arrays = checkpoint.read(run.path / "checkpoints" / "latest.npz")
    assert header["meta"]["updates"] == resumed.progress.updates
    assert int(arrays["optimizer/steps"]) == optimizer_steps + resumed.progress.updates - updates
    saved = json.loads((run.path / "config.json").read_text())
    assert saved["backend"] == "processes" and saved["gradients_on"] == "learner"
    assert_events_written(run.path)


@pytest.mark.slow
def test_apex_dqn_on_two_nodes_inserts_the_actors_priorities(cluster, tmp_path):
    agents = []  # learning never starts: no gradient step refreshes what the actors sent
    result = train(quick(tmp_path, agent="dqn", steps=3000, agent_config={"apex": True, "learning_starts": 10**6}),
                   name="apex", console=lambda line: None, on_start=agents.append)
    assert result.outcome == "finished" and result.restarts == 0
    memory = agents[0].memory
    assert len(memory) > 2000 and agents[0].optimizer.steps == 0
    priorities = memory.raw[:memory.size][memory.raw[:memory.size] > 0]
    assert len(np.unique(priorities)) > 0.9 * len(priorities)  # each step's own, from its actor


@pytest.mark.slow
def test_more_actors_than_the_clusters_cpus_fail_in_one_line_before_any_waits(cluster, tmp_path):
    from workbench.rl import RunFailed

    with pytest.raises(RunFailed, match=r"^5 actors need 5 CPUs \(one each\) and the Ray cluster has 4: "):
        train(quick(tmp_path, actors=5), name="too-many", console=lambda line: None)


def test_local_runs_never_import_ray():
    code = ("import sys; import workbench.cli, workbench.rl, actors; "
            "from workbench.commands import train; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize("args,message", [
    (["--address", "auto"], "--address needs --backend ray"),
    (["--backend", "ray", "--address", "127.0.0.1:9"], "cannot reach a Ray cluster at 127.0.0.1:9"),
])
def test_ray_settings_fail_with_one_line(tmp_path, args, message):
    if "ray" in args:
        pytest.importorskip("ray")
    result = workbench("train", "--logdir", str(tmp_path), "--steps", "100", *args)
    assert result.returncode != 0 and result.stderr.startswith("workbench train: error: ")
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def ray_sessions() -> set:
    return {str(p) for p in Path("/tmp/ray").glob("session_2*")} if Path("/tmp/ray").exists() else set()


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the reaper reads /proc")
def test_a_sigkilled_ray_learner_leaves_no_ray_process_and_no_session_folder(tmp_path):
    """The local Ray instance a run starts goes with its learner, even a SIGKILLed one: Ray's
    agents lived on for a minute and its session folder stayed (actors/ray_reaper.py)."""
    pytest.importorskip("ray")
    from actors.ray_reaper import session_processes

    before = ray_sessions()
    proc = subprocess.Popen([sys.executable, "-m", "workbench.cli", "train", "--env", "CartPole-v1",
                             "--backend", "ray", "--actors", "2", "--steps", "10000000", "--log-every", "0.5",
                             "--logdir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        for line in proc.stdout:  # trained a little: Ray, its agents and the actors are all up
            if re.match(r"step [\d,]+/", line) and not line.startswith("step 0/"):
                break
        (session,) = ray_sessions() - before
        assert session_processes(session)
        os.kill(proc.pid, signal.SIGKILL)  # the learner alone, as `kill -9 PID` does
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while (session_processes(session) or Path(session).exists()) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not session_processes(session) and not Path(session).exists()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
