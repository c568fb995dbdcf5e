"""Faults and bad input (issue 14): a crashed learner leaves no process and no shared memory, a
diverged run never overwrites a finite checkpoint, a failed write is one line and the last
checkpoint stays, and every bad value is refused in one line before anything starts."""
import errno
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest

import nets
from actors import Diverged, InlineActors, Learner
from actors.transport import ActorSpec
from agents import AGENTS, make_agent, make_config
from envs import make_env, probe
from logs import EventWriter
from nets import F, checkpoint
from nets.checkpoint import CheckpointError
from workbench import cli
from workbench.rl import RunFailed, TrainConfig, train
from workbench.runs import RunDir, RunError

WORKBENCH = [sys.executable, "-m", "workbench.cli"]
INLINE = ["--backend", "inline", "--actors", "1", "--envs-per-actor", "2", "--log-every", "60"]


def workbench(*args, timeout=120):
    return subprocess.run([*WORKBENCH, *args], capture_output=True, text=True, timeout=timeout)


def one_line_error(result, code: int, command: str = "train") -> str:
    assert result.returncode == code, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "Warning" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"workbench {command}"), result.stderr
    return lines[0]


# -- a crashed learner leaves nothing behind --------------------------------------------------------
def group_members(pgid: int) -> set[int]:
    """Live (not zombie) processes of a process group."""
    members = set()
    for entry in pathlib.Path("/proc").iterdir():
        try:
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue  # not a process, or it just exited
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.add(int(entry.name))
    return members


def mappers(name: str) -> set[int]:
    """Processes that map a file whose path contains `name`."""
    found = set()
    for entry in pathlib.Path("/proc").iterdir():
        try:
            if name in (entry / "maps").read_text():
                found.add(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs Linux shared memory")
@pytest.mark.parametrize("how", ["SIGKILL to the learner", "SIGTERM to the whole group",
                                 "SIGSTOP to an actor, then SIGKILL to the learner"])
def test_a_learner_that_dies_leaves_no_process_and_no_shared_memory(tmp_path, how):
    learner = subprocess.Popen([*WORKBENCH, "train", "--steps", "10000000", "--actors", "2",
                                "--eval-every", "1000", "--log-every", "0.3", "--logdir", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)  # its own group, as `setsid` gives it
    watchdog = threading.Timer(120, learner.kill)  # a learner that never trains fails the test
    watchdog.start()
    try:
        started = ""
        for line in learner.stdout:
            started = line if line.startswith("started actors: ") else started
            if line.startswith("step "):
                break  # actors and evaluator are running
        group = group_members(learner.pid)
        block = re.search(r"/dev/shm/\S+", pathlib.Path(f"/proc/{learner.pid}/maps").read_text()).group()
        assert len(group) >= 5  # learner, fork server, resource tracker, 2 actors (+ evaluator)
        assert mappers(block) > {learner.pid}  # the actors map the weights
        if how.startswith("SIGSTOP"):  # a stopped actor runs no code of its own: the kernel ends it
            actor = int(re.search(r"0 \(pid (\d+)\)", started).group(1))
            os.kill(actor, signal.SIGSTOP)
            learner.kill()
        elif how.startswith("SIGKILL"):
            learner.kill()
        else:
            os.killpg(learner.pid, signal.SIGTERM)
        output = learner.communicate(timeout=30)[0]
        deadline = time.monotonic() + 10
        while (group_members(learner.pid) or mappers(block)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_members(learner.pid)
        assert not mappers(block) and not os.path.exists(block)  # the memory is freed
        if how.startswith("SIGTERM"):
            assert learner.returncode == 0 and "stopped by SIGTERM" in output, output
    finally:
        watchdog.cancel()
        for pid in group_members(learner.pid):
            os.kill(pid, signal.SIGKILL)


# -- NaN: never a non-finite checkpoint -------------------------------------------------------------
def test_a_run_that_diverges_exits_1_and_keeps_the_finite_checkpoint(tmp_path):
    first = workbench("train", *INLINE, "--steps", "400", "--logdir", str(tmp_path), "--name", "r")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "r"
    latest = folder / "checkpoints" / "latest.npz"
    before = latest.read_bytes()

    result = workbench("train", "--resume", str(folder), "--steps", "800",
                       "--lr", "1e38")  # inf itself is refused up front: it cannot work
    message = one_line_error(result, 1)
    assert re.fullmatch(r"workbench train: error: training diverged at step [\d,]+ \(update \d+\): .*(NaN|nan).*; "
                        r"lower --lr \(it was [\d.e+]+\); the last "
                        rf"checkpoint, {re.escape(str(latest))}, is kept", message)
    assert latest.read_bytes() == before
    presets = AGENTS["a3c"].defaults(probe("CartPole-v1").tags)  # as the run: normalised inputs
    model = make_agent("a3c", *spaces(), make_config("a3c", presets)).model
    assert checkpoint.load(latest, model)["step"] == 400
    assert np.isfinite(model.flat().data).all()
    assert "outcome      failed: training diverged" in (folder / "summary.txt").read_text()


def spaces():
    env = make_env("CartPole-v1")
    return env.observation_space, env.action_space


class Scripted(InlineActors):
    """Inline actors whose agent reports `stats[i]` (merged over its real statistics) in update i."""

    def __init__(self, agent, stats: list[dict]):
        super().__init__(ActorSpec("CartPole-v1", "a3c", agent.config, envs_per_actor=2), 1)
        update, script = agent.update, iter(stats)
        agent.update = lambda batch, progress, into: {**update(batch, progress, into), **next(script, {})}


def learner_with(stats: list[dict], steps=400, **options) -> tuple[Learner, list[str]]:
    nets.seed(0)
    agent = make_agent("a3c", *spaces(), make_config("a3c"))
    lines: list[str] = []
    return Learner(agent, Scripted(agent, stats), steps, console=lines.append, **options), lines


def test_non_finite_losses_are_skipped_and_three_in_a_row_stop_the_run():
    nan = {"value_loss": float("nan")}
    learner, _ = learner_with([nan, nan, {}, nan, nan])  # never three in a row
    assert learner.run() == "finished"

    saved = []
    learner, _ = learner_with([{}, nan, nan, nan], checkpoint=lambda p, periodic: saved.append(p.step))
    with pytest.raises(Diverged, match=r"at step 40 \(update 4\): value_loss nan in 3 updates in a row "
                                       r"\(each skipped\); lower --lr \(it was 0\.\d+\)"):
        learner.run()
    assert saved == []  # no checkpoint after a diverged update


def test_a_loss_that_explodes_without_nan_is_a_warning():
    learner, lines = learner_with([{"value_loss": 5.0}] + [{"value_loss": 1e9}] * 100, scalar_every=0.0)
    assert learner.run() == "finished"
    assert len(learner.warnings) == 1
    assert re.fullmatch(r"losses/value_loss is 1e\+09 at step [\d,]+, 2e\+08 times its 5 in the first "
                        r"update: the run is diverging; lower --lr", learner.warnings[0])
    assert lines.count("warning: " + learner.warnings[0]) == 1


def test_checkpoint_save_refuses_non_finite_weights_and_keeps_the_file(tmp_path):
    model = nets.Sequential(nets.Linear(3, 2))
    path = tmp_path / "latest.npz"
    checkpoint.save(path, model)
    before = path.read_bytes()
    model[0].weight.data[1, 1] = np.inf
    with pytest.raises(CheckpointError, match=r"refusing to write .*latest\.npz: model/0\.weight holds "
                                              r"NaN or Inf .*; the file already there is kept"):
        checkpoint.save(path, model)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["latest.npz"]


def test_check_mode_names_the_parameter_an_optimizer_step_broke_without_numpy_warnings():
    model = nets.Sequential(nets.Linear(3, 4), nets.Linear(4, 2))
    optimizer = nets.optim.SGD(model, float("inf"))
    x, y = np.ones((2, 3), np.float32), np.array([0, 1])
    with warnings.catch_warnings(), nets.check_mode():
        warnings.simplefilter("error")  # a NumPy RuntimeWarning would fail the test
        F.softmax_cross_entropy(model(x), y).backward()
        with pytest.raises(nets.NonFiniteError, match=r"^(NaN|Inf) first appeared in parameter "
                                                      r"0\.weight, after SGD step 1 \(lr inf\)$"):
            optimizer.step()
    assert np.geterr()["invalid"] == "warn"  # restored when check mode ends


def test_train_check_names_where_the_nan_appeared(tmp_path):
    result = workbench("train", *INLINE, "--steps", "400", "--lr", "1e38", "--check",
                       "--logdir", str(tmp_path))
    message = one_line_error(result, 1)
    assert re.fullmatch(r"workbench train: error: check mode stopped the run in update 1 \(step 0\): (NaN|Inf) "
                        r"first appeared in parameter (value_)?trunk\.layers\.0\.(weight|bias), after RMSProp step 1 "
                        r"\(lr 1e\+38\); no checkpoint was written", message)


# -- filesystem errors ------------------------------------------------------------------------------
def test_a_full_disk_stops_the_run_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    writes = []
    real_write = checkpoint._write_atomically

    def fill_up(path, arrays):
        if len(writes) == 2:  # latest.npz and step-*.npz of the first periodic checkpoint fit
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        writes.append(path)
        real_write(path, arrays)

    monkeypatch.setattr(checkpoint, "_write_atomically", fill_up)
    config = TrainConfig(backend="inline", actors=1, envs_per_actor=2, steps=1000, checkpoint_every=100,
                         logdir=str(tmp_path), log_every=60)
    with pytest.raises(RunFailed) as failure:
        train(config, name="full", console=lambda line: None)
    latest = tmp_path / "full" / "checkpoints" / "latest.npz"
    assert str(failure.value) == (f"the run stopped on a write error at step 200 in {tmp_path / 'full'}: "
                                  f"[Errno 28] No space left on device; the last checkpoint, {latest}, "
                                  f"is kept")
    assert checkpoint.read(latest)[0]["meta"]["step"] == 100
    summary = (tmp_path / "full" / "summary.txt").read_text()
    assert "outcome      failed: the run stopped on a write error at step 200" in summary


def test_an_event_file_write_error_reaches_the_caller_and_close_does_not_hang(tmp_path):
    events = EventWriter(str(tmp_path), flush_secs=0)

    def no_space(event):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    events._file.events_file.write_event = no_space
    deadline = time.monotonic() + 10
    with pytest.raises(OSError, match="No space left on device"):
        while time.monotonic() < deadline:  # the writer thread meets the error soon after
            events.scalars({"loss": 1.0}, 0)
            time.sleep(0.01)
    with pytest.raises(OSError, match="No space left on device"):
        events.close()


@pytest.mark.parametrize("logdir,reason", [
    ("/proc/workbench-test/runs", "No such file or directory"),
    ("FILE", "Not a directory"),
    ("FILE/runs", "Not a directory"),
])
def test_a_logdir_that_cannot_hold_a_run_folder_is_one_line(tmp_path, logdir, reason):
    (tmp_path / "FILE").write_text("")
    logdir = logdir.replace("FILE", str(tmp_path / "FILE"))
    message = one_line_error(workbench("train", "--logdir", logdir, "--steps", "100"), 2)
    assert re.fullmatch(rf"workbench train: error: cannot create the run folder {re.escape(logdir)}/CartPole-v1-"
                        rf"a3c-\S+: {reason}; --logdir must be a writable directory", message)


def test_a_read_only_logdir_is_a_run_error(tmp_path, monkeypatch):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(pathlib.Path, "mkdir", read_only)  # a read-only mount, even for root
    with pytest.raises(RunError, match=r"^cannot create the run folder .*/x: Read-only file system; "
                                       r"--logdir must be a writable directory$"):
        RunDir.create(tmp_path, "x")


def test_runs_started_in_the_same_second_get_a_folder_each_even_when_both_looked_first(tmp_path, monkeypatch):
    """Seeds launched together take the same default name: the second must get "-2", not an error
    (each saw the name free, then one created it: Path.exists says free to both here)."""
    (tmp_path / "CartPole-v1-a3c-20261207-034611").mkdir()
    monkeypatch.setattr(pathlib.Path, "exists", lambda self: False)
    run = RunDir.create(tmp_path, "CartPole-v1-a3c-20261207-034611")
    assert run.path.name == "CartPole-v1-a3c-20261207-034611-2"
    with pytest.raises(RunError, match="already exists; continue it with --resume"):
        RunDir.create(tmp_path, "CartPole-v1-a3c-20261207-034611", chosen=True)


# -- mistyped values --------------------------------------------------------------------------------
@pytest.mark.parametrize("args,message", [
    (["--set", "lr=abc"], "lr must be a number, got 'abc'"),
    (["--set", "hidden=abc"], "hidden must be a list of integers like [64, 64], got 'abc'"),
    (["--set", "t_max=abc"], "t_max must be an integer, got 'abc'"),
    (["--set", "gamma=abc"], "gamma must be a number, got 'abc'"),
    (["--set", "gamma=1.5"], "gamma must be in [0, 1], got 1.5"),
    (["--set", "n_step=x", "--agent", "nstep-q"], "n_step must be an integer or null, got 'x'"),
    (["--set", "trunk=bogus"], "trunk must be one of auto, mlp, relu-mlp, small, nature, got 'bogus'"),
    (["--lr", "-1"], "lr must be >= 0, got -1.0"),
    (["--lr", "nan"], "lr must be a finite number >= 0, got nan"),
    (["--keep-checkpoints", "-1"], "keep-checkpoints must be >= 0, got -1"),
    (["--env-option", "no_such_option=1"],
     "--env-option no_such_option: CartPole-v1 takes no such keyword; its own: sutton_barto_reward; "),
    (["--env", "FrozenLake-v1", "--env-option", "slipery=False"],
     "--env-option slipery: FrozenLake-v1 takes no such keyword; did you mean is_slippery? its own: desc, "),
    (["--env-option", "max_episode_steps=-3"],
     "environment 'CartPole-v1' with --env-option max_episode_steps=-3 failed: ValueError: "),
    (["--env-option", "max_episode_steps=abc"],  # a TypeError names the option as a ValueError does
     "environment 'CartPole-v1' with --env-option max_episode_steps='abc' failed: TypeError: "),
    # what cannot work is bounded up front (issue 29)
    (["--seed", "-1"], "seed must be >= 0, got -1"),
    (["--entropy-beta", "inf"], "entropy_beta must be a finite number >= 0, got inf"),
    (["--t-max", "1000000000"], "one rollout (4,000,000,000 steps: t_max x envs-per-actor) is longer than "
                                "--steps 100,000"),
    (["--envs-per-actor", "100000", "--steps", "2000"], "one rollout (500,000 steps: t_max x envs-per-actor) "
                                                        "is longer than --steps 2,000"),
    (["--actors", "1000"], "actors must be at most 8 per core on one machine"),
    (["--actors", "1000", "--backend", "ray"], "actors must be at most 8 per core on one machine"),
    (["--name", "../../escape"], "--name must be one folder name, without '/' or '..', got '../../escape'"),
])
def test_a_mistyped_value_is_one_line_before_anything_starts(tmp_path, args, message):
    result = workbench("train", "--logdir", str(tmp_path / "runs"), *args)
    assert one_line_error(result, 2).startswith(f"workbench train: error: {message}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("values,message", [
    ({"actors": "two"}, "actors must be an integer or null, got 'two'"),
    ({"agent_config": [1]}, "agent-config must be a JSON object, got [1]"),
    ({"env_options": [1]}, "env-options must be a JSON object, got [1]"),
])
def test_a_mistyped_value_in_a_config_file_is_one_line(tmp_path, values, message):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(values))
    result = workbench("train", "--config", str(config), "--logdir", str(tmp_path / "runs"))
    assert one_line_error(result, 2) == f"workbench train: error: {message}"
    assert not (tmp_path / "runs").exists()


# -- recipes ----------------------------------------------------------------------------------------
@pytest.fixture
def recipe(tmp_path, capsys):
    def run(*args) -> tuple[int, str]:
        code = cli.main(["recipe", *args, "--logdir", str(tmp_path / "runs"), "--no-progress"])
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Warning" not in err, err
        return code, err.strip()

    yield run
    nets.set_check_mode(False)  # --check turned it on in this process


@pytest.mark.parametrize("args,code,message", [
    (["char-rnn", "--text", "DIR"], 2, "char-rnn: error: DIR is not a regular file; expected a UTF-8 text file"),
    (["cbow", "--text", "DIR"], 2, "cbow: error: DIR is not a regular file; expected a UTF-8 text file"),
    (["char-rnn", "--text", "/dev/zero"], 2, "char-rnn: error: /dev/zero is not a regular file; expected a "
                                             "UTF-8 text file"),
    (["caesar", "--lr", "inf"], 2, "caesar: error: --lr must be a finite number >= 0, got inf"),
    (["char-rnn", "--text", "DIR/empty.txt"], 2, "char-rnn: error: DIR/empty.txt is empty; expected a "
                                                 "UTF-8 text"),
    (["caesar", "--lr", "nan"], 2, "caesar: error: --lr must be a finite number >= 0, got nan"),
    (["caesar", "--lr", "-1"], 2, "caesar: error: --lr must be >= 0, got -1.0"),
    (["caesar", "--epochs", "0"], 2, "caesar: error: --epochs must be >= 1, got 0"),
    (["caesar", "--batch-size", "0"], 2, "caesar: error: --batch-size must be >= 1, got 0"),
    # a recipe's own flag, checked before the data it would need (no --text here)
    (["char-rnn", "--top-k", "0"], 2, "char-rnn: error: --top-k must be >= 1, got 0"),
    (["caesar", "--lr", "1e38"], 1, "caesar: error: the training loss became nan at step 2 (epoch 1); "
                                    "lower --lr or set --clip"),
    (["caesar", "--lr", "1e38", "--check"], 1, "caesar: error: Inf first appeared in the output of Linear, "
                                               "in layer out (Linear)"),
])
def test_bad_recipe_input_is_one_line(tmp_path, recipe, args, code, message):
    (tmp_path / "empty.txt").write_text("")
    args = [arg.replace("DIR", str(tmp_path)) for arg in args]
    assert recipe(*args) == (code, "workbench recipe " + message.replace("DIR", str(tmp_path)))


# -- leftovers: temporary files and periodic checkpoints --------------------------------------------
def test_resume_removes_stale_temporaries_and_old_periodic_checkpoints_are_pruned(tmp_path):
    result = workbench("train", *INLINE, "--steps", "600", "--checkpoint-every", "100",
                       "--keep-checkpoints", "2", "--logdir", str(tmp_path), "--name", "r")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "r"
    periodic = sorted(p.name for p in (folder / "checkpoints").glob("step-*.npz"))
    assert periodic == ["step-000000500.npz", "step-000000600.npz"]
    stale = [folder / "checkpoints" / ".latest.npz.k1ll3d.tmp", folder / ".summary.txt.x.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    result = workbench("train", "--resume", str(folder), "--steps", "700")
    assert result.returncode == 0, result.stderr
    assert not any(path.exists() for path in stale)
    periodic = sorted(p.name for p in (folder / "checkpoints").glob("step-*.npz"))
    assert periodic == ["step-000000600.npz", "step-000000700.npz"]


def test_pruning_orders_periodic_checkpoints_by_step(tmp_path):
    run = RunDir.create(tmp_path, "r")
    run.checkpoint_path().parent.mkdir()
    for step in (999_999_999, 1_000_000_000, 5):
        run.checkpoint_path(step).write_bytes(b"")
    run.prune_checkpoints(2)
    assert sorted(p.name for p in run.checkpoint_path().parent.iterdir()) == [
        "step-1000000000.npz", "step-999999999.npz"]
    run.prune_checkpoints(0)  # keeps them all
    assert len(list(run.checkpoint_path().parent.iterdir())) == 2


# -- clearer messages -------------------------------------------------------------------------------
def test_a_checkpoint_holding_pickled_objects_is_refused_for_safety(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, payload=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match=r"evil\.npz holds pickled Python objects \(an object "
                                              r"array\), which could run code when loaded; refused "
                                              r"for safety"):
        checkpoint.read(path)


def test_resuming_into_another_env_names_both_sides(tmp_path):
    assert workbench("train", *INLINE, "--steps", "200", "--logdir", str(tmp_path),
                     "--name", "r").returncode == 0
    result = workbench("train", "--resume", str(tmp_path / "r"), "--env", "Acrobot-v1")
    assert one_line_error(result, 2) == (
        f"workbench train: error: {tmp_path / 'r' / 'checkpoints' / 'latest.npz'} was trained on CartPole-v1 "
        f"(a3c, mlp 64,64), but this run is for Acrobot-v1 (a3c, mlp 64,64); resume with the run's "
        f"own settings or start a new run")


def test_a_corrupt_or_non_finite_latest_checkpoint_names_the_periodic_one_to_resume_from(tmp_path):
    from nets import checkpoint

    result = workbench("train", *INLINE, "--steps", "300", "--checkpoint-every", "100", "--logdir", str(tmp_path),
                       "--name", "r")
    assert result.returncode == 0, result.stderr
    latest = tmp_path / "r" / "checkpoints" / "latest.npz"
    header, arrays = checkpoint.read(latest)
    hint = "; the newest periodic checkpoint beside it is step-000000300.npz: copy it over latest.npz to resume from there"
    poisoned = {name: np.full_like(a, np.nan) if name.startswith("model/") and a.dtype == np.float32 else a
                for name, a in arrays.items()}
    checkpoint._write_atomically(str(latest), {**poisoned, checkpoint.HEADER: np.frombuffer(
        json.dumps(header).encode(), np.uint8)})
    resume = ("train", "--resume", str(tmp_path / "r"), "--steps", "400")
    assert one_line_error(workbench(*resume), 2) == (
        f"workbench train: error: {latest} holds non-finite weights (NaN or Inf), so training cannot continue from "
        f"it{hint}")
    played = workbench("play", str(tmp_path / "r"))
    assert "holds non-finite weights (NaN or Inf): play an earlier checkpoint" in one_line_error(played, 2, "play")
    latest.write_bytes(b"not a checkpoint")
    message = one_line_error(workbench(*resume), 2)
    assert message.startswith(f"workbench train: error: {latest}") and message.endswith(hint)


def test_a_run_folder_has_one_writer_and_a_killed_owner_leaves_no_stale_lock(tmp_path):
    """A second `--resume` of a run that is being written is refused in one line naming the
    writer's pid; once the writer ends (even by SIGKILL) the folder can be resumed."""
    first = workbench("train", *INLINE, "--steps", "400", "--logdir", str(tmp_path), "--name", "r")
    assert first.returncode == 0, first.stderr
    folder = tmp_path / "r"
    owner = RunDir.existing(folder).claim()  # this test process is the writer now
    resumed = workbench("train", "--resume", str(folder), "--steps", "800")
    assert one_line_error(resumed, 2) == (f"workbench train: error: run folder {folder} is being written by process "
                                          f"{os.getpid()}; wait for it to end (or stop it) before resuming, "
                                          f"or start a new run")
    owner.release()
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from workbench.runs import RunDir; "
                               f"run = RunDir({str(folder)!r}).claim(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunError, match=f"being written by process {holder.pid};"):
        RunDir(folder).claim()
    holder.kill()
    holder.wait()
    resumed = workbench("train", "--resume", str(folder), "--steps", "800")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout


def test_a_full_disk_names_the_file_it_could_not_write(tmp_path, monkeypatch):
    """ENOSPC from a write carries no file name: the error says which file, and no temporary
    file is left behind."""
    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    run = RunDir.create(tmp_path, "r")
    with pytest.raises(OSError, match=rf"cannot write {re.escape(str(run.config_path))}: No space left on device"):
        run.write_config({"env": "CartPole-v1"})
    assert list(run.path.iterdir()) == []


def test_a_network_that_cannot_fit_in_memory_is_one_line_before_any_actor_starts(tmp_path):
    """(A replay memory too big is not caught yet: it is allocated after the actors start.)"""
    result = workbench("train", "--agent", "dqn", *INLINE, "--steps", "400", "--logdir", str(tmp_path),
                       "--hidden", "200000,200000")
    message = one_line_error(result, 2)
    assert re.fullmatch(r"workbench train: error: dqn's network and memory do not fit in this machine's memory "
                        r"\(Unable to allocate [\d.]+ [GT]iB .*\); lower the sizes \(--hidden, --set "
                        r"buffer_size=\.\.\.\)", message), message
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_check_mode_names_the_op_also_where_actor_processes_compute_the_gradients(tmp_path):
    result = workbench("train", "--env", "CartPole-v1", "--actors", "1", "--lr", "1e30", "--check",
                       "--steps", "20000", "--logdir", str(tmp_path))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NonFiniteError: Inf first appeared in the output of ActorCriticLoss" in result.stderr, result.stderr
