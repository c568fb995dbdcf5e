"""`python -m benchmarks`: a smoke run writes a complete results file; --compare reads two.

Speed itself is the benchmarks' business, never asserted here.
"""
import json
import subprocess
import sys
from pathlib import Path

from dataclasses import asdict

import pytest

import benchmarks  # noqa: F401 - puts the suite scripts on the import path
import report
from harness import Measure
from benchmarks.__main__ import main

ROOT = Path(__file__).resolve().parents[1]
RL_MEASURES = 6  # cartpole throughput at 4, 32, 64 envs per actor; breakout vs raw and vs sb3; time to solve


@pytest.mark.slow
def test_smoke_run_writes_every_measure(tmp_path):
    import engine
    import recipes
    import sharing

    out = tmp_path / "results.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(out.read_text())
    assert document["format"] == report.FORMAT and document["mode"] == "smoke"
    assert document["machine"]["cores"] >= 1 and "numpy" in document["machine"]["versions"]
    suites = document["suites"]
    assert list(suites) == ["engine", "sharing", "rl", "scaling", "recipes"]
    expected = {"engine": [c.name for c in engine.CASES + engine.RECURRENT_CASES],
                "sharing": [f"publish + pull {label} params" for label in sharing.SIZES] + [sharing.STEP_CASE],
                "recipes": [c.name for c in recipes.CASES]}
    for name, names in expected.items():
        assert [m["name"] for m in suites[name]["measures"]] == names
    assert len({m["name"] for m in suites["rl"]["measures"]}) == RL_MEASURES
    for name, content in suites.items():
        first, *rest = content["measures"]
        assert first["workbench"] > 0, (name, first)  # smoke mode runs each suite's first measure
        assert (first["peer"] or 0) > 0 or "not installed" in first["note"], (name, first)
        for m in rest:  # the others are listed, and say why they are empty
            assert m["workbench"] is not None or m["note"], (name, m)
    assert "ratio = workbench / peer" in done.stdout


def _document(figures: dict) -> dict:
    """A results file by hand: one engine measure per name; names ending in /s are rates."""
    measures = [asdict(Measure(name, "x", value, 1.0, "torch", "higher" if name.endswith("/s") else "lower"))
                for name, value in figures.items()]
    return {"format": report.FORMAT, "version": report.VERSION, "mode": "default", "machine": {},
            "suites": {"engine": {"seconds": 1.0, "measures": measures}}}


def test_compare_reports_changes_beyond_noise(tmp_path, capsys):
    old = _document({"step": 10.0, "steady": 10.0, "noisy": 10.0, "rate/s": 100.0, "gone": 1.0})
    new = _document({"step": 13.0, "steady": 10.5, "noisy": 13.0, "rate/s": 80.0, "added": 2.0})
    new["suites"]["engine"]["measures"][2]["spread"] = 0.2  # 30% is within twice a 20% spread
    rows = {r["name"]: r for r in report.compare(old, new)}
    assert rows["step"]["change"] == pytest.approx(30.0) and rows["step"]["flag"] == "slower"
    assert rows["steady"]["change"] == pytest.approx(5.0) and rows["steady"]["flag"] == ""
    assert rows["noisy"]["flag"] == ""
    assert rows["rate/s"]["change"] == pytest.approx(-20.0) and rows["rate/s"]["flag"] == "worse"
    assert rows["added"]["old"] is None and rows["added"]["change"] is None
    assert "gone" not in rows

    old_path, new_path = tmp_path / "old.json", tmp_path / "new.json"
    report.write(old_path, old)
    report.write(new_path, new)
    assert main(["--compare", str(old_path), str(new_path)]) == 0
    step_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("engine: step "))
    assert "+30.0%" in step_line and "slower" in step_line


def test_compare_names_a_bad_file(tmp_path):
    with pytest.raises(SystemExit, match="no such file"):
        main(["--compare", str(tmp_path / "missing.json")])
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"throughput": 1}))
    with pytest.raises(SystemExit, match="not a results file"):
        main(["--compare", str(other)])
    other.write_text("not json")
    with pytest.raises(SystemExit, match="not a results file"):
        main(["--compare", str(other)])


def test_unknown_suite_lists_the_suites(capsys):
    with pytest.raises(SystemExit):
        main(["engin"])
    assert "engine, sharing, rl, scaling, recipes" in capsys.readouterr().err


def test_an_unsolved_seed_counts_as_never_in_the_median_time_to_solve():
    import scaling

    def runs(*seconds):  # negative: unsolved after that long
        return [{"seconds": abs(s), "solved": s > 0} for s in seconds]

    assert scaling._median_time_to_solve(runs(11.3, 8.3, -24.4)) == 11.3  # not 9.8, of the solved two
    assert scaling._median_time_to_solve(runs(7.0, -8.3, -24.4)) is None


def test_gpu_check_rates_leave_out_the_lines_before_learning_starts(tmp_path, capsys):
    import gpu_check_rates

    lines = [f"step {step:,}/50,000,000   0% |   {rate:,} steps/s | return 1.0 last 10 | 9 episodes | "
             f"0:10 elapsed, ETA 2:00:00 | learner busy {busy}%"
             for step, rate, busy in [(40_000, 7_000, 15), (79_000, 7_100, 15), (81_000, 700, 99),
                                      (82_000, 720, 99), (83_000, 680, 98), (83_000, 0, 0)]]
    log = tmp_path / "dqn.log"
    log.write_text("dqn on ALE/Breakout-v5: 15 actor(s)\n" + "\n".join(lines) + "\nstopped by SIGINT\n")
    assert gpu_check_rates.main([str(log), "--from-step", "80000", "--skip", "0"]) == 0
    assert "over 3 progress lines: 700 env steps/s = 2,800 env frames/s; learner busy 99%" in capsys.readouterr().out
    assert gpu_check_rates.main([str(log), "--skip", "0"]) == 0  # the last line (the stop's) is never counted
    assert "over 5 progress lines: 720 env steps/s" in capsys.readouterr().out


def test_the_generalization_suite_takes_the_agents_that_take_the_env_and_tabulates_seeds(tmp_path):
    import suite

    assert suite.agents_for("Pendulum-v1") == ["a3c", "a3c-lstm", "impala", "reinforce", "ppo", "sac"]
    assert "sac" not in suite.agents_for("FrozenLake-v1") and "dqn" in suite.agents_for("FrozenLake-v1")
    runs = {"FrozenLake-v1": {"a3c": [{"final": v, "best": v + 0.1} for v in (0.2, 0.6, 0.7)],
                              "sb3-a2c": [{"final": None, "best": None}]}}
    lines = suite.table({"runs": runs}).splitlines()
    assert lines[0].split() == ["env", "agent", "final", "median", "95%", "interval", "best", "median", "seeds"]
    assert lines[1].split()[:3] == ["FrozenLake-v1", "a3c", "0.6"] and lines[1].endswith("0.2, 0.6, 0.7")
    assert lines[2].split()[:4] == ["FrozenLake-v1", "sb3-a2c", "no", "episode"]
    assert suite.median_final(runs["FrozenLake-v1"]["a3c"]) == 0.6
