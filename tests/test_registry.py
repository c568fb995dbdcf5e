"""Each agent owns its rules: the registry, the generated help and table, one settings path, and
nothing outside agents/ that asks which agent it is."""
import ast
import dataclasses
import math
import pathlib
import subprocess
import sys

import pytest

from agents import AGENTS, A3C, A3CConfig, agent_class, make_config
from nets import settings
from nets.settings import Settings, setting
from workbench.commands.agents import table
from workbench.rl import TrainConfig, train

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCT_OUTSIDE_AGENTS = ("workbench", "actors", "envs", "logs", "nets")


def test_docs_table_of_agents_is_the_generated_one():
    assert (ROOT / "docs" / "agents.md").read_text() == table(markdown=True), \
        "regenerate it: workbench agents --markdown > docs/agents.md"


@pytest.mark.parametrize("name", list(AGENTS))
def test_the_table_shows_every_default_preset_and_range(name):
    cls = agent_class(name)
    rows = {line.split(" | ")[0].strip("| `"): line.split(" | ") for line in table([name], markdown=True).splitlines()
            if line.startswith("| `")}
    defaults = cls.Config()
    for field in dataclasses.fields(cls.Config):
        cells = [cell.strip(" |") for cell in rows[field.name]]
        value = getattr(defaults, field.name)
        assert cells[1] == (",".join(map(str, value)) if isinstance(value, tuple) else
                            "none" if value is None else str(value).lower() if isinstance(value, bool) else
                            f"{value:g}" if isinstance(value, float) else str(value)), field.name
        for column, family in ((2, "pixels"), (3, "box")):
            assert (cells[column] != "") == (field.name in cls.presets.get(family, {})), (field.name, family)
        assert cells[4] == field.metadata.get("rule", "")


def test_presets_name_real_settings_and_keep_their_ranges():
    for name, cls in AGENTS.items():
        for tag, values in cls.presets.items():
            make_config(name, values)  # unknown names, wrong types and bad ranges raise


def _agent_names_outside_agents():
    found = []
    for package in PRODUCT_OUTSIDE_AGENTS:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and node.value in AGENTS:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
                if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("agents."):
                    modules = {cls.__module__ for cls in AGENTS.values()}
                    if node.module in modules:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}")
                if isinstance(node, ast.Name) and node.id in {cls.__name__ for cls in AGENTS.values()}:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.id}")
    return found


def test_no_module_outside_agents_asks_which_agent_it_is():
    """No agent's name (as a string), class or module appears in the product outside agents/:
    what differs between agents is the agents' own business."""
    assert _agent_names_outside_agents() == []


def test_the_scan_finds_a_branch_on_an_agent_name(tmp_path, monkeypatch):
    (tmp_path / "workbench").mkdir()
    (tmp_path / "workbench" / "bad.py").write_text('if agent == "dqn":\n    pass\n')
    for package in PRODUCT_OUTSIDE_AGENTS[1:]:
        (tmp_path / package).mkdir()
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert _agent_names_outside_agents() == ["workbench/bad.py:1 'dqn'"]


@dataclasses.dataclass
class TinyConfig(A3CConfig):
    """A3C's settings, narrower by default, with one of its own."""

    hidden: tuple[int, ...] = setting((8,), ">= 1")
    patience: int = setting(3, ">= 0")


class TinyA3C(A3C):
    name = "tiny-a3c"
    summary = "a test agent"
    Config = TinyConfig
    gradients_on = ("learner",)
    envs_per_actor = {"vector": 3}
    presets = {"CartPole-v1": {"lr": 5e-3}}


def test_a_new_agent_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(AGENTS, TinyA3C.name, TinyA3C)  # the registry line
    config = TrainConfig(agent="tiny-a3c", actors=1, steps=300, backend="inline", logdir=str(tmp_path))
    assert (config.resolved_envs_per_actor, config.resolved_gradients_on) == (3, "learner")
    assert config.agent_settings().lr == 5e-3 and config.agent_settings().patience == 3
    with pytest.raises(ValueError, match="tiny-a3c computes its gradients on the learner"):
        TrainConfig(agent="tiny-a3c", gradients_on="actors").validate()
    result = train(config, name="tiny", console=lambda line: None)
    assert result.outcome == "finished" and result.progress.step >= 300
    saved = result.run.read_config()
    assert saved["agent"] == "tiny-a3c" and saved["agent_config"]["hidden"] == [8]
    assert "tiny-a3c: a test agent" in table(["tiny-a3c"])


@pytest.mark.parametrize("rule,good,bad", [
    (">= 1", [1, 2.5], [0, 0.99, math.nan, "x", True]),
    ("> 0", [1e-9], [0, -1, math.nan]),
    ("in [0, 1)", [0, 0.5], [1, -0.1, math.nan]),
    ("in (0, 1]", [1, 0.5], [0, 1.01]),
    ("one of adam, rmsprop", ["adam", "rmsprop"], ["sgd", "Adam"]),
])
def test_rules(rule, good, bad):
    assert all(settings.satisfies(value, rule) for value in good)
    assert not any(settings.satisfies(value, rule) for value in bad)
    assert settings.satisfies(None, rule) and settings.satisfies((1, 2), ">= 1")
    assert not settings.satisfies((1, 0), ">= 1")


def test_settings_are_checked_whenever_one_is_made():
    @dataclasses.dataclass
    class Example(Settings):
        rate: float = setting(0.5, "in [0, 1]")
        sizes: tuple[int, ...] = setting((4,), ">= 1")

    with pytest.raises(ValueError, match=r"^rate must be in \[0, 1\], got 2$"):
        Example(rate=2)
    with pytest.raises(ValueError, match=r"^sizes entries must be >= 1, got \[4, 0\]$"):
        settings.from_dict(Example, {"sizes": [4, 0]})
    with pytest.raises(ValueError, match=r"^rate must be a number, got 'fast'$"):
        settings.from_dict(Example, {"rate": "fast"})
    with pytest.raises(ValueError, match=r"^Example has no setting speed; its settings: rate, sizes$"):
        settings.from_dict(Example, {"speed": 1})
    with pytest.raises(ValueError, match=r"^the example has no settings rat, speed \(did you mean rate\?\); its "):
        settings.from_dict(Example, {"speed": 1, "rat": 0.5}, "the example")
    with pytest.raises(ValueError, match="keep-checkpoints must be >= 0, got -1"):
        TrainConfig(keep_checkpoints=-1)  # command-line settings are named by their flag


def test_agents_command_lists_one_agent_and_refuses_an_unknown_one():
    out = subprocess.run([sys.executable, "-m", "workbench.cli", "agents", "dqn"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("dqn: ") and "gradients on: learner only" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "workbench.cli", "agents", "ppo2"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"workbench agents: error: unknown agent 'ppo2'; choose one of {', '.join(AGENTS)}"]
