"""A new user's first runs, with an empty Numba cache: every kernel compiles during the run, as on
a fresh install. A warm cache once hid a crash here (a thread setting changed after Numba's
threads started, fatal only when a kernel compiled mid-run), so each case gets a cache of its own."""
import os
import subprocess
import sys

import pytest

WORKBENCH = [sys.executable, "-m", "workbench.cli"]


def cold(tmp_path, *args, timeout=300):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache")}
    for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env.pop(name, None)  # what a new user's shell has
    result = subprocess.run([*WORKBENCH, *map(str, args)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert any((tmp_path / "numba-cache").rglob("*.nbi")), "nothing was compiled: the cache was not cold"
    return result


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["a3c", "a3c-lstm", "nstep-q", "onestep-q", "reinforce"])
def test_each_agent_trains_from_an_empty_cache(tmp_path, agent):
    result = cold(tmp_path, "train", "--env", "CartPole-v1", "--agent", agent, "--actors", 2,
                  "--steps", 3000, "--log-every", 0.5)
    assert "done: " in result.stdout


@pytest.mark.slow
def test_one_actor_inline_then_play_with_a_recording_from_an_empty_cache(tmp_path):
    cold(tmp_path, "train", "--env", "CartPole-v1", "--actors", 1, "--backend", "inline",
         "--steps", 2000, "--name", "inline")
    result = cold(tmp_path, "play", tmp_path / "runs" / "inline", "--record", tmp_path / "cartpole.gif",
                  "--max-steps", 5)  # no CartPole episode ends in 5 steps: the pole needs ~8 to fall
    assert (tmp_path / "cartpole.gif").stat().st_size > 0 and "recorded 6 frames" in result.stdout


@pytest.mark.slow
def test_atari_trains_from_an_empty_cache(tmp_path):
    pytest.importorskip("ale_py")
    result = cold(tmp_path, "train", "--env", "ALE/Breakout-v5", "--actors", 2, "--steps", 400)
    assert "done: " in result.stdout
    assert "A.L.E: Arcade Learning Environment" not in result.stdout + result.stderr  # no banner


@pytest.mark.slow
def test_a_recipe_runs_from_an_empty_cache(tmp_path):
    result = cold(tmp_path, "recipe", "caesar", "--epochs", 1, "--no-progress")
    assert "test" in result.stdout
