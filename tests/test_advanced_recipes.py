"""mnist-rbm, mnist-dbn, mnist-gan, mnist-stn and resnet end to end on tiny data the tests write,
through the `workbench recipe` command: they learn, log images, and resume exactly."""
import argparse

import numpy as np
import pytest

from nets import checkpoint
from test_recipes import assert_learns, history, run_recipe, write_mnist
from workbench import cli
from workbench.recipes import recipes
from workbench.runs import RunDir

NAMES = ["mnist-rbm", "mnist-dbn", "mnist-gan", "mnist-stn", "resnet"]


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return write_mnist(tmp_path_factory.mktemp("data") / "mnist", n_train=140, n_test=40)


def image_tags(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"images": 0})
    events.Reload()
    return set(events.Tags()["images"])


def assert_same_checkpoints(a, b):
    header_a, arrays_a = checkpoint.read(RunDir(a).checkpoint_path())
    header_b, arrays_b = checkpoint.read(RunDir(b).checkpoint_path())
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert [h["val_loss"] for h in header_a["meta"]["history"]] == \
        [h["val_loss"] for h in header_b["meta"]["history"]]


@pytest.mark.parametrize("name", NAMES)
def test_help_shows_every_flag(name, capsys):
    with pytest.raises(SystemExit):
        cli.main(["recipe", name, "--help"])
    text = capsys.readouterr().out
    parser = argparse.ArgumentParser()
    recipes()[name].add_arguments(parser)
    for option in (o for action in parser._actions for o in action.option_strings):
        assert option in text, option


@pytest.mark.parametrize("method", ["pcd", "cd"])
def test_mnist_rbm_reconstructs_better_and_logs_images(tmp_path, digits, capsys, method):
    run_dir = run_recipe(tmp_path, "mnist-rbm", "--data", str(digits), "--validation", "40",
                         "--hidden", "16", "--epochs", "4", "--batch-size", "10", "--lr", "0.3",
                         "--method", method, "--k", "2", "--sample-steps", "5")
    epochs = history(run_dir)
    losses = [e["val_loss"] for e in epochs]  # reconstruction cross-entropy (noise pixels keep it high)
    assert all(later < earlier for earlier, later in zip(losses, losses[1:]))
    assert epochs[-1]["val_pseudo_likelihood"] > epochs[0]["val_pseudo_likelihood"]
    assert image_tags(run_dir) == {"rbm/filters", "rbm/reconstructions", "rbm/samples"}
    assert (run_dir / "images" / "rbm-filters.png").read_bytes().startswith(b"\x89PNG")
    assert "test reconstruction cross-entropy:" in capsys.readouterr().out


def test_mnist_dbn_pretrains_each_layer_then_fine_tunes_and_resumes_exactly(tmp_path, digits):
    flags = ["--data", str(digits), "--validation", "40", "--hidden", "24,12", "--pretrain-epochs", "2",
             "--batch-size", "10", "--pretrain-batch-size", "10", "--lr", "0.5"]
    straight = run_recipe(tmp_path, "mnist-dbn", *flags, "--epochs", "3", run_name="straight")
    assert_learns(straight, accuracy=0.35)  # 0.45; chance 0.1
    for stage in ("pretrain-1", "pretrain-2"):
        saved = checkpoint.read(straight / "checkpoints" / stage / "latest.npz")[0]["meta"]
        assert saved["epoch"] == 2 and saved["history"][-1]["val_loss"] < saved["history"][0]["val_loss"]
        assert any((straight / stage).glob("events.out.tfevents.*"))
    assert "RBM 2: val reconstruction cross-entropy" in (straight / "summary.txt").read_text()
    split = run_recipe(tmp_path, "mnist-dbn", *flags, "--epochs", "1", run_name="split")
    assert cli.main(["recipe", "mnist-dbn", "--resume", str(split), "--epochs", "3",
                     "--no-progress"]) == 0
    assert_same_checkpoints(straight, split)


@pytest.mark.slow
def test_mnist_gan_players_train_samples_are_logged_and_resume_is_exact(tmp_path, digits, capsys):
    flags = ["--data", str(digits), "--validation", "40", "--width", "4", "--noise", "8",
             "--batch-size", "20", "--lr", "0.002", "--log-every", "2"]
    straight = run_recipe(tmp_path, "mnist-gan", *flags, "--epochs", "2", run_name="straight")
    epochs = history(straight)
    assert len(epochs) == 2 and 0 < epochs[-1]["val_d_real"] < 1
    assert epochs[-1]["val_d_real"] > epochs[-1]["val_d_fake"]  # the discriminator tells them apart
    assert image_tags(straight) == {"samples/generated", "samples/real"}
    out = capsys.readouterr().out
    assert "D(real)" in out and "samples-generated.png" in out
    header, arrays = checkpoint.read(RunDir(straight).checkpoint_path())
    assert header["optimizer"]["type"] == "GANOptimizers"
    assert {k.split("/")[1] for k in arrays if k.startswith("optimizer/")} == {"generator", "discriminator"}
    split = run_recipe(tmp_path, "mnist-gan", *flags, "--epochs", "1", run_name="split")
    assert cli.main(["recipe", "mnist-gan", "--resume", str(split), "--epochs", "2",
                     "--no-progress"]) == 0
    assert_same_checkpoints(straight, split)
    mlp = run_recipe(tmp_path, "mnist-gan", *flags, "--epochs", "1", "--arch", "mlp",
                     "--feature-matching", "--optimizer", "momentum", run_name="mlp")
    assert np.isfinite(history(mlp)[-1]["train_loss"])


@pytest.mark.slow
def test_mnist_stn_learns_on_distorted_digits_and_shows_the_transformer(tmp_path, digits):
    flags = ["--data", str(digits), "--validation", "40", "--canvas", "32", "--filters", "4,8",
             "--hidden", "16", "--batch-size", "20", "--epochs", "4", "--lr", "0.003"]
    run_dir = run_recipe(tmp_path, "mnist-stn", *flags)
    assert_learns(run_dir, accuracy=0.35)  # 0.425; chance 0.1
    assert image_tags(run_dir) == {"stn/inputs", "stn/transformed"}
    baseline = run_recipe(tmp_path, "mnist-stn", *flags, "--no-transformer", "--epochs", "1",
                          run_name="baseline")
    assert image_tags(baseline) == {"stn/inputs"}


def test_distortion_rotates_and_moves_digits_onto_the_canvas():
    from workbench.recipes.stn import distort

    image = np.zeros((1, 1, 28, 28), np.float32)
    image[0, 0, 4:8, 12:16] = 1  # a block above the centre
    rng = np.random.default_rng(0)
    plain = distort(image, 42, rotation=0, shift=0, rng=rng)[0, 0]
    np.testing.assert_allclose(plain[11:15, 19:23], 1, atol=1e-6)  # centred: 7 pixels of margin
    assert plain.sum() == pytest.approx(16, abs=1e-4)
    turned = distort(image, 42, rotation=1e-9, shift=0, rng=rng)[0, 0]
    np.testing.assert_allclose(turned, plain, atol=1e-5)
    moved = distort(np.repeat(image, 50, 0), 42, rotation=90, shift=7, rng=rng)[:, 0]
    assert moved.sum(axis=(1, 2)) == pytest.approx(np.full(50, 16.0), rel=0.05)  # stays on the canvas
    assert len({tuple(np.argwhere(m > 0.5).mean(axis=0).round()) for m in moved}) > 25  # all different


@pytest.mark.slow
def test_resnet_and_densenet_train_on_idx_digits(tmp_path, digits):
    run_dir = run_recipe(tmp_path, "resnet", "--data", str(digits), "--validation", "40", "--width", "4",
                         "--epochs", "3", "--batch-size", "20", "--lr", "0.05", "--preactivation",
                         "--survival", "0.8", "--augment")
    assert_learns(run_dir)
    # the tiny digits differ only in where their block is, which global average pooling hides
    # from a net this shallow: the DenseNet is held to fitting its training batches
    dense = run_recipe(tmp_path, "resnet", "--data", str(digits), "--validation", "40", "--arch",
                       "densenet", "--growth", "4", "--dense-blocks", "1,1", "--epochs", "2",
                       "--batch-size", "10", "--lr", "0.1", run_name="dense")
    epochs = history(dense)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]


def test_bad_settings_are_named_before_a_run_folder_exists(tmp_path, digits, capsys):
    common = ["--data", str(digits), "--validation", "40", "--logdir", str(tmp_path / "runs"),
              "--no-progress"]
    assert cli.main(["recipe", "resnet", "--depth", "9", *common]) == 2
    assert "depth 6n + 2" in capsys.readouterr().err
    assert cli.main(["recipe", "mnist-stn", "--canvas", "20", *common]) == 2
    assert "--canvas must be at least" in capsys.readouterr().err
    assert cli.main(["recipe", "mnist-dbn", "--hidden", "10,x", *common]) == 2
    assert "--hidden takes comma-separated integers" in capsys.readouterr().err
    assert cli.main(["recipe", "mnist-gan", "--clip", "1", *common]) == 2
    assert "leave out --clip" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def write_image_folders(root, per_class=(24, 6), size=8):
    """Two classes of PNG files the resnet recipe reads: horizontal and vertical stripes."""
    from logs.images import png

    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for name, axis in (("horizontal", 0), ("vertical", 1)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                stripes = np.indices((size, size))[axis] % 2 * 0.8 + rng.random((size, size)) * 0.2
                (folder / f"{i}.png").write_bytes(png(stripes))
    return root


def test_resnet_reads_image_folders(tmp_path, capsys):
    root = write_image_folders(tmp_path / "stripes")
    run_dir = run_recipe(tmp_path, "resnet", "--images", str(root), "--validation", "8", "--width", "4",
                         "--epochs", "3", "--batch-size", "8", "--lr", "0.05")
    assert_learns(run_dir, accuracy=0.9)  # 1.0; chance 0.5
    out = capsys.readouterr().out
    assert "2 classes" in out and "test accuracy:" in out
    odd = root / "train" / "vertical" / "odd.png"
    from logs.images import png

    odd.write_bytes(png(np.zeros((9, 8))))
    assert cli.main(["recipe", "resnet", "--images", str(root), "--logdir", str(tmp_path / "runs"),
                     "--no-progress"]) == 2
    assert "differ in size" in capsys.readouterr().err
