"""`workbench plot` and the curves it draws: event files read back, smoothing, the bootstrap
interval against hand-computed cases, and a PNG of fake runs with the expected curves."""
import json
import subprocess
import sys

import numpy as np
import pytest

from logs import EventWriter
from logs.curves import PALETTE, _ticks, band, bootstrap_interval, read_scalars, smooth


def fake_run(folder, env, agent, returns, every=100):
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"env": env, "agent": agent}))
    events = EventWriter(str(folder))
    for i, value in enumerate(returns):
        events.scalars({"charts/episodic_return": value}, (i + 1) * every)
    events.close()
    return folder


def test_scalars_come_back_from_the_event_files_in_step_order(tmp_path):
    fake_run(tmp_path / "run", "CartPole-v1", "a3c", [1.0, 2.0, 4.0])
    curve = read_scalars(tmp_path / "run", "charts/episodic_return")
    np.testing.assert_array_equal(curve.steps, [100, 200, 300])
    np.testing.assert_array_equal(curve.values, [1.0, 2.0, 4.0])
    assert curve.seconds[0] == 0 and (np.diff(curve.seconds) >= 0).all()


def test_smoothing_is_the_mean_of_the_last_window_points():
    np.testing.assert_allclose(smooth(np.array([2.0, 4.0, 6.0, 8.0]), 2), [2, 3, 5, 7])


def test_the_bootstrap_interval_by_hand():
    assert bootstrap_interval([3.0, 3.0, 3.0]) == (3.0, 3.0)
    # two seeds, 0 and 1: resampled means are 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4
    low, high = bootstrap_interval([0.0, 1.0], confidence=0.9)
    assert (low, high) == (0.0, 1.0)
    low, high = bootstrap_interval([0.0, 1.0], confidence=0.4)  # the middle 40%: 0.5 alone
    assert low == high == 0.5


def test_a_band_is_the_mean_of_the_seeds_with_their_interval(tmp_path):
    curves = [read_scalars(fake_run(tmp_path / f"s{i}", "CartPole-v1", "a3c", [v] * 10), "charts/episodic_return")
              for i, v in enumerate((1.0, 3.0))]
    grid, mean, low, high = band(curves, "steps", points=11, window=3)
    np.testing.assert_allclose(grid, np.linspace(0, 1000, 11))
    np.testing.assert_allclose(mean, 2.0)
    np.testing.assert_allclose(low, 1.0)
    np.testing.assert_allclose(high, 3.0)


@pytest.mark.parametrize("low, high", [(0, 2.2), (-1.3, 2.25), (0, 1000), (17.5, 18.0)])
def test_ticks_fall_inside_the_axis(low, high):
    ticks = _ticks(low, high)
    slack = 1e-9 * (high - low)  # a tick is a multiple of its step, which binary fractions miss
    assert 2 <= len(ticks) <= 6 and low - slack <= min(ticks) and max(ticks) <= high + slack, ticks


def test_plot_writes_a_png_with_one_curve_per_group(tmp_path):
    for seed in range(2):
        fake_run(tmp_path / f"a3c-{seed}", "CartPole-v1", "a3c", list(np.linspace(10, 400 + seed, 50)))
    fake_run(tmp_path / "ppo-0", "CartPole-v1", "ppo", list(np.linspace(10, 200, 50)))
    out = tmp_path / "curves.png"
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "plot", *(str(p) for p in sorted(tmp_path.iterdir())),
                             "--out", str(out), "--window", "5"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"wrote {out}: 2 curve(s) from 3 run(s)"
    from PIL import Image

    pixels = np.asarray(Image.open(out))
    assert pixels.shape == (560, 900, 3)
    for color in PALETTE[:2]:  # the two groups' lines
        assert (pixels == color).all(axis=2).sum() > 100, color
    assert not (pixels == PALETTE[2]).all(axis=2).any()


@pytest.mark.parametrize("args,message", [
    (["--window", "0"], "--window must be >= 1, got 0"),
    (["--out", "x.jpg"], "--out must be a .png file, not 'x.jpg'"),
    (["--label", "a", "--label", "b"], "--label takes one label per run: 1 runs, 2 labels"),
    (["./r"], "./r is given twice: one run would count as two seeds"),
])
def test_bad_plot_flags_are_one_line(tmp_path, args, message):
    run = fake_run(tmp_path / "r", "CartPole-v1", "a3c", [1.0])
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "plot", str(run), *args],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == f"workbench plot: error: {message}"


def test_a_folder_that_is_not_a_run_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "plot", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("workbench plot: error: ") and "no config.json" in result.stderr


def test_a_run_s_config_json_given_for_the_run_names_the_folder(tmp_path):
    run = fake_run(tmp_path / "r", "CartPole-v1", "a3c", [1.0])
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "plot", str(run / "config.json")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"workbench plot: error: {run / 'config.json'} is a file of run {run}: name the run folder\n"


def test_a_run_without_the_tag_names_the_scalars_it_has(tmp_path):
    run = tmp_path / "recipe-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"recipe": "caesar", "args": {}}))
    events = EventWriter(str(run))
    events.scalars({"val/loss": 1.0, "train/loss": 2.0}, 1)
    events.close()
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "plot", str(run)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr == (
        f"workbench plot: error: {run} has no 'charts/episodic_return' points; its scalars: train/loss, "
        f"val/loss (choose one with --tag)\n")


def test_a_point_s_wall_time_is_the_one_it_is_written_with(tmp_path):
    events = EventWriter(str(tmp_path))  # the learner writes each episode at the time it ended
    events.scalars({"charts/episodic_return": 1.0}, 100, 1000.0)
    events.scalars({"charts/episodic_return": 2.0}, 200, 1012.5)
    events.close()
    np.testing.assert_array_equal(read_scalars(tmp_path, "charts/episodic_return").seconds, [0.0, 12.5])
