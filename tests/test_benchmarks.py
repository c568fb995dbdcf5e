"""`python -m benchmarks`: a smoke run writes a complete results file; --compare reads two; the
harness times each library in a process of its own and gives three ratios.

Speed itself is the benchmarks' business, never asserted here.
"""
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dataclasses import asdict

import numpy as np
import pytest

import benchmarks  # noqa: F401 - puts the suite scripts on the import path
import harness
import report
from harness import Case, Measure, Result
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


def _tiny_workbench():
    assert "torch" not in sys.modules  # this side's process never loads PyTorch
    a = np.ones((64, 64), np.float32)
    return lambda: a @ a


def _tiny_torch():
    torch = harness.torch_module()
    a = torch.ones(64, 64)
    return lambda: a @ a


# run_case_in_processes finds a case again by name in its module's CASES
CASES = [Case("tiny matmul", _tiny_workbench, _tiny_torch, repeats=5)]


def test_each_library_is_timed_in_a_process_of_its_own():
    torch_threads = (1,) if importlib.util.find_spec("torch") else ()
    result = harness.run_case_in_processes(CASES[0], quick=False, threads=1, torch_threads=torch_threads,
                                           warmup=1)
    assert len(result.workbench_ms) == len(result.workbench_cpu_ms) == 5
    assert min(result.workbench_ms) > 0 and min(result.workbench_cpu_ms) >= 0
    pytest.importorskip("torch")  # CI has no PyTorch: the workbench side is all it times
    assert len(result.torch_ms) == len(result.torch_cpu_ms) == 5 and result.torch_threads == 1
    assert all(ratio > 0 for ratio in result.ratios())
    assert "tiny matmul" in harness.format_table([result])


def test_the_table_and_the_measure_give_three_ratios():
    result = Result("case", workbench_ms=[2.0, 4.0, 6.0], workbench_cpu_ms=[3.0, 4.0, 5.0],
                    torch_ms=[1.0, 8.0, 9.0], torch_cpu_ms=[2.0, 2.0, 2.0], torch_threads=2)
    assert result.ratios() == (2.0, 0.5, 2.0)
    group_line, _, _, row = harness.format_table([result]).splitlines()
    assert group_line.split() == ["workbench", "ms", "torch", "ratio"]
    assert row.split() == ["case", "2.000", "4.000", "4.000", "2", "1.000", "8.000", "2.000", "2.00", "0.50", "2.00"]
    measure = harness.measure_from_result(result)
    assert (measure.workbench, measure.peer, measure.ratio) == (4.0, 8.0, 0.5)
    assert (measure.workbench_cpu, measure.peer_cpu) == (4.0, 2.0) and measure.note == "torch at 2 threads"
    alone = Result("alone", [1.0], [1.0], None, None)
    assert alone.ratios() is None and "not installed" in harness.format_table([alone])


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
    runs = {"FrozenLake-v1": {"a3c": [{"final": v, "best": v + 0.1} for v in (0.2, 0.66, 0.7)],
                              "sb3-a2c": [{"final": None, "best": None}]},
            "Acrobot-v1": {"a3c": [{"final": v, "best": v + 10} for v in (-144.44, -92.0)]}}
    lines = suite.table({"runs": runs}).splitlines()
    assert lines[0].split() == ["env", "agent", "final", "median", "95%", "interval", "best", "median", "seeds"]
    # two decimals where returns are small (FrozenLake's success rates), one elsewhere
    assert lines[1].split()[:3] == ["FrozenLake-v1", "a3c", "0.66"] and lines[1].endswith("0.20, 0.66, 0.70")
    assert lines[2].split()[:4] == ["FrozenLake-v1", "sb3-a2c", "no", "episode"]
    assert lines[3].split()[:3] == ["Acrobot-v1", "a3c", "-118.2"] and lines[3].endswith("-144.4, -92.0")
    assert suite.median_final(runs["FrozenLake-v1"]["a3c"]) == 0.66


def test_the_suite_judges_the_last_window_of_episodes_and_blackjack_on_a_wider_one():
    import suite

    assert suite.final_and_best([4.0, 0.0, 0.0, 1.0], 2) == (0.5, 2.0)  # windows 2, 0, 0.5
    assert suite.final_and_best([1.0, 3.0], 5) == (2.0, 2.0)            # fewer than a window: all of them
    assert suite.final_and_best([], 100) == (None, None)
    assert suite.window("CartPole-v1") == 100 and suite.window("Blackjack-v1") == 1000


def test_a_benchmark_killed_mid_run_leaves_no_worker_behind(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = tmp_path / "parent.py"
    script.write_text(f"""
import os, sys, time
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
import harness

def work(path):
    open(path, "w").write(str(os.getpid()))
    time.sleep(60)

if __name__ == "__main__":
    harness.in_own_process(work, {str(pid_file)!r})
""")
    parent = subprocess.Popen([sys.executable, str(script)])
    try:
        for _ in range(300):
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        worker = int(pid_file.read_text())
    finally:
        parent.kill()
        parent.wait()
    for _ in range(100):
        if not Path(f"/proc/{worker}").exists() or "zombie" in Path(f"/proc/{worker}/status").read_text():
            return
        time.sleep(0.1)
    os.kill(worker, 9)
    raise AssertionError("the benchmark's worker outlived it")


def test_the_suite_leaves_out_a_peer_that_is_not_installed(monkeypatch, capsys):
    import suite

    def no_sb3(*args):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(suite, "in_own_process", lambda fn, *args: fn(*args))
    monkeypatch.setattr(suite, "own_run", lambda *args: {"final": 0.5, "best": 0.6, "episodes": 9, "seconds": 1.0})
    monkeypatch.setattr(suite, "sb3_run", no_sb3)
    results = suite.suite(["FrozenLake-v1"], ["a3c"], 2, ["a2c"], 0.01)
    assert list(results["runs"]["FrozenLake-v1"]) == ["a3c"]
    out = capsys.readouterr().out
    assert "sb3-a2c skipped: No module named 'torch'" in out and "no episode" not in out


def test_the_suite_report_sets_the_best_agent_against_the_best_peer(monkeypatch):
    import suite

    def runs(*finals):
        return [{"final": f, "best": f} for f in finals]

    results = {"runs": {"CliffWalking-v1": {"a3c": runs(-13, -14), "ppo": runs(-29, -27),
                                            "sb3-a2c": runs(None), "sb3-ppo": runs(-17, -15)},
                        "Taxi-v4": {"a3c": runs(-200), "sb3-a2c": runs(None), "sb3-ppo": runs(None)}}}
    monkeypatch.setattr(suite, "suite", lambda *args: results)
    cliff, taxi = suite.run()
    assert (cliff.name, cliff.workbench, cliff.peer, cliff.peer_name) == (
        "CliffWalking-v1 final last-100 (a3c)", -13.5, -16, "sb3 ppo")
    assert taxi.peer is None and taxi.note


def test_bad_input_to_a_benchmark_script_is_one_line_and_exit_2():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "engine.py"
    result = subprocess.run([sys.executable, str(script), "--threads", "0"], capture_output=True,
                            text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "--threads needs a positive integer, got '0'"


def test_a_gpu_peer_without_cuda_is_refused_in_one_line(capsys):
    """stable-baselines3 asked for "cuda" quietly runs on the CPU where there is none: the
    benchmark says so instead of timing the CPU as the GPU."""
    torch = harness.torch_module()
    if torch is not None and torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the peer would run on it")
    import rl_atari
    with pytest.raises(SystemExit) as stop:
        rl_atari.main(["--peer-only", "--peer-device", "cuda"])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == ("rl_atari.py: --peer-device cuda needs PyTorch with CUDA "
                                               "and a GPU, and none was found here; use --peer-device cpu")


def test_gpu_check_rates_curve_gives_the_mean_at_each_minute_and_when_it_reached_the_target(tmp_path, capsys):
    import gpu_check_rates

    progress = [(1_000, "- (no episode has ended yet)", "0:05"), (50_000, "-21.0 last 10, -21.0 last 20", "0:30"),
                (120_000, "-15.0 last 10, -18.0 last 60", "1:10"), (200_000, "18.5 last 10,   2.0 last 100", "2:05"),
                (260_000, "19.0 last 10,   9.0 last 100", "2:40")]
    log = tmp_path / "learn.log"
    log.write_text("".join(f"step {step:,}/50,000,000   0% |  9,000 steps/s | return {returns} | 9 episodes | "
                           f"{clock} elapsed, ETA 2:00:00 | learner busy 50%\n" for step, returns, clock in progress))
    assert gpu_check_rates.main([str(log), "--curve"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "last-10 mean at each minute of training: 1:00 -21.0 | 2:00 -15.0",
        "last-10 mean >= 18: at 2:05 of training (step 200,000)"]
    assert gpu_check_rates.main([str(log), "--curve", "--target", "20"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "last-10 mean >= 20: not reached in 2:40 (best 19.0)"
    with pytest.raises(SystemExit) as stop:  # a log that is not there: one line, not a traceback
        gpu_check_rates.main([str(tmp_path / "missing.log"), "--curve"])
    assert stop.value.code == 2
    assert capsys.readouterr().err == f"gpu_check_rates.py: no log file at {tmp_path / 'missing.log'}\n"


def test_gpu_check_without_a_gpu_says_what_each_part_skips_and_refuses_unknown_parts(tmp_path):
    from nets import backend
    if backend.gpu_available():
        pytest.skip("this machine has a GPU: the parts would run")
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.sh"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    result = subprocess.run(["bash", str(script), "engine", "lern"], capture_output=True, text=True, env=env)
    assert result.returncode == 2 and result.stdout.startswith("unknown part lern: choose from tests")
    assert not (tmp_path / "out" / "summary.txt").exists()  # nothing ran
    result = subprocess.run(["bash", str(script), "engine", "learn", "recipes"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0
    summary = (tmp_path / "out" / "summary.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in summary if "skipped, no GPU here" in line] == [
        "engine", "learn", "recipes"]
