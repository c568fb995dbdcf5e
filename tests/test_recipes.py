"""Every recipe end to end on tiny data the tests write, through the `workbench recipe` command."""
import argparse
import os

import numpy as np
import pytest

from nets import checkpoint, settings
from test_datasets import write_idx
from workbench import cli
from workbench.recipes import common, recipes
from workbench.runs import RunDir

FAST = ["--no-progress"]


def run_recipe(tmp_path, name, *flags, run_name="run"):
    code = cli.main(["recipe", name, "--logdir", str(tmp_path / "runs"), "--name", run_name,
                     *FAST, *flags])
    assert code == 0
    return tmp_path / "runs" / run_name


def history(run_dir):
    header, _ = checkpoint.read(RunDir(run_dir).checkpoint_path())
    return header["meta"]["history"]


def assert_learns(run_dir, accuracy: float | None = None):
    """Training and validation loss fell and, for a classifier, the last epoch's validation
    accuracy reached `accuracy`: a bar far above chance, set below what the seeded run reaches,
    so that an agent that does not learn (a loss of the wrong sign, say) fails it."""
    epochs = history(run_dir)
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]
    assert epochs[-1]["val_loss"] < epochs[0]["val_loss"]
    if accuracy is not None:
        assert epochs[-1]["val_accuracy"] >= accuracy, [e["val_accuracy"] for e in epochs]
    assert (run_dir / "summary.txt").read_text().startswith(f"run folder: {run_dir}")


def write_mnist(folder, n_train=240, n_test=60):
    """Digits that are learnable: each class lights its own block of pixels, plus noise."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(labels):
            row, col = divmod(int(label), 5)
            images[i, 4 + 10 * row:12 + 10 * row, 2 + 5 * col:6 + 5 * col] = 255
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", images, compress=True)
        write_idx(folder / f"{split}-labels-idx1-ubyte", labels)
    return folder


TEXT = ("the cat sat on the mat. the dog sat on the log. a cat and a dog met on a mat.\n" * 40)


def test_list_names_every_recipe(capsys):
    assert cli.main(["recipe", "list"]) == 0
    listed = capsys.readouterr().out
    assert cli.main(["recipe"]) == 2  # no name: the command's help
    usage = capsys.readouterr().out
    for name in ("caesar", "mnist-mlp", "mnist-cnn", "char-rnn", "cbow"):
        assert name in listed and name in usage


@pytest.mark.parametrize("name", ["caesar", "mnist-mlp", "mnist-cnn", "char-rnn", "cbow", "sentiment",
                                  "seq2seq", "dmn", "mnist-sequence"])
def test_help_shows_every_flag(name, capsys):
    with pytest.raises(SystemExit):
        cli.main(["recipe", name, "--help"])
    text = capsys.readouterr().out
    parser = argparse.ArgumentParser()
    recipes()[name].add_arguments(parser)
    flags = [option for action in parser._actions for option in action.option_strings]
    assert "--epochs" in flags and "--resume" in flags
    for option in flags:
        assert option in text, option


def test_caesar_learns_the_shift(tmp_path, capsys):
    run_dir = run_recipe(tmp_path, "caesar", "--epochs", "3", "--samples", "520")
    assert_learns(run_dir, accuracy=0.9)  # 1.0; chance 1/27
    out = capsys.readouterr().out
    assert "abcdefghijklmnopqrstuvwxyz -> bcdefghijklmnopqrstuvwxyza" in out
    assert "uif rvjdl cspxo gpy" in out


def test_threads_limits_numba_and_blas(tmp_path):
    import numba
    from threadpoolctl import threadpool_info, threadpool_limits

    before = numba.get_num_threads()
    with threadpool_limits(limits=None):  # restores this process's BLAS threads on exit
        run_recipe(tmp_path, "caesar", "--epochs", "1", "--samples", "52", "--threads", "1")
        assert numba.get_num_threads() == 1
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {1}
    numba.set_num_threads(before)


def test_mnist_mlp_learns_tiny_digits(tmp_path, capsys):
    data = write_mnist(tmp_path / "mnist")
    run_dir = run_recipe(tmp_path, "mnist-mlp", "--data", str(data), "--validation", "40",
                         "--hidden", "32", "--epochs", "3", "--batch-size", "20")
    assert_learns(run_dir, accuracy=0.9)  # 1.0 from epoch 1; chance 0.1
    assert "test accuracy:" in capsys.readouterr().out
    book = run_recipe(tmp_path, "mnist-mlp", "--data", str(data), "--validation", "40",
                      "--preset", "book", "--epochs", "1", run_name="book")
    _, arrays = checkpoint.read(RunDir(book).checkpoint_path())
    assert arrays["model/fc1.weight"].shape == (784, 500) and "model/fc3.weight" not in arrays
    # a flag given keeps its value over the preset's, and a resume keeps what the run chose
    small = run_recipe(tmp_path, "mnist-mlp", "--data", str(data), "--validation", "40",
                       "--preset", "book", "--hidden", "30", "--epochs", "1", run_name="small")
    assert cli.main(["recipe", "mnist-mlp", "--resume", str(small), "--epochs", "2", *FAST]) == 0
    saved = RunDir(small).read_config()["args"]
    assert (saved["hidden"], saved["activation"]) == ("30", "tanh")


def test_mnist_cnn_learns_tiny_digits(tmp_path):
    data = write_mnist(tmp_path / "mnist", n_train=140, n_test=20)
    run_dir = run_recipe(tmp_path, "mnist-cnn", "--data", str(data), "--validation", "40",
                         "--filters", "4,8", "--hidden", "16", "--epochs", "3",
                         "--batch-size", "20", "--lr", "0.05")
    assert_learns(run_dir, accuracy=0.4)  # 0.5 after 3 epochs; chance 0.1


def test_missing_data_names_the_files_and_where_to_get_them(tmp_path, capsys):
    assert cli.main(["recipe", "mnist-mlp", "--logdir", str(tmp_path), *FAST]) == 2
    err = capsys.readouterr().err  # tests are offline (conftest): the manual route is named
    assert f"mnist is not in {os.environ['WORKBENCH_DATA']}/mnist" in err and "t10k-labels-idx1-ubyte.gz" in err
    (tmp_path / "empty").mkdir()
    assert cli.main(["recipe", "mnist-cnn", "--data", str(tmp_path / "empty"), *FAST]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # no run folder for a run that could not start
    assert cli.main(["recipe", "char-rnn", *FAST]) == 2
    assert "tiny-shakespeare is not in" in capsys.readouterr().err


def test_resume_of_a_folder_that_is_not_a_run_is_an_error(tmp_path, capsys):
    assert cli.main(["recipe", "caesar", "--resume", str(tmp_path), *FAST]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_a_resume_that_cannot_continue_the_run_leaves_its_config_as_it_was(tmp_path, capsys):
    """Another recipe's --resume is refused by name; flags its checkpoint does not fit (another
    --hidden) fail, and neither changes config.json or leaves an event file behind: a later
    plain --resume continues the run as it was (same shift, same size)."""
    run_dir = run_recipe(tmp_path, "caesar", "--epochs", "1", "--samples", "52", "--shift", "3",
                         "--hidden", "20")
    config = (run_dir / "config.json").read_text()
    events = sorted(run_dir.glob("events.out.tfevents.*"))
    resume = ["recipe", "caesar", "--resume", str(run_dir), "--epochs", "2", *FAST]
    assert cli.main(["recipe", "mnist-mlp", *resume[2:]]) == 2
    says = f"a caesar run; continue it with workbench recipe caesar --resume {run_dir}"
    assert says in capsys.readouterr().err
    assert cli.main([*resume, "--hidden", "30"]) == 2
    assert capsys.readouterr().err.endswith("shape mismatch for 'hidden.weight': checkpoint (26, 20), model "
                                            "(26, 30); the run's model is built from its config.json and the "
                                            "flags given again: leave out those that change its sizes, or "
                                            "start a new run\n")
    assert (run_dir / "config.json").read_text() == config
    assert sorted(run_dir.glob("events.out.tfevents.*")) == events
    assert cli.main(resume) == 0
    saved = RunDir(run_dir).read_config()
    assert (saved["recipe"], saved["args"]["shift"], saved["args"]["hidden"]) == ("caesar", 3, 20)


def test_a_data_path_is_saved_absolute_so_a_resume_finds_it_from_any_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "input.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path / "data")
    run_dir = run_recipe(tmp_path, "char-rnn", "--text", "input.txt", "--epochs", "1", *CHAR)
    saved = RunDir(run_dir).read_config()["args"]
    assert saved["text"] == str(tmp_path / "data" / "input.txt")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["recipe", "char-rnn", "--resume", str(run_dir), "--epochs", "2", *FAST]) == 0


CHAR = ["--hidden", "24", "--layers", "1", "--embed", "8", "--seq-len", "16", "--batch-size", "8",
        "--sample-length", "20", "--lr", "0.01"]


def test_char_rnn_learns_and_generates_reproducibly(tmp_path, capsys):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    run_dir = run_recipe(tmp_path, "char-rnn", "--text", str(text), "--epochs", "3", *CHAR)
    assert_learns(run_dir, accuracy=0.6)  # next letter: 0.70 after 3 epochs, 0.34 after 1
    out = capsys.readouterr().out
    assert "bits/char" in out and "next-letter accuracy" in out and "sample after epoch 3" in out

    def generate(*flags):
        assert cli.main(["recipe", "char-rnn", "--from", str(run_dir), "--generate", "60",
                         "--seed-text", "the ", *flags]) == 0
        return capsys.readouterr().out

    first = generate("--seed", "3")
    assert first.startswith("the ") and len(first.rstrip("\n")) >= 64
    assert generate("--seed", "3") == first
    assert generate("--seed", "4") != first
    assert generate("--top-k", "1") == generate("--temperature", "0")  # both the most likely
    best = run_dir / "checkpoints" / "best.npz"
    assert cli.main(["recipe", "char-rnn", "--from", str(best), "--generate", "60",
                     "--seed-text", "the ", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first  # the folder means its best checkpoint
    assert cli.main(["recipe", "char-rnn", "--from", str(run_dir), "--seed-text", "Q!"]) == 2
    assert "never saw" in capsys.readouterr().err


def test_from_another_recipe_s_run_names_what_wrote_it(tmp_path, capsys):
    run_dir = run_recipe(tmp_path, "caesar", "--epochs", "1", "--samples", "52")
    assert cli.main(["recipe", "char-rnn", "--from", str(run_dir), "--generate", "10"]) == 2
    assert capsys.readouterr().err.endswith("is not a char-rnn checkpoint but caesar's; name a run of "
                                            "workbench recipe char-rnn\n")


def test_char_rnn_resumed_continues_where_it_stopped(tmp_path):
    text = tmp_path / "input.txt"
    text.write_text(TEXT)
    flags = ["--text", str(text), "--cell", "gru", "--dropout", "0.2", *CHAR]
    straight = run_recipe(tmp_path, "char-rnn", *flags, "--epochs", "2", run_name="straight")
    split = run_recipe(tmp_path, "char-rnn", *flags, "--epochs", "1", run_name="split")
    assert cli.main(["recipe", "char-rnn", "--resume", str(split), "--epochs", "2", *FAST]) == 0
    header_a, arrays_a = checkpoint.read(RunDir(straight).checkpoint_path())
    header_b, arrays_b = checkpoint.read(RunDir(split).checkpoint_path())
    assert (header_b["meta"]["epoch"], header_b["meta"]["step"]) == (header_a["meta"]["epoch"],
                                                                    header_a["meta"]["step"])
    assert sorted(arrays_a) == sorted(arrays_b)
    for key in arrays_a:
        np.testing.assert_array_equal(arrays_a[key], arrays_b[key], err_msg=key)
    assert [h["val_loss"] for h in header_b["meta"]["history"]] == \
        [h["val_loss"] for h in header_a["meta"]["history"]]


def test_cbow_learns_embeddings_and_exports_them(tmp_path, capsys):
    text = tmp_path / "book.txt"
    text.write_text("*** START OF THE PROJECT GUTENBERG EBOOK X ***\n" + TEXT * 2
                    + "*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicense license license\n")
    run_dir = run_recipe(tmp_path, "cbow", "--text", str(text), "--dim", "8", "--epochs", "3",
                         "--min-count", "1", "--probe", "cat,license", "--lr", "0.01")
    assert_learns(run_dir)
    out = capsys.readouterr().out
    assert "nearest to cat:" in out and "nearest to license: (not in the vocabulary)" in out
    assert "analogies:" in out
    assert (run_dir / "projector_config.pbtxt").exists()


def test_resolve_prefers_given_flags_then_the_saved_config_then_defaults():
    args = argparse.Namespace(epochs=7, lr=None, seed=None,
                              flag_defaults={"epochs": 1, "lr": 0.1, "seed": 0})
    common.resolve(args, {"epochs": 3, "lr": 0.5})
    assert (args.epochs, args.lr, args.seed) == (7, 0.5, 0)


def test_every_numeric_recipe_flag_has_a_rule_its_default_keeps():
    # without one a bad number reaches the model's code (a traceback, or a run that means nothing);
    # a misspelt rule or a default outside its range would otherwise surface only in a user's run
    parser = cli.build_parser()
    for name in recipes():
        for action in common.recipe_flags(parser.parse_args(["recipe", name])):
            where = (name, action.dest)
            if action.type in (int, float) and action.dest != "seed" and where != ("caesar", "shift"):
                assert action.workbench_rule, where
            if action.workbench_rule:
                assert settings.satisfies(action.workbench_default, action.workbench_rule), where


@pytest.mark.parametrize("name, flags, says", [
    ("caesar", ["--hidden", "0"], "--hidden must be >= 1, got 0"),
    ("cbow", ["--window", "0"], "--window must be >= 1, got 0"),
    ("mnist-mlp", ["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    ("mnist-stn", ["--rotation", "-5"], "--rotation must be in [0, 180], got -5.0"),
    ("caesar", ["--lr", "nan"], "--lr must be a finite number >= 0, got nan"),
])
def test_a_number_out_of_range_is_one_line_and_exit_2(tmp_path, capsys, name, flags, says):
    assert cli.main(["recipe", name, "--logdir", str(tmp_path), *flags, *FAST]) == 2
    assert capsys.readouterr().err == f"workbench recipe {name}: error: {says}\n"
    assert not any(tmp_path.iterdir())


def test_every_recipe_is_registered_once():
    assert list(recipes()) == ["caesar", "mnist-mlp", "mnist-cnn", "char-rnn", "cbow", "mnist-rbm",
                               "mnist-dbn", "mnist-gan", "mnist-stn", "resnet", "sentiment", "seq2seq", "dmn",
                               "mnist-sequence"]
