"""`workbench play` on checkpoints of short runs (a GIF with the expected frames, the ways to name
a checkpoint, mismatched checkpoints), evaluation during training, and a short 2-actor Atari
run's TensorBoard events read back with TensorBoard's own reader."""
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

from workbench.cli import main

ale_py = pytest.importorskip("ale_py")

FPS = 25  # --fps default: 40 ms per frame, a whole number of GIF centiseconds


def workbench_train(logdir, name, *args):
    """`workbench train` in a subprocess with one BLAS thread (this process's BLAS may use every
    core, which is slow where cores are shared); returns the run folder."""
    env = {**os.environ, **{v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
    result = subprocess.run([sys.executable, "-m", "workbench.cli", "train", "--logdir", str(logdir),
                             "--name", name, *map(str, args)], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return logdir / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A Breakout A3C run and a CartPole run of a few hundred steps, actors in process."""
    logdir = tmp_path_factory.mktemp("runs")
    quick = ("--agent", "a3c", "--actors", 1, "--envs-per-actor", 2, "--steps", 300, "--backend", "inline")
    return (workbench_train(logdir, "breakout", "--env", "ALE/Breakout-v5", *quick),
            workbench_train(logdir, "cartpole", "--env", "CartPole-v1", *quick))


def play(capsys, *args):
    code = main(["play", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def gif_frames(path):
    """(frames stored, total duration in ms): Pillow merges identical consecutive frames and adds
    up their durations, so the duration counts every recorded frame."""
    from PIL import Image

    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
            assert image.size == (160, 210)  # the real game screen, not the 84x84 input
    return len(durations), sum(durations)


def test_play_records_a_gif_of_every_step(runs, capsys, tmp_path):
    breakout, _ = runs
    gif = tmp_path / "breakout.gif"
    code, out, err = play(capsys, breakout, "--episodes", 2, "--max-steps", 20, "--record", gif, "--seed", 1)
    assert code == 0, err
    returns = [float(r) for r in __import__("re").findall(r"episode \d: return (\S+) \(20 steps\)", out)]
    assert len(returns) == 2
    assert f"mean return {np.mean(returns):g} over 2 episode(s)" in out
    expected = 2 * (20 + 1)  # each episode: its first frame and one per step
    assert f"recorded {expected} frames" in out
    stored, duration = gif_frames(gif)
    assert duration == expected * 1000 // FPS and expected // 2 < stored <= expected


def test_a_checkpoint_is_named_by_run_folder_file_or_latest(runs, capsys):
    breakout, _ = runs
    outputs = []
    for target in (breakout, breakout / "checkpoints" / "latest", breakout / "checkpoints" / "latest.npz"):
        code, out, err = play(capsys, target, "--episodes", 1, "--max-steps", 15, "--greedy", "--seed", 4)
        assert code == 0, err
        outputs.append(out.splitlines()[1:])  # after the line naming the path
    assert outputs[0] == outputs[1] == outputs[2]  # same checkpoint, same seed: same episode
    periodic = sorted((breakout / "checkpoints").glob("step-*.npz"))[0]
    code, out, _ = play(capsys, periodic, "--episodes", 1, "--max-steps", 5)
    assert code == 0 and f"step {int(periodic.stem[5:]):,}" in out


def test_cartpole_runs_play_too(runs, capsys):
    _, cartpole = runs
    code, out, err = play(capsys, cartpole, "--episodes", 2, "--greedy")
    assert code == 0, err
    assert "CartPole-v1 (a3c, mlp 64,64)" in out and "mean return" in out


def one_line_error(code, err):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("workbench play: error: ")
    return lines[0]


def test_a_checkpoint_from_another_env_or_network_is_a_clear_error(runs, capsys, tmp_path):
    breakout, cartpole = runs
    # a CartPole checkpoint dropped into the Breakout run
    stray = breakout / "checkpoints" / "from-cartpole.npz"
    shutil.copy(cartpole / "checkpoints" / "latest.npz", stray)
    try:
        message = one_line_error(*play(capsys, stray)[::2])
    finally:
        stray.unlink()
    assert "was trained on CartPole-v1 (a3c, mlp 64,64)" in message
    assert "is for ALE/Breakout-v5 (a3c, small conv net); play it from its own run folder" in message

    # the run's config changed to another network after training
    copy = tmp_path / "nature"
    shutil.copytree(breakout, copy)
    config = json.loads((copy / "config.json").read_text())
    config["agent_config"]["trunk"] = "nature"
    (copy / "config.json").write_text(json.dumps(config))
    message = one_line_error(*play(capsys, copy)[::2])
    assert "(a3c, small conv net), but" in message and "(a3c, nature conv net)" in message


def test_a_checkpoint_that_does_not_fit_the_network_is_a_clear_error(runs, capsys, tmp_path):
    """A checkpoint without the config in its meta (as older runs wrote them) is checked by shape."""
    from nets import checkpoint

    _, cartpole = runs
    copy = tmp_path / "older"
    shutil.copytree(cartpole, copy)
    config = json.loads((copy / "config.json").read_text())
    config["agent_config"]["hidden"] = [32, 32]
    (copy / "config.json").write_text(json.dumps(config))
    latest = copy / "checkpoints" / "latest.npz"
    header, arrays = checkpoint.read(latest)
    meta = {k: v for k, v in header["meta"].items() if k != "config"}
    checkpoint._write_atomically(str(latest), {**arrays, checkpoint.HEADER: np.frombuffer(
        json.dumps({**header, "meta": meta}).encode(), np.uint8)})
    message = one_line_error(*play(capsys, copy)[::2])
    assert "does not fit the network of CartPole-v1 (a3c, mlp 32,32): shape mismatch for" in message


@pytest.mark.parametrize("args,message", [
    (["--record", "out.avi"], "--record needs a .gif or .mp4 file name"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--record", "/proc/x.gif"], "--record /proc/x.gif: cannot write into /proc ("),  # before playing
])
def test_bad_play_arguments(runs, capsys, args, message):
    assert message in one_line_error(*play(capsys, runs[1], *args)[::2])


def test_a_recipe_run_or_a_checkpoint_without_metadata_is_one_line(runs, capsys, tmp_path):
    recipe = tmp_path / "recipe-run"
    (recipe / "checkpoints").mkdir(parents=True)
    (recipe / "config.json").write_text(json.dumps({"recipe": "mnist-mlp", "args": {}}))
    (recipe / "checkpoints" / "latest.npz").write_bytes((runs[1] / "checkpoints" / "latest.npz").read_bytes())
    assert one_line_error(*play(capsys, recipe)[::2]) == (
        f"workbench play: error: {recipe} is a run of `workbench recipe mnist-mlp`; play and load take runs of "
        f"`workbench train`")
    from nets import checkpoint

    header, arrays = checkpoint.read(runs[1] / "checkpoints" / "latest.npz")
    odd = tmp_path / "odd.npz"
    checkpoint._write_atomically(str(odd), {**arrays, checkpoint.HEADER: np.frombuffer(
        json.dumps({**header, "meta": "x"}).encode(), np.uint8)})
    assert "holds no run metadata (its meta is a str)" in one_line_error(*play(capsys, odd)[::2])


def test_nothing_to_play_is_a_clear_error(capsys, tmp_path):
    assert "no run folder or checkpoint at" in one_line_error(*play(capsys, tmp_path / "nope")[::2])


def test_the_evaluator_plays_with_the_weights_it_is_sent(runs):
    from workbench.episodes import Evaluator, build

    _, cartpole = runs
    config = json.loads((cartpole / "config.json").read_text())
    reports = []
    evaluator = Evaluator(config, every=100, episodes=2, seed=0,
                          report=lambda step, results: reports.append((step, results)))
    try:
        _, agent = build(config)
        weights = agent.network.flat().data
        evaluator.tick(60, weights)
        assert not evaluator.busy  # no evaluation point passed yet
        evaluator.tick(130, weights)
        assert evaluator.busy and evaluator.next == 200
        end = time.monotonic() + 60
        while not reports and time.monotonic() < end:
            evaluator.tick(150, weights)  # collects the result; nothing new to send
            time.sleep(0.05)
        assert len(reports) == 1 and reports[0][0] == 130
        results = reports[0][1]
        assert len(results) == 2 and all(length >= 8 and ret == length for ret, length in results)
    finally:
        evaluator.stop()
    assert not evaluator.process.is_alive()


@pytest.mark.slow
def test_two_actor_atari_run_writes_events_tensorboard_reads(tmp_path):
    accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    folder = workbench_train(tmp_path, "atari", "--env", "ALE/Breakout-v5", "--actors", 2,
                             "--envs-per-actor", 2, "--steps", 400, "--histogram-every", 5)
    assert "outcome      finished at step" in (folder / "summary.txt").read_text()
    events = accumulator.EventAccumulator(str(folder), size_guidance={"histograms": 0})
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "charts/fps",
                "charts/learning_rate"):
        assert tag in scalars, sorted(scalars)
    assert "weights/trunk.convs.0.weight" in events.Tags()["histograms"]
    steps = [e.step for e in events.Scalars("losses/policy_loss")]
    assert steps == sorted(steps) and steps[-1] >= 400
    saved = json.loads((folder / "config.json").read_text())
    assert saved["agent_config"]["lr"] == 7e-4 and saved["agent_config"]["trunk"] == "auto"
