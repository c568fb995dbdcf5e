"""`workbench play` on checkpoints of short runs (a GIF with the expected frames, the ways to name
a checkpoint, mismatched checkpoints), evaluation during training, and a short 2-actor Atari
run's TensorBoard events read back with TensorBoard's own reader."""
import json
import os
import shutil
import signal
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


def gif_frames(path, size=(160, 210)):
    """(frames stored, total duration in ms): identical consecutive frames are merged, their
    durations added, so the duration counts every recorded frame. `size`: Atari's real game
    screen by default, not the 84x84 input."""
    from PIL import Image

    with Image.open(path) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
            assert image.size == size
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


def act_then(action, after: int, monkeypatch):
    """Player.act does `action` once, at its `after`-th call, then acts as before."""
    from workbench.episodes import Player

    act, calls = Player.act, []

    def counting_act(self, obs):
        calls.append(obs)
        if len(calls) == after:
            action()
        return act(self, obs)

    monkeypatch.setattr(Player, "act", counting_act)


def test_ctrl_c_while_recording_writes_what_was_played(runs, capsys, tmp_path, monkeypatch):
    """As `workbench train` stops: the episode in progress ends at the next step, the recording is
    written whole and valid, exit 0; the caller's SIGINT handler is back afterwards."""
    breakout, _ = runs
    before = signal.getsignal(signal.SIGINT)
    act_then(lambda: os.kill(os.getpid(), signal.SIGINT), 30, monkeypatch)  # in episode 2's 10th step
    gif = tmp_path / "stopped.gif"
    code, out, err = play(capsys, breakout, "--episodes", 3, "--max-steps", 20, "--record", gif)
    assert code == 0, err
    recorded = 21 + 1 + 10  # episode 1, then episode 2's first frame and its 10 steps
    assert out.splitlines()[-1] == f"stopped by SIGINT in episode 2 of 3; recorded {recorded} frames to {gif}"
    assert "mean return" in out and "over 1 episode(s)" in out
    assert gif_frames(gif)[1] == recorded * 1000 // FPS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stopped.gif"]  # no temporary file left
    assert signal.getsignal(signal.SIGINT) is before


def test_a_play_that_fails_leaves_the_file_it_would_record_as_it_was(runs, capsys, tmp_path, monkeypatch):
    from workbench.commands.play import PlayError

    _, cartpole = runs
    gif = tmp_path / "kept.gif"
    gif.write_bytes(b"an earlier recording")

    def fail():
        raise PlayError("failed mid-play")

    act_then(fail, 10, monkeypatch)
    message = one_line_error(*play(capsys, cartpole, "--record", gif)[::2])
    assert message == "workbench play: error: failed mid-play"
    assert gif.read_bytes() == b"an earlier recording"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.gif"]


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_a_recording_streams_its_frames_to_the_file(tmp_path, suffix):
    """Memory holds what one frame's encoding needs, not the recording: 200 frames of 100 KB each
    (Atari's size) while the peak of what was allocated stays under 20 of them."""
    import tracemalloc

    from workbench.commands.play import Recorder

    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (16, 3), dtype=np.uint8)
    frames = (colours[rng.integers(0, 16, (210, 160))] for _ in range(200))
    frame_bytes = 210 * 160 * 3
    path = tmp_path / f"clip{suffix}"
    with Recorder(path, FPS) as recorder:
        recorder(next(frames))  # opens the writer: its fixed costs are not the frames'
        tracemalloc.start()
        for frame in frames:
            recorder(frame)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert recorder.frame_count == 200 and peak < 20 * frame_bytes, peak
    if suffix == ".gif":
        assert gif_frames(path, (160, 210)) == (200, 200 * 1000 // FPS)
    else:
        import imageio.v2 as imageio

        with imageio.get_reader(path) as reader:
            assert sum(1 for _ in reader) == 200


def read_gif(path) -> list:
    """Every recorded frame as RGB: a stored frame once per FPS interval of its duration."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        return [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(image)
                for _ in range(frame.info["duration"] * FPS // 1000)]


def test_a_gif_holds_up_to_256_colours_exactly_and_merges_repeated_frames(tmp_path):
    from workbench.gif import GifWriter

    rng = np.random.default_rng(1)
    colours = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    frame = colours[rng.integers(0, 64, (50, 70))]
    frames = [frame]
    for step in range(30):  # new colours come in later frames; some frames repeat the one before
        frame = frame.copy()
        if step % 3:
            frame[step:step + 5, 2 * step:2 * step + 9] = colours[64 + 6 * step:70 + 6 * step][step % 6]
        frames.append(frame)
    writer = GifWriter(tmp_path / "exact.gif", 50, 70, FPS)
    for frame in frames:
        writer.append_data(frame)
    writer.close()
    played = read_gif(tmp_path / "exact.gif")
    assert len(played) == len(frames) and all(np.array_equal(a, b) for a, b in zip(played, frames))
    assert gif_frames(tmp_path / "exact.gif", (70, 50))[0] == 1 + 20  # the changed frames only


@pytest.mark.parametrize("fps", [30, 60])
def test_a_gif_keeps_the_clip_s_time_even_over_a_16_bit_delay(tmp_path, fps):
    """GIF delays are whole centiseconds of 16 bits: 1/30 s rounded per frame (3 cs) played 10%
    fast, and a still of 20,000 frames (66,667 cs) overflowed and lost the recording."""
    from PIL import Image, ImageSequence

    from workbench.gif import GifWriter

    writer = GifWriter(tmp_path / "clock.gif", 4, 4, fps)
    still = np.zeros((4, 4, 3), np.uint8)
    frames = [np.full((4, 4, 3), value, np.uint8) for value in range(90)] + [still] * 20_000
    for frame in frames:
        writer.append_data(frame)
    writer.close()
    with Image.open(tmp_path / "clock.gif") as image:
        delays = [frame.info["duration"] for frame in ImageSequence.Iterator(image)]
    assert sum(delays[:90]) == round(90 * 1000 / fps, -1)  # 3.00 s or 1.50 s, to the centisecond
    assert abs(sum(delays) - len(frames) * 1000 / fps) <= 10 and max(delays) <= 655_350


def test_a_gif_of_more_than_256_colours_keeps_them_spread_over_the_picture(tmp_path):
    """A shaded scene's first frame of 4,096 colours: the palette is a median cut of the frame,
    not its first 256 colours in any order, and each pixel takes its nearest."""
    from workbench.gif import GifWriter

    y, x = np.mgrid[0:64, 0:64]
    frame = np.stack([x * 4, y * 4, (x + y) * 2], axis=2).astype(np.uint8)
    writer = GifWriter(tmp_path / "shaded.gif", 64, 64, FPS)
    writer.append_data(frame)
    writer.append_data(frame[::-1].copy())  # colours seen already
    writer.close()
    first, second = read_gif(tmp_path / "shaded.gif")
    assert np.abs(first.astype(int) - frame).mean() < 6
    assert np.array_equal(second, first[::-1])


def test_a_checkpoint_is_named_by_run_folder_file_or_latest(runs, capsys):
    breakout, _ = runs
    outputs = []
    for target in (breakout, breakout / "config.json", breakout / "checkpoints" / "latest",
                   breakout / "checkpoints" / "latest.npz"):
        code, out, err = play(capsys, target, "--episodes", 1, "--max-steps", 15, "--greedy", "--seed", 4)
        assert code == 0, err
        outputs.append(out.splitlines()[1:])  # after the line naming the path
    assert outputs[0] == outputs[1] == outputs[2] == outputs[3]  # same checkpoint and seed: same episode
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
                          report=lambda step, results: reports.append((step, results)), failed=pytest.fail)
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
