"""The `workbench` CLI's help: every description wrapped to the terminal, examples kept as
written, each default shown once."""
import re

import pytest

import workbench
from workbench import cli
from workbench.cli import build_parser


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["play", "--help"],
                                  ["recipe", "--help"], ["recipe", "char-rnn", "--help"],
                                  ["recipe", "mnist-mlp", "--help"], ["doctor", "--help"],
                                  ["agents", "--help"], ["plot", "--help"]])
def test_help_fits_the_terminal_and_shows_each_default_once(argv, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(argv)
    assert exit.value.code == 0
    text = capsys.readouterr().out
    too_long = [line for line in text.splitlines() if len(line) > 80 and not line.startswith("  workbench")]
    assert not too_long, too_long
    assert "(default: )" not in text and "(default: False)" not in text
    assert not re.search(r"\(default[^()]*\)\s*\(default", text)


def test_examples_in_help_stay_one_per_line(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "60")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    assert "\n  workbench train --env CartPole-v1 --actors 8 --backend ray --address auto\n" in capsys.readouterr().out


@pytest.mark.parametrize("command, unknown", [("recipe mnist-cnn", "--limt 9"), ("train", "--bogus"),
                                              ("doctor", "--bogus")])
def test_an_unknown_flag_is_one_line_naming_its_command(command, unknown, capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args([*command.split(), *unknown.split()])
    assert exit.value.code == 2
    assert capsys.readouterr().err == (f"workbench {command}: error: unrecognized arguments: {unknown} "
                                       f"(see workbench {command} --help)\n")


def test_doctor_names_the_data_folder_and_tensorboard(capsys, monkeypatch, tmp_path):
    (tmp_path / "mnist").mkdir()
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"data folder   {tmp_path} (holds no dataset yet; mnist, tiny-shakespeare: not downloaded, " \
           "WORKBENCH_OFFLINE is set)" in out  # the tests run offline (conftest)
    assert "tensorboard --logdir runs" in out and "\ntensorboard   " in out
    assert out.startswith(f"workbench     {workbench.__version__}\n")
    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path / "mnist" / "file"))
    (tmp_path / "mnist" / "file").write_text("")
    assert cli.main(["doctor"]) == 0
    assert f"data folder   {tmp_path}/mnist/file is not a folder: set WORKBENCH_DATA" in capsys.readouterr().out


def test_version_is_the_package_s(capsys):
    with pytest.raises(SystemExit) as exit:
        build_parser().parse_args(["--version"])
    assert exit.value.code == 0 and capsys.readouterr().out == f"workbench {workbench.__version__}\n"
