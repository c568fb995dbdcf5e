"""One stop/resume story for `workbench train` and `workbench recipe`: SIGINT and SIGTERM finish
the step, save a checkpoint and print one line naming the command that continues; `--resume RUN`
continues exactly (mid-epoch for recipes); a finished run says so without starting anything."""
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import nets
from nets import F, checkpoint
from workbench import cli, training
from workbench.recipes import caesar
from workbench.recipes.common import ClassificationTask
from workbench.runs import RunDir

from test_train_cli import running  # noqa: F401 - the fixture

WORKBENCH = [sys.executable, "-m", "workbench.cli"]
STOPPED = re.compile(r"stopped by (SIGINT|SIGTERM) at step ([\d,]+); checkpoint saved\. "
                     r"Continue with: (workbench (?:train|recipe caesar) --resume \S+)")
# CartPole in the learner's process: fast to start; 30,000 steps take a few seconds
TRAIN = ["train", "--env", "CartPole-v1", "--backend", "inline", "--log-every", "0.2"]
# 10,000 steps an epoch, about 1.5 s; the progress bar (stderr: updates end in \r) shows where
RECIPE = ["recipe", "caesar", "--samples", "100000", "--epochs", "2"]


def number(text: str) -> int:
    return int(text.replace(",", ""))


def run_printed(command: str, cwd) -> subprocess.CompletedProcess:
    """`command` as the user would type it, `workbench` being this interpreter's."""
    words = shlex.split(command)
    assert words[0] == "workbench"
    return subprocess.run([*WORKBENCH, *words[1:]], cwd=cwd, capture_output=True, text=True, timeout=120)


# -- a signal to a running command ------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("command", ["train", "recipe"])
def test_a_signal_stops_with_one_line_exit_0_and_the_printed_command_resumes(tmp_path, running, command, sig):
    if command == "train":
        args, continued = [*TRAIN, "--steps", "30000", "--name", "run"], "workbench train --resume runs/run"
    else:
        args, continued = [*RECIPE, "--name", "run"], "workbench recipe caesar --resume runs/run"
    run = running(*args, cwd=tmp_path)
    if command == "train":
        run.wait_for(r"^step [\d,]+/30,000 .* steps/s")  # training is under way
    else:  # into the second epoch, to show that an epoch need not end for a stop
        while int(run.wait_for(r"^epoch 2/2: .*\| (\d+)/20000").group(1)) <= 10000:
            pass
    run.proc.send_signal(sig)
    assert run.finish() == 0, "\n".join(run.lines)
    stops = [STOPPED.fullmatch(line) for line in run.lines if line.startswith("stopped")]
    assert len(stops) == 1 and stops[0], run.lines
    assert run.lines[-1] == stops[0].group(0)  # the last word: nothing printed after it
    name, step, resume = stops[0].group(1), number(stops[0].group(2)), stops[0].group(3)
    assert name == sig.name and resume == continued
    folder = tmp_path / "runs" / "run"
    assert checkpoint.read_meta(folder / "checkpoints" / "latest.npz")["step"] == step
    summary = (folder / "summary.txt").read_text()

    resumed = run_printed(resume, tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    if command == "train":
        assert f"stopped at step {step:,} of 30,000" in summary
        assert f"resuming runs/run at step {step:,}" in resumed.stdout
        assert re.search(r"^done: [\d,]+ steps", resumed.stdout, re.M)
        assert "outcome      finished at step" in (folder / "summary.txt").read_text()
    else:
        assert 10000 < step < 20000, step
        assert f"stopped by {sig.name} at step {step:,}, {step - 10000:,} of 10,000 batches into epoch 2" in summary
        assert f"resumed from runs/run/checkpoints/latest.npz: epoch 1, step {step}, {step - 10000} batches " \
               f"into epoch 2" in resumed.stdout
        assert "epochs: 2 (20000 steps)" in (folder / "summary.txt").read_text()


# -- resuming a finished run ------------------------------------------------------------------------
@pytest.mark.slow
def test_resuming_a_finished_train_run_says_so_before_anything_starts(tmp_path):
    first = subprocess.run([*WORKBENCH, *TRAIN, "--steps", "400", "--name", "r"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    latest = tmp_path / "runs" / "r" / "checkpoints" / "latest.npz"
    before = latest.read_bytes()
    step = checkpoint.read_meta(latest)["step"]
    for given in ("runs/r", "runs/r/config.json"):  # the folder, or its config.json
        again = run_printed(f"workbench train --resume {given}", tmp_path)
        assert again.returncode == 0 and again.stderr == ""
        assert again.stdout == f"run r is finished: {step:,} of 400 steps; pass --steps N to train further\n"
    assert latest.read_bytes() == before
    further = run_printed("workbench train --resume runs/r --steps 600", tmp_path)
    assert further.returncode == 0 and f"resuming runs/r at step {step:,}" in further.stdout
    assert checkpoint.read_meta(latest)["step"] >= 600


def test_a_run_that_ends_past_its_steps_says_why(tmp_path):
    """Updates learn from whole rollouts (here 4 envs x 5 steps from each of 2 actors), so
    --steps 50 is passed inside the update that reaches it; the last line says so."""
    result = subprocess.run([*WORKBENCH, *TRAIN, "--steps", "50", "--name", "r"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    done = re.search(r"^done: ([\d,]+) steps \(([\d,]+) past --steps 50: the learner counts whole updates of "
                     r"whole rollouts\); summary in runs/r/summary.txt$", result.stdout, re.M)
    assert done and number(done.group(1)) - 50 == number(done.group(2)) > 0, result.stdout


FAST = ["--samples", "260", "--no-progress"]


def recipe(tmp_path, *flags) -> int:
    return cli.main(["recipe", "caesar", *FAST, "--logdir", str(tmp_path), *flags])


def test_resuming_a_finished_recipe_run_says_so_without_loading_or_building(tmp_path, capsys, monkeypatch):
    assert recipe(tmp_path, "--epochs", "2", "--name", "done") == 0
    assert recipe(tmp_path, "--lr", "0", "--patience", "1", "--epochs", "5", "--name", "early") == 0
    capsys.readouterr()
    latest = tmp_path / "done" / "checkpoints" / "latest.npz"
    before = latest.read_bytes()

    def never(*args, **kwargs):
        raise AssertionError("a finished run builds no model")

    with monkeypatch.context() as patched:
        patched.setattr(caesar, "CaesarNet", never)
        patched.setattr(caesar, "letters", never)  # nor makes its data
        assert cli.main(["recipe", "caesar", "--resume", str(tmp_path / "done")]) == 0
        assert capsys.readouterr().out == "run done is finished: 2 of 2 epochs; pass --epochs N to train further\n"
        assert cli.main(["recipe", "caesar", "--resume", str(tmp_path / "early" / "config.json"), "--epochs", "9"]) == 0
        assert capsys.readouterr().out == ("run early is finished: early stopping ended it at epoch 2 (best "
                                           "epoch 1); nothing left to train\n")
    assert latest.read_bytes() == before
    assert cli.main(["recipe", "caesar", "--resume", str(tmp_path / "done"), "--epochs", "3"]) == 0  # further
    assert checkpoint.read_meta(latest)["epoch"] == 3


# -- the mid-epoch checkpoint resumes exactly -------------------------------------------------------
class MLP(nets.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nets.Linear(4, 16)
        self.drop = nets.Dropout(0.3)  # the engine's generator must be carried over
        self.fc2 = nets.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


class NoisyTask(ClassificationTask):
    """Its batches draw while the epoch goes, as augmentation does: from the data generator, and
    from the engine's (which the model's dropout draws from too)."""

    def batches(self, rng):
        for x, y in super().batches(rng):
            kept = nets.rng.generator().random(x.shape) > 0.1
            yield (x + rng.normal(0, 0.1, x.shape).astype(np.float32)) * kept, y


def blobs(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.eye(3, 4, dtype=np.float32) * 2
    return centres[y] + rng.standard_normal((n, 4)).astype(np.float32) * 0.5, y


class Quiet:
    """Stands in for the TensorBoard writer."""

    writer = property(lambda self: self)

    def scalars(self, values, step):
        pass

    def histograms(self, module, step):
        pass

    def flush(self):
        pass


def fit(folder, resume=False, stop_at=None):
    """3 epochs of 15 steps; with `stop_at`, stopped when that many steps are done."""
    nets.seed(3)
    task = NoisyTask(MLP(), {"train": blobs(240, 1), "val": blobs(60, 2)}, batch_size=16)
    optimizer = nets.optim.Adam(task.model, 0.01)
    config = training.FitConfig(epochs=3, schedule="plateau", plateau_patience=0, progress=False,
                                log_every=4, seed=7, should_stop=lambda step: step == stop_at)
    result = training.fit(task, optimizer, config, RunDir(folder), Quiet(), resume=resume, log=lambda line: None)
    return task.model, optimizer, result


@pytest.mark.parametrize("stops", [(20,), (0,), (15,), (7, 20, 38)])  # steps; 15 an epoch
def test_stopped_mid_epoch_and_resumed_it_ends_as_an_uninterrupted_run(tmp_path, stops):
    model, optimizer, straight = fit(tmp_path / "straight")
    resume = False
    for stop in stops:
        with pytest.raises(training.Stopped) as stopped:
            fit(tmp_path / "split", resume, stop_at=stop)
        assert stopped.value.result.steps == stop
        # (at step 15 the first epoch's batches are done, its validation not yet)
        assert stopped.value.result.epochs * 15 + stopped.value.batches == stop
        nets.seed(999)  # whatever happens in between must not matter
        resume = True
    resumed_model, resumed_optimizer, resumed = fit(tmp_path / "split", resume=True)
    np.testing.assert_array_equal(resumed_model.flat().data, model.flat().data)
    assert resumed_optimizer.steps == optimizer.steps and resumed_optimizer.lr == optimizer.lr
    untimed = [[{k: v for k, v in record.items() if k != "seconds"} for record in result.history]
               for result in (resumed, straight)]
    assert untimed[0] == untimed[1]  # the epochs' training-loss means and validation too


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.2, 0.5, 0.8, 1.2])
def test_ctrl_c_while_the_run_starts_is_one_line_and_leaves_no_process(tmp_path, delay):
    """Ctrl-C reaches the whole process group: while the commands import (the learner's first
    fraction of a second) it is 'interrupted' (exit 130, no run); while the fork server imports
    (it starts with the signals blocked, so it survives) and the actors start, the run stops at
    step 0 with its line (exit 0). Never a traceback, never a process left, never a Ctrl-C lost
    (the run going on to its end)."""
    proc = subprocess.Popen([*WORKBENCH, "train", "--env", "CartPole-v1", "--actors", "2", "--steps", "300000",
                             "--logdir", str(tmp_path), "--name", "r"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert "Traceback" not in out, out
    last = out.strip().splitlines()[-1]
    assert (proc.returncode, last) == (130, "interrupted") or (proc.returncode == 0 and STOPPED.match(last)), out
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)  # anything of the group left (actors, fork server)?
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail("processes of the run are still alive 10 s after it stopped")


def _cli_run_as_a_module(tmp_path, defines_build: str) -> subprocess.CompletedProcess:
    """`python -m` a module whose code `defines_build` (a `build` function) stands in for the
    commands' imports (cli.build_parser), then runs the CLI: as the console script runs it."""
    (tmp_path / "stand_in_cli.py").write_text(f"import sys\nfrom workbench import cli\n{defines_build}"
                                              "cli.build_parser = build\nsys.exit(cli.main([]))\n")
    return subprocess.run([sys.executable, "-m", "stand_in_cli"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_ctrl_c_inside_an_exec_while_the_commands_import_still_exits_130(tmp_path):
    """A Ctrl-C that lands in an exec() (dataclasses and namedtuples are made so at import)
    marks the interrupt unhandled in CPython even once caught, and `python -m` then died by
    SIGINT after printing 'interrupted' (the boundary case of the test above, 1 run in 8)."""
    proc = _cli_run_as_a_module(tmp_path, "build = lambda: exec('raise KeyboardInterrupt')\n")
    assert (proc.returncode, proc.stderr.strip()) == (130, "interrupted"), proc.stderr


def test_ctrl_c_turned_into_an_import_error_by_a_c_extension_is_still_one_line(tmp_path):
    """Numba's C module init catches a KeyboardInterrupt raised while it imports and raises
    ImportError('numba._devicearray failed to import') with no trace of it (CI, Ctrl-C at 0.2 s):
    the Ctrl-C itself is noted while the commands import, so it is still 'interrupted', 130; a
    real SIGINT is sent, as a terminal would."""
    proc = _cli_run_as_a_module(tmp_path, "import os, signal, time\n"
                                          "def build():\n"
                                          "    try:\n"
                                          "        os.kill(os.getpid(), signal.SIGINT)\n"
                                          "        time.sleep(5)\n"
                                          "    except KeyboardInterrupt:\n"
                                          "        pass\n"
                                          "    raise ImportError('numba._devicearray failed to import')\n")
    assert (proc.returncode, proc.stderr.strip()) == (130, "interrupted"), proc.stderr


def test_ctrl_c_wrapped_in_another_error_while_the_commands_import_is_one_line(monkeypatch, capsys):
    """Python 3.11 turns a KeyboardInterrupt inside a dataclass's making into a RuntimeError, and a
    cut-short import can fail again while that is handled: both are 'interrupted', exit 130;
    an error with no Ctrl-C behind it still shows its traceback."""
    def dataclass_cut_short():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as error:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from error

    def import_failing_while_interrupted():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ModuleNotFoundError("No module named 'version'")

    for build in (dataclass_cut_short, import_failing_while_interrupted):
        monkeypatch.setattr(cli, "build_parser", build)
        assert cli.main([]) == 130
        assert capsys.readouterr().err.strip() == "interrupted"
    monkeypatch.setattr(cli, "build_parser", lambda: int("not a number"))
    with pytest.raises(ValueError):
        cli.main([])
