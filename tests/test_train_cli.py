"""`workbench train` end to end, in subprocesses: flags and errors, an actor killed mid-run,
SIGTERM then --resume, and what lands in the run folder."""
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from agents import AGENTS
from nets import checkpoint

WORKBENCH = [sys.executable, "-m", "workbench.cli"]
QUICK = ["--env", "CartPole-v1", "--actors", "2", "--envs-per-actor", "2", "--log-every", "0.3"]


def workbench(*args, timeout=120):
    return subprocess.run([*WORKBENCH, *args], capture_output=True, text=True, timeout=timeout)


class Running:
    """A workbench subprocess whose output lines (stdout and stderr, a progress bar's updates
    included) can be awaited as they come."""

    def __init__(self, *args, cwd=None):
        self.proc = subprocess.Popen([*WORKBENCH, *args], cwd=cwd, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        # Raw reads split at \r and \n: a progress bar's update starts with \r and has no end until
        # the next one, so each read's text counts as whole lines (a write of one line is never
        # split across reads of a pipe). Blank lines (a bar being cleared) are left out.
        while chunk := os.read(self.proc.stdout.fileno(), 65536):
            for line in re.split(rb"[\r\n]+", chunk):
                if line.strip():
                    self._queue.put(line.decode("utf-8", "replace"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; output:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 60.0) -> int:
        code = self.proc.wait(timeout=timeout)
        while (line := self._queue.get(timeout=5)) is not None:
            self.lines.append(line)
        return code

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def running():
    started = []

    def start(*args, cwd=None):
        started.append(Running(*args, cwd=cwd))
        return started[-1]

    yield start
    for r in started:
        r.kill()


def test_help_explains_every_flag():
    out = workbench("train", "--help").stdout
    for flag in ("--env", "--agent", "--actors", "--envs-per-actor", "--steps", "--seed", "--env-option",
                 "--backend", "--gradients-on", "--lr", "--gamma", "--t-max", "--entropy-beta", "--target-update",
                 "--hidden", "--set", "--config", "--resume", "--logdir", "--name",
                 "--checkpoint-every", "--log-every", "--histogram-every", "--actor-timeout",
                 "--max-in-flight"):
        assert re.search(rf"^\s+{flag}\b.*\S", out, re.M), flag
    agent_help = " ".join(re.search(r"^\s+--agent AGENT\s+(.*?)^\s+--", out, re.M | re.S).group(1).split())
    for name, cls in AGENTS.items():  # every registered agent, with its summary
        assert f"{name}: {cls.summary}" in agent_help, name


@pytest.mark.parametrize("args,message", [
    (["--env", "CartPol-v1"], "unknown environment id 'CartPol-v1'; close matches: CartPole-v1"),
    (["--actors", "0"], "actors must be >= 1, got 0"),
    (["--set", "lrr=0.1"], "a3c has no setting lrr (did you mean lr?); its settings: entropy_beta"),
    (["--set", "steps=1000"], "--set steps: steps is a run setting, not a3c's: give it as --steps 1000"),
    (["--agent", "reinforce", "--envs-per-actor", "4"], "envs-per-actor must be 1"),
    (["--entropy-beta", "0.1", "--agent", "nstep-q"], "--entropy-beta does not apply to nstep-q, which has "
                                                      "no entropy_beta setting"),
    (["--resume", "no-such-run"], "run folder not found: no-such-run"),
    (["--resume", "no-such-run", "--config", "c.json"], "--resume no-such-run continues that run with "
                                                         "its own config.json: leave out --config"),
])
def test_bad_settings_fail_with_one_line(tmp_path, args, message):
    result = workbench("train", "--logdir", str(tmp_path), *args)
    assert result.returncode == 2
    assert result.stderr.startswith("workbench train: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # nothing was started


@pytest.mark.parametrize("contents,message", [
    # a config file's keys are named as written there, not in their flag's form
    ('{"actor-timeout": 30}', "a run's config has no setting actor-timeout (did you mean actor_timeout?); "
                              "its settings: actor_timeout, actors,"),
    (b"GIF89a\x90\x01", "settings.json is not a JSON text file (not UTF-8)"),
    (None, "is a folder, not a JSON file: name its config.json, "),
])
def test_config_file_mistakes_fail_with_one_line(tmp_path, contents, message):
    config = tmp_path / "settings.json"
    if contents is None:  # a run folder given for its config.json
        config.mkdir()
        (config / "config.json").write_text("{}")
    elif isinstance(contents, bytes):
        config.write_bytes(contents)
    else:
        config.write_text(contents)
    result = workbench("train", "--config", str(config), "--logdir", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert result.stderr.startswith("workbench train: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_file_is_read_and_flags_override_it(tmp_path):
    config = tmp_path / "settings.json"
    config.write_text(json.dumps({"agent": "nstep-q", "steps": 999, "seed": 3,
                                  "agent_config": {"lr": 0.005}}))
    result = workbench("train", "--config", str(config), "--steps", "400", "--lr", "0.002",
                       "--backend", "inline", "--logdir", str(tmp_path), "--name", "over")
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "over" / "config.json").read_text())
    assert saved["agent"] == "nstep-q" and saved["seed"] == 3 and saved["steps"] == 400
    assert saved["agent_config"]["lr"] == 0.002
    assert saved["agent_config"]["target_update_interval"] == 40  # defaults are written out
    assert (tmp_path / "over" / "summary.txt").read_text().count("finished at step") == 1


@pytest.mark.slow
def test_actor_killed_with_sigkill_is_replaced_and_the_run_finishes(tmp_path, running):
    run = running("train", *QUICK, "--steps", "30000", "--logdir", str(tmp_path), "--name", "kill")
    pids = dict(re.findall(r"(\d+) \(pid (\d+)\)", run.wait_for(r"started actors: ").string))
    run.wait_for(r"^step ")  # training is under way
    os.kill(int(pids["0"]), signal.SIGKILL)
    run.wait_for(r"actor 0 was killed by SIGKILL; replaced it \(pid \d+\)")
    assert run.finish() == 0, "\n".join(run.lines)
    assert any(line.startswith("done: ") for line in run.lines)
    summary = (tmp_path / "kill" / "summary.txt").read_text()
    assert "finished at step" in summary and "1 actor(s) replaced" in summary


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_resume_continues_from_it(tmp_path, running):
    run = running("train", *QUICK, "--steps", "10000000", "--histogram-every", "5",
                  "--logdir", str(tmp_path), "--name", "stop")
    run.wait_for(r"^step ")
    run.proc.send_signal(signal.SIGTERM)
    stopped = run.wait_for(r"stopped by SIGTERM at step ([\d,]+); checkpoint saved")
    assert run.finish() == 0
    step = int(stopped.group(1).replace(",", ""))
    folder = tmp_path / "stop"
    header, arrays = checkpoint.read(folder / "checkpoints" / "latest.npz")
    assert header["meta"]["step"] == step and header["optimizer"]["type"] == "RMSProp"
    saved_updates, saved_steps = header["meta"]["updates"], int(arrays["optimizer/steps"])

    result = workbench("train", "--resume", str(folder), "--steps", str(step + 3000))
    assert result.returncode == 0, result.stderr
    assert f"at step {step:,} (update {saved_updates:,})" in result.stdout
    done = int(re.search(r"done: ([\d,]+) steps", result.stdout).group(1).replace(",", ""))
    assert step + 3000 <= done < step + 3000 + 1000
    header, arrays = checkpoint.read(folder / "checkpoints" / "latest.npz")
    assert header["meta"]["updates"] > saved_updates
    # optimizer state carried on: an update steps once per gradient that arrived in it
    assert int(arrays["optimizer/steps"]) >= saved_steps + header["meta"]["updates"] - saved_updates
    assert json.loads((folder / "config.json").read_text())["steps"] == step + 3000
    assert_events_written(folder)


def assert_events_written(folder):
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    events = event_accumulator.EventAccumulator(str(folder), size_guidance={"histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("charts/episodic_return", "charts/episodic_length", "charts/fps", "losses/policy_loss",
                "losses/value_loss", "losses/entropy", "charts/learning_rate"):
        assert tag in scalars, sorted(scalars)
    histograms = events.Tags()["histograms"]
    assert "weights/trunk.layers.0.weight" in histograms and "biases/policy.bias" in histograms
    steps = [e.step for e in events.Scalars("losses/policy_loss")]
    assert steps == sorted(steps) and steps[-1] > steps[0]


def test_unknown_env_in_a_saved_config_is_reported(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"env": "CartPole-v9"}))
    result = workbench("train", "--config", str(config), "--logdir", str(tmp_path))
    assert result.returncode == 2 and "close matches: CartPole-v1" in result.stderr


def test_tensorboard_opens_on_the_curves_histograms_only_when_asked(tmp_path):
    """An RL run writes no weight/bias histograms unless --histogram-every asks for them: they
    would fill TensorBoard's landing page above charts/episodic_return."""
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    for name, flags in (("plain", []), ("asked", ["--histogram-every", "5"])):
        result = workbench("train", "--env", "CartPole-v1", "--backend", "inline", "--steps", "3000",
                           "--logdir", str(tmp_path), "--name", name, *flags)
        assert result.returncode == 0, result.stderr
        events = event_accumulator.EventAccumulator(str(tmp_path / name), size_guidance={"histograms": 0})
        events.Reload()
        assert "charts/episodic_return" in events.Tags()["scalars"]
        assert bool(events.Tags()["histograms"]) == (name == "asked"), events.Tags()["histograms"]


@pytest.mark.parametrize("text, value", [("is_slippery=False", False), ("is-slippery=false", False),
                                         ("map_name=8x8", "8x8"), ("max_episode_steps=200", 200),
                                         ("goal=None", None), ("sizes=[1, 2]", [1, 2])])
def test_a_key_value_reads_json_and_python_s_constants(text, value):
    from workbench.commands.train import key_value

    assert key_value(text) == (text.partition("=")[0].replace("-", "_"), value)


def test_steps_may_be_written_as_a_float_and_agents_in_capitals():
    from workbench.cli import build_parser

    args = build_parser().parse_args(["train", "--steps", "1e5", "--agent", "PPO"])
    assert (args.steps, args.agent) == (100_000, "ppo")


def test_an_agent_setting_in_a_run_config_is_told_where_it_belongs():
    from workbench.rl import TrainConfig

    with pytest.raises(ValueError, match=r'^lr: agent settings go under agent_config, e\.g\. '
                                         r'\{"agent_config": \{"lr": 0\.1\}\}$'):
        TrainConfig.from_dict({"env": "CartPole-v1", "lr": 0.1})
