"""The shared training loop: learning, logging, early stopping, annealing, checkpoints, resuming."""
import importlib.util
import re
import subprocess
import sys

import numpy as np
import pytest

import nets
from nets import F
from workbench import training
from workbench.recipes.common import ClassificationTask
from workbench.runs import RunDir, undone_if_failed


class RecordingWriter:
    """Stands in for logs.EventWriter (and its tensorboardX writer): remembers what was written."""

    def __init__(self):
        self.scalar_log, self.histogram_log, self.texts = {}, {}, {}
        self.writer = self

    def scalars(self, values, step):
        for tag, value in values.items():
            self.scalar_log.setdefault(tag, []).append((step, float(value)))

    def histograms(self, module, step):
        for name, _ in module.named_parameters():
            self.histogram_log.setdefault(name, []).append(step)

    def add_text(self, tag, text, step):
        self.texts.setdefault(tag, []).append(text)

    def flush(self):
        pass


class MLP(nets.Module):
    def __init__(self, dropout=0.0):
        super().__init__()
        self.fc1 = nets.Linear(4, 16)
        self.drop = nets.Dropout(dropout)
        self.fc2 = nets.Linear(16, 3)

    def forward(self, x):
        return self.fc2(self.drop(F.relu(self.fc1(x))))


def blobs(n, seed):
    """Three Gaussian blobs in 4-D: easy to separate, so the loss must fall."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0]], dtype=np.float32)
    return (centres[y] + rng.standard_normal((n, 4)).astype(np.float32) * 0.5), y


def make_task(dropout=0.0, seed=0):
    nets.seed(seed)
    splits = {"train": blobs(240, 1), "val": blobs(60, 2), "test": blobs(60, 3)}
    return ClassificationTask(MLP(dropout), splits, batch_size=16)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs PyTorch installed beside workbench")
def test_event_writer_does_not_import_pytorch_which_stays_importable(tmp_path):
    """tensorboardX imports PyTorch when it can, a second at every run's start."""
    code = ("import sys; from logs.tensorboard import EventWriter; EventWriter(sys.argv[1]).writer.close(); "
            "assert 'torch' not in sys.modules; import torch")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)


def quiet(**options):
    return training.FitConfig(progress=False, log_every=5, **options)


def test_loss_goes_down_and_every_tag_is_written(tmp_path):
    task = make_task()
    writer = RecordingWriter()
    before = task.evaluate("val")["loss"]
    result = training.fit(task, nets.optim.SGD(task.model, 0.1, momentum=0.9),
                          quiet(epochs=3, histograms=True), RunDir(tmp_path), writer, log=lambda *_: None)
    assert result.val["loss"] < before * 0.5
    assert result.test["accuracy"] > 0.9
    assert result.epochs == 3 and result.steps == 3 * 15
    for tag in ("train/loss", "val/loss", "val/accuracy", "charts/learning_rate",
                "charts/update_ratio", "update_ratio/fc1.weight", "test/accuracy"):
        assert tag in writer.scalar_log, tag
    assert [s for s, _ in writer.scalar_log["val/loss"]] == [15, 30, 45]
    assert writer.histogram_log == {name: [15, 30, 45] for name in
                                    ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")}
    assert 0 < writer.scalar_log["charts/update_ratio"][-1][1] < 1
    assert RunDir(tmp_path).latest_checkpoint() is not None
    assert training.best_checkpoint(RunDir(tmp_path)).exists()


class ScriptedTask:
    """Validation losses follow a script, so the best epoch is known in advance."""

    monitor = ("loss", "min")

    def __init__(self, losses):
        nets.seed(0)
        self.model = MLP()
        self.losses, self.snapshots = list(losses), {}
        self.inner = ClassificationTask(self.model, {"train": blobs(32, 1)}, batch_size=16)

    def steps_per_epoch(self):
        return 2

    def batches(self, rng):
        return self.inner.batches(rng)

    def loss(self, batch):
        return self.inner.loss(batch)

    def evaluate(self, split):
        if split != "val":
            return {}
        return {"loss": self.losses[min(len(self.snapshots), len(self.losses) - 1)]}

    def end_of_epoch(self, writer, epoch, step):
        self.snapshots[epoch] = self.model.state_dict()


def test_early_stopping_restores_the_best_parameters(tmp_path):
    task = ScriptedTask([3.0, 1.0, 2.0, 2.5, 0.5, 0.1])
    result = training.fit(task, nets.optim.SGD(task.model, 0.1), quiet(epochs=6, patience=2),
                          RunDir(tmp_path), RecordingWriter(), log=lambda *_: None)
    assert result.stopped_early and result.epochs == 4 and result.best_epoch == 2
    assert result.best == 1.0
    state = task.model.state_dict()
    for name, value in task.snapshots[2].items():
        np.testing.assert_array_equal(state[name], value)
    assert not np.array_equal(state["fc1.weight"], task.snapshots[4]["fc1.weight"])


def test_min_epochs_delays_early_stopping(tmp_path):
    task = ScriptedTask([3.0, 1.0, 2.0, 2.5, 0.5, 0.1])
    result = training.fit(task, nets.optim.SGD(task.model, 0.1),
                          quiet(epochs=6, patience=2, min_epochs=5), RunDir(tmp_path), RecordingWriter(),
                          log=lambda *_: None)
    assert not result.stopped_early and result.epochs == 6 and result.best_epoch == 6


def test_annealing_stops_at_the_floor(tmp_path):
    task = ScriptedTask([1.0] * 6)  # a plateau from the start: halve every epoch after patience 0
    optimizer = nets.optim.SGD(task.model, 0.1)
    training.fit(task, optimizer, quiet(epochs=6, schedule="plateau", plateau_patience=0,
                                        lr_floor=0.02), RunDir(tmp_path), RecordingWriter(),
                 log=lambda *_: None)
    assert optimizer.lr == pytest.approx(0.02)
    task = ScriptedTask([1.0] * 4)
    optimizer = nets.optim.SGD(task.model, 0.1)
    history = training.fit(task, optimizer, quiet(epochs=4, schedule="linear", lr_floor=0.02),
                           RunDir(tmp_path / "b"), RecordingWriter(), log=lambda *_: None).history
    assert [h["lr"] for h in history] == pytest.approx([0.1, 0.1 - 0.08 / 3, 0.1 - 0.16 / 3, 0.02])


def test_resume_continues_where_the_run_stopped(tmp_path):
    config = dict(schedule="plateau", plateau_patience=0, seed=7)

    def train(epochs, folder, resume=False):
        task = make_task(dropout=0.3)  # dropout: the engine's generator must be restored too
        optimizer = nets.optim.Adam(task.model, 0.01)
        result = training.fit(task, optimizer, quiet(epochs=epochs, **config), RunDir(folder),
                              RecordingWriter(), resume=resume, log=lambda *_: None)
        return task.model, optimizer, result

    straight_model, straight_opt, straight = train(4, tmp_path / "straight")
    train(2, tmp_path / "split")
    nets.seed(999)  # whatever happens in between must not matter
    resumed_model, resumed_opt, resumed = train(4, tmp_path / "split", resume=True)
    assert (resumed.epochs, resumed.steps) == (straight.epochs, straight.steps) == (4, 60)
    assert resumed_opt.steps == straight_opt.steps and resumed_opt.lr == straight_opt.lr
    np.testing.assert_array_equal(resumed_model.flat().data, straight_model.flat().data)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]


def test_resuming_a_run_that_stopped_early_trains_no_more(tmp_path):
    task = ScriptedTask([3.0, 1.0, 2.0, 2.5])
    training.fit(task, nets.optim.SGD(task.model, 0.1), quiet(epochs=6, patience=2), RunDir(tmp_path),
                 RecordingWriter(), log=lambda *_: None)
    again = ScriptedTask([9.0])
    messages = []
    result = training.fit(again, nets.optim.SGD(again.model, 0.1), quiet(epochs=6, patience=2),
                          RunDir(tmp_path), RecordingWriter(), resume=True, log=messages.append)
    assert result.epochs == 4 and result.stopped_early
    assert any("nothing left to train" in m for m in messages)
    np.testing.assert_array_equal(again.model.state_dict()["fc1.weight"],
                                  task.snapshots[2]["fc1.weight"])


def test_a_non_finite_loss_is_reported_with_its_step(tmp_path):
    task = make_task()
    task.model.fc1.weight.data.fill(np.nan)
    with pytest.raises(training.TrainingError, match=r"became nan at step 1 \(epoch 1\)"):
        training.fit(task, nets.optim.SGD(task.model, 0.1), quiet(epochs=1), RunDir(tmp_path),
                     RecordingWriter(), log=lambda *_: None)


def test_a_loss_that_climbs_while_finite_gets_one_warning(tmp_path):
    """`recipe char-rnn --lr 100` reached 312 nats/char (uniform: 4.2) without a word."""
    lines = []
    task = make_task()
    training.fit(task, nets.optim.SGD(task.model, 30.0), quiet(epochs=3), RunDir(tmp_path),
                 RecordingWriter(), log=lines.append)
    warnings = [line for line in lines if line.startswith("warning")]
    assert len(warnings) == 1 and re.fullmatch(r"warning: the training loss rose from [\d.]+ \(first step\) to "
                                               r"[\d.e+]+ \(epoch 1 mean\); training is diverging: lower "
                                               r"--lr or set --clip", warnings[0]), lines
    lines.clear()
    calm = make_task()
    training.fit(calm, nets.optim.SGD(calm.model, 0.1), quiet(epochs=2), RunDir(tmp_path / "calm"),
                 RecordingWriter(), log=lines.append)
    assert not [line for line in lines if line.startswith("warning")]


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    with pytest.raises(RuntimeError):
        with undone_if_failed():
            failed = RunDir.create(tmp_path, "failed")
            failed.write_config({})
            raise RuntimeError("actors never started")
    assert not failed.path.exists()


    with pytest.raises(RuntimeError):
        with undone_if_failed():
            kept = RunDir.create(tmp_path, "kept")
            (kept.path / "checkpoints" / "stage").mkdir(parents=True)
            (kept.path / "checkpoints" / "stage" / "latest.npz").write_bytes(b"")
            raise RuntimeError("diverged after a stage's checkpoint")
    with undone_if_failed():
        finished = RunDir.create(tmp_path, "finished")
    assert kept.path.is_dir() and finished.path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["finished", "kept"]


def test_a_second_ctrl_c_keeps_the_run_as_it_is_and_says_so(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        with undone_if_failed():
            interrupted = RunDir.create(tmp_path, "interrupted")
            interrupted.write_config({})
            raise KeyboardInterrupt
    assert (interrupted.path / "config.json").is_file()
    assert capsys.readouterr().err == (f"{interrupted.path} is kept as it was interrupted, without a new "
                                       f"checkpoint (its TensorBoard events show how far it got)\n")
