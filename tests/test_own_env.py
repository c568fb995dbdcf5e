"""A user's own Gymnasium env, from a module of theirs: trained through the CLI (actor processes
and inline) and the Python API (a factory function), played and resumed in fresh processes; Dict,
Discrete and image observations; one-line errors for what cannot work."""
import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import workbench
from envs import probe
from workbench.rl import RunFailed, TrainConfig, train

MODULE = "own_envs"  # written into a temporary folder, the working folder of every test here
SOURCE = textwrap.dedent('''
    """A user's envs: a corridor with one reward at its far end (a random walk reaches it in 16% of
    its 30-step episodes), the same with a Dict observation holding a text mission, the same drawn
    as an image, and envs that break Gymnasium's API or take actions no agent learns."""
    import gymnasium as gym
    import numpy as np
    from gymnasium import spaces


    class Corridor(gym.Env):
        def __init__(self, length=10):
            self.length = length
            self.observation_space = spaces.Discrete(length)
            self.action_space = spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.position = 0
            return self.observe(), {}

        def observe(self):
            return self.position

        def step(self, action):
            self.position = max(0, self.position + (1 if action == 1 else -1))
            done = self.position == self.length - 1
            return self.observe(), float(done), done, False, {}


    class DictCorridor(Corridor):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Dict({"position": spaces.Discrete(self.length),
                                                  "mission": spaces.Text(20)})

        def observe(self):
            return {"position": self.position, "mission": "walk right"}


    class PictureCorridor(Corridor):
        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Box(0, 255, (24, 24, 3), np.uint8)

        def observe(self):
            image = np.zeros((24, 24, 3), np.uint8)
            image[:, 2 * self.position:2 * self.position + 2] = 255
            return image


    class OldReset(Corridor):
        def reset(self, *, seed=None, options=None):
            return super().reset(seed=seed)[0]


    class OldStep(Corridor):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, reward, terminated or truncated, info


    class TwoLevers(Corridor):
        def __init__(self):
            super().__init__()
            self.action_space = spaces.MultiDiscrete([2, 2])


    class Treadmill(Corridor):
        """An episode that never ends: there is no far end, and it is registered without a limit."""

        def step(self, action):
            return self.observe(), 0.0, False, False, {}


    class FromOne(Corridor):
        """Actions numbered 1 (left) and 2 (right)."""

        def __init__(self):
            super().__init__()
            self.action_space = spaces.Discrete(2, start=1)

        def step(self, action):
            assert action in (1, 2), f"invalid action {action}"
            return super().step(action - 1)


    class Broken(Corridor):
        """A sensor that fails: NaN observations."""

        def __init__(self):
            super().__init__()
            self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

        def observe(self):
            return np.array([np.nan, self.position / self.length], np.float32)


    class Jams(Corridor):
        """A motor that jams halfway along: step raises there."""

        def step(self, action):
            if self.position == 4:
                raise RuntimeError("motor jammed")
            return super().step(action)


    class Leaky(Corridor):
        """Positions from halfway on come out 10 too high: outside Discrete(10)."""

        def observe(self):
            return self.position + (10 if self.position >= 4 else 0)


    class Sized(Corridor):
        """A corridor whose length must be given (--env-option length=N)."""

        def __init__(self, length, *, slippery):
            super().__init__(length)


    class Slips(Corridor):
        """Fails one step along: past the single step from the start that a probe takes."""

        def step(self, action):
            if self.position == 1:
                raise RuntimeError("slipped")
            return super().step(action)


    class Unpainted(Corridor):
        """Takes render_mode, as Gymnasium's template does, but has no render()."""

        metadata = {"render_modes": ["rgb_array"]}

        def __init__(self, render_mode=None):
            super().__init__()
            self.render_mode = render_mode


    class Stuck(Corridor):
        """A door that will not close."""

        def close(self):
            raise RuntimeError("door stuck")


    class NoReward(Corridor):
        def step(self, action):
            obs, _, terminated, truncated, info = super().step(action)
            return obs, None, terminated, truncated, info


    def make_corridor():
        return gym.wrappers.TimeLimit(Corridor(), 30)


    for env in (Corridor, DictCorridor, PictureCorridor, OldReset, OldStep, TwoLevers, FromOne, Broken, Jams,
                Leaky, NoReward, Sized, Slips, Unpainted, Stuck):
        gym.register(f"{env.__name__}-v0", entry_point=env, max_episode_steps=30)
    gym.register("Treadmill-v0", entry_point=Treadmill)
''')
RANDOM_RETURN = 0.16  # a random walk's mean return in the corridor (2,000 episodes)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user")
    (folder / f"{MODULE}.py").write_text(SOURCE)
    return folder


@pytest.fixture
def here(folder, monkeypatch):
    """The user's folder as the working folder, as where they run workbench."""
    monkeypatch.chdir(folder)
    return folder


def workbench_cli(folder, *args, timeout=180):
    return subprocess.run([sys.executable, "-m", "workbench.cli", *args], cwd=folder, capture_output=True,
                          text=True, timeout=timeout)


def summary_return(run_folder) -> float:
    line = next(line for line in (run_folder / "summary.txt").read_text().splitlines() if line.startswith("return"))
    return float(line.split()[1])


@pytest.mark.slow
def test_the_cli_trains_a_module_env_with_actor_processes_then_plays_and_resumes_it(folder):
    trained = workbench_cli(folder, "train", "--env", f"{MODULE}:Corridor-v0", "--steps", "20000",
                            "--name", "corridor", "--log-every", "5")
    assert trained.returncode == 0, trained.stderr
    assert "note: observations Discrete(10) become one-hot vectors of 10" in trained.stdout
    run = folder / "runs" / "corridor"
    assert json.loads((run / "config.json").read_text())["env"] == f"{MODULE}:Corridor-v0"
    assert summary_return(run) >= 0.95 > RANDOM_RETURN

    played = workbench_cli(folder, "play", str(run), "--greedy", "--episodes", "2")
    assert played.returncode == 0, played.stderr
    assert "episode 1: return 1 (9 steps)" in played.stdout  # the shortest way along the corridor

    resumed = workbench_cli(folder, "train", "--resume", str(run / "config.json"), "--steps", "24000")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "done: 24," in resumed.stdout


def test_an_inline_run_learns_the_corridor_and_repeats_from_its_seed(here, tmp_path):
    def run(name):
        config = TrainConfig(env=f"{MODULE}:Corridor-v0", backend="inline", steps=12_000, seed=3,
                             logdir=str(tmp_path))
        return train(config, name=name, console=lambda line: None)

    first, second = run("a"), run("b")
    assert first.mean_return >= 0.95 > RANDOM_RETURN
    assert list(first.progress.recent_returns) == list(second.progress.recent_returns)
    assert first.progress.episodes == second.progress.episodes


def test_actions_numbered_from_another_start_reach_the_env_with_it(here, tmp_path):
    config = TrainConfig(env=f"{MODULE}:FromOne-v0", backend="inline", steps=3_000, logdir=str(tmp_path))
    notes = probe(config.env).notes
    assert "actions Discrete(2, start=1) are numbered from 0 (the env gets action + 1)" in notes
    assert train(config, name="a", console=lambda line: None).outcome == "finished"


def test_an_env_s_nan_observation_is_named_not_taken_for_divergence(here, tmp_path):
    """Inline, the error itself; with actor processes, the first actor that meets it stops the run
    (a replacement would meet it again)."""
    says = r"the env gave a non-finite observation \(NaN or inf, as float32\) in the rollout from env step"
    with pytest.raises(RunFailed, match=says):
        train(TrainConfig(env=f"{MODULE}:Broken-v0", backend="inline", steps=3_000, logdir=str(tmp_path)),
              name="b", console=lambda line: None)
    assert "outcome      failed: the env gave a non-finite" in (tmp_path / "b" / "summary.txt").read_text()
    done = workbench_cli(here, "train", "--env", f"{MODULE}:Broken-v0", "--actors", "2", "--steps", "20000",
                         "--logdir", str(tmp_path))
    assert done.returncode == 1 and "replaced it" not in done.stdout
    assert re.search(r"workbench train: error: actor \d stopped on an error that a new actor would meet again "
                     r"\(NonFiniteEnvValue: " + says, done.stderr), done.stderr


@pytest.mark.parametrize("backend", ["inline", "processes", pytest.param("ray", marks=pytest.mark.slow)])
def test_an_env_that_raises_while_training_stops_the_run_with_one_line_naming_it(folder, tmp_path, backend):
    """Inline it was the env's traceback; with actor processes each actor that met it was replaced;
    with Ray actors the learner stopped on Ray's message, its traceback included."""
    if backend == "ray":
        pytest.importorskip("ray")
    done = workbench_cli(folder, "train", "--env", f"{MODULE}:Jams-v0", "--backend", backend, "--steps", "20000",
                         "--logdir", str(tmp_path))
    lines = done.stderr.strip().splitlines()
    if backend == "ray":  # Ray's own notices (of its token authentication) may come first; no traceback
        assert "Traceback" not in done.stderr, done.stderr
        lines = [line for line in lines if line.startswith("workbench train")]
    assert done.returncode == 1 and len(lines) == 1, done.stderr
    assert f"environment '{MODULE}:Jams-v0': step() raised RuntimeError: motor jammed" in lines[0]
    assert "replaced it" not in done.stdout


def test_an_env_that_fails_in_evaluation_ends_evaluation_with_its_reason(here):
    """The evaluation process printed the env's traceback amid the progress lines; the learner now
    gets the reason (rl.train says it as a warning) and training goes on."""
    import time

    from workbench.episodes import Evaluator, build

    config = TrainConfig(env=f"{MODULE}:Slips-v0").to_dict()
    reasons = []
    evaluator = Evaluator(config, every=100, episodes=3, seed=0, report=lambda step, results: None,
                          failed=reasons.append)
    try:
        weights = build(config)[1].network.flat().data
        end = time.monotonic() + 60
        while not reasons and time.monotonic() < end:
            evaluator.tick(100, weights)
            time.sleep(0.05)
        assert reasons == [f"environment '{MODULE}:Slips-v0': step() raised RuntimeError: slipped"]
        assert evaluator.next == float("inf")  # no more evaluations
    finally:
        evaluator.stop()


def test_an_observation_outside_the_env_s_space_is_named(here, tmp_path):
    """Discrete(10)'s 14 was an IndexError from inside Gymnasium's one-hot wrapper (and -1 was
    read, silently, as 9)."""
    with pytest.raises(RunFailed, match=rf"^environment '{MODULE}:Leaky-v0': step\(\) returned an observation "
                                        rf"14, which is not in its observation space Discrete\(10\): one int from 0 "
                                        rf"to 9; "):
        train(TrainConfig(env=f"{MODULE}:Leaky-v0", backend="inline", steps=3_000, logdir=str(tmp_path)),
              name="leaky", console=lambda line: None)


def test_playing_or_evaluating_an_env_that_raises_is_one_line(here, tmp_path):
    """The user's env breaks after training: play says so in one line (exit 1; it was a
    traceback), evaluate raises EnvError."""
    from envs import EnvError

    module = here / "later.py"
    module.write_text(f"from {MODULE} import Corridor as Later\n")
    run = workbench.train(env="later:Later", steps=500, backend="inline", logdir=str(tmp_path), verbose=False)
    module.write_text(f"from {MODULE} import Corridor\n\n\nclass Later(Corridor):\n"  # past play's probe
                      f"    def step(self, action):\n        if self.position == 1:\n"
                      f"            raise RuntimeError('motor jammed')\n        return super().step(action)\n")
    played = workbench_cli(here, "play", str(run.path), "--episodes", "10")
    assert played.returncode == 1 and played.stderr.strip() == (
        "workbench play: error: environment 'later:Later': step() raised RuntimeError: motor jammed")
    import gymnasium as gym

    class Jammed(gym.Env):  # an env object of the caller's
        observation_space, action_space = gym.spaces.Discrete(10), gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            return 0, {}

        def step(self, action):
            raise RuntimeError("motor jammed")

    with pytest.raises(EnvError, match=r"^environment 'Jammed': step\(\) raised RuntimeError: motor jammed$"):
        workbench.evaluate(workbench.load(run.path), env=Jammed())


@pytest.mark.slow
def test_the_python_api_trains_a_factory_in_actor_processes_then_loads_and_evaluates_it(here, tmp_path,
                                                                                      monkeypatch):
    monkeypatch.syspath_prepend(str(here))  # as `python script.py` run there has it (not pytest)
    import own_envs
    run = workbench.train(env=own_envs.make_corridor, steps=20_000, actors=2, logdir=str(tmp_path),
                          name="api", verbose=False)
    assert run.outcome == "finished" and run.mean_return >= 0.95
    assert "finished at step" in run.summary
    assert repr(run) == (f"RunResult({run.path} finished at step {run.progress.step:,}: mean return "
                         f"{run.mean_return:g} over the last 100 episodes)")
    policy = workbench.load(run.path)
    assert policy.env_id == f"{MODULE}:make_corridor"
    evaluation = workbench.evaluate(policy, episodes=3)
    assert evaluation.returns == [1.0] * 3 and evaluation.lengths == [9] * 3
    import gymnasium as gym

    raw = gym.make(f"{MODULE}:Corridor-v0")  # the user's own env object: preprocessed to fit
    assert workbench.evaluate(policy, env=raw, episodes=2).mean == 1.0
    obs, _ = policy.make_env().reset(seed=0)
    assert policy.act(obs) == 1  # right, towards the reward


def test_a_lambda_or_an_env_object_is_refused_in_one_line(here):
    import gymnasium as gym

    with pytest.raises(ValueError, match=r"^env <lambda> is a lambda or a nested function, which actor "
                                         r"processes cannot import; define `def make_env\(\)"):
        workbench.train(env=lambda: gym.make("CartPole-v1"))
    with pytest.raises(ValueError, match=r"not an env object \(TimeLimit\)"):
        workbench.train(env=gym.make("CartPole-v1"))


@pytest.mark.parametrize("keywords,message", [
    ({"stepz": 300}, "workbench.train() takes no keyword stepz (did you mean steps?): its keywords are its "
                     "arguments, workbench train's settings (actor_timeout, "),
    ({"agent": "ppo", "clip_rnge": 0.1}, "workbench.train() takes no keyword clip_rnge (did you mean "
                                         "clip_range?): "),
])
def test_a_mistyped_keyword_is_matched_against_the_run_s_settings_and_the_agent_s(tmp_path, keywords, message):
    with pytest.raises(ValueError) as error:
        workbench.train(logdir=str(tmp_path), **keywords)
    assert str(error.value).startswith(message) and not any(tmp_path.iterdir())


@pytest.fixture(scope="module")
def cartpole(tmp_path_factory):
    """A CartPole A3C run of a few hundred steps through the Python API, actors in process."""
    return workbench.train(env="CartPole-v1", steps=300, actors=1, backend="inline", verbose=False,
                           logdir=str(tmp_path_factory.mktemp("runs")), name="cartpole").path


def test_an_observation_that_does_not_fit_the_policy_is_one_line(cartpole):
    policy = workbench.load(cartpole)
    expected = ("obs must be one observation of shape (4,), as policy.make_env() gives them (CartPole-v1 "
                "with workbench's preprocessing), got ")
    for obs, given in [([0.0, 1.0], "shape (2,)"), (None, "None"), (np.zeros((1, 4)), "shape (1, 4)")]:
        with pytest.raises(ValueError) as error:
            policy.act(obs)
        assert str(error.value) == expected + given
    obs, _ = policy.make_env().reset(seed=0)
    assert policy.act(obs) in (0, 1) and policy.act(obs.tolist()) in (0, 1)


def test_evaluating_on_an_env_whose_observations_do_not_fit_names_both_envs(cartpole):
    import gymnasium as gym

    policy = workbench.load(cartpole)
    for env in ("Acrobot-v1", gym.make("Acrobot-v1")):
        with pytest.raises(ValueError) as error:
            workbench.evaluate(policy, env=env)
        assert str(error.value) == ("env Acrobot-v1 does not fit the policy: its observations have shape "
                                    "(6,), but the policy was trained on CartPole-v1, whose observations "
                                    "have shape (4,)")
    another = gym.make("CartPole-v1", max_episode_steps=5)  # another env that fits
    assert workbench.evaluate(policy, env=another, episodes=2).lengths == [5, 5]

    class ThreeLevers(gym.Env):  # CartPole's observations, three actions
        observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        action_space = gym.spaces.Discrete(3)

    with pytest.raises(ValueError, match=r"^env ThreeLevers does not fit the policy: its actions are "
                                         r"Discrete\(3\), but the policy was trained on CartPole-v1, whose "
                                         r"actions are Discrete\(2\)$"):
        workbench.evaluate(policy, env=ThreeLevers())


def test_an_episode_that_never_ends_is_played_to_the_longest_one(here, tmp_path, monkeypatch):
    """Without --max-steps, play and evaluate played it forever, printing nothing."""
    import workbench.episodes

    monkeypatch.setattr(workbench.episodes, "LONGEST_EPISODE", 300)
    treadmill = workbench.train(env=f"{MODULE}:Treadmill-v0", steps=100, backend="inline", verbose=False,
                                logdir=str(tmp_path))
    assert workbench.evaluate(workbench.load(treadmill.path), episodes=2).lengths == [300, 300]


@pytest.mark.parametrize("keywords,message", [
    ({"episodes": 0}, "episodes must be >= 1, got 0"),
    ({"max_steps": 0}, "max_steps must be >= 1 (or None: the env's own time limit), got 0"),
])
def test_evaluate_refuses_what_workbench_play_refuses(cartpole, keywords, message):
    policy = workbench.load(cartpole)
    with pytest.raises(ValueError) as error:
        workbench.evaluate(policy, **keywords)
    assert str(error.value) == message
    assert workbench.evaluate(policy, episodes=2, max_steps=3).lengths == [3, 3]


def test_resuming_another_agent_or_a_recipe_run_is_one_line_in_the_api_as_in_the_cli(cartpole, tmp_path):
    recipe = tmp_path / "recipe-run"
    recipe.mkdir()
    (recipe / "config.json").write_text(json.dumps({"recipe": "mnist-mlp", "args": {}}))
    for run, agent, message in [
        (cartpole, "ppo", f"{cartpole} was trained with a3c, so it resumes with a3c, not ppo: leave out the "
                          f"agent, or start a new run for ppo"),
        (recipe, None, f"{recipe} is a recipe run: continue it with workbench recipe mnist-mlp --resume "
                       f"{recipe}"),
    ]:
        with pytest.raises(ValueError) as error:
            workbench.train(resume=run, agent=agent, verbose=False)
        assert str(error.value) == message
        flags = ["--agent", agent] if agent else []
        result = workbench_cli(tmp_path, "train", "--resume", str(run), *flags)
        assert result.returncode == 2 and result.stderr.strip() == f"workbench train: error: {message}"


def test_dict_observations_with_text_train_and_images_get_the_conv_net(here, tmp_path):
    info = probe(f"{MODULE}:DictCorridor-v0")
    assert info.observation_space.shape == (10,) and info.family == "vector"
    assert info.notes == ("the observations' text parts (mission) are left out",
                          "observations Dict('position': Discrete(10)) are flattened to vectors of 10 "
                          "(Discrete parts one-hot)")
    result = train(TrainConfig(env=f"{MODULE}:DictCorridor-v0", backend="inline", steps=3000,
                               logdir=str(tmp_path)), name="dict", console=lambda line: None)
    assert result.progress.episodes > 0

    pictures = TrainConfig(env=f"{MODULE}:PictureCorridor-v0", backend="inline", actors=1, envs_per_actor=1,
                           steps=100, logdir=str(tmp_path))
    info = pictures.env_info
    assert (info.observation_space.shape, info.observation_space.dtype, info.family) == ((4, 84, 84), np.uint8, "pixels")
    assert pictures.agent_settings().lr == 7e-4  # Atari's presets: the images' family
    lines = []
    train(pictures, name="pictures", console=lines.append)
    assert "note: image observations (24, 24, 3) become the last 4 grayscale 84x84 frames, as Atari's, " \
           "for the conv net" in lines
    saved = json.loads((tmp_path / "pictures" / "config.json").read_text())
    assert saved["agent_config"]["trunk"] == "auto"


@pytest.mark.parametrize("env,message", [
    ("OldReset-v0", "reset() returned an int, not a tuple; Gymnasium expects (observation, info dict)"),
    ("OldStep-v0", "step() returned 4 values; Gymnasium expects 5 values (observation, reward, terminated, "
                   "truncated, info)"),
    ("NoReward-v0", "step() returned the reward None; Gymnasium expects one number"),
    ("Stuck-v0", "close() raised RuntimeError: door stuck"),  # the probe's close: a traceback
    ("TwoLevers-v0", "has actions MultiDiscrete([2 2]); workbench's agents learn Discrete or "
                     "one-dimensional Box actions"),
    ("Nowhere-v0", f"module '{MODULE}' registers no environment 'Nowhere-v0' and has no function of that "
                   f"name; it registers Corridor-v0, DictCorridor-v0"),
])
def test_what_cannot_train_is_one_line_and_exit_2(folder, env, message):
    result = workbench_cli(folder, "train", "--env", f"{MODULE}:{env}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert message in result.stderr
    assert not (folder / "runs" / env).exists()


@pytest.mark.parametrize("options,message", [
    ([], "needs length and slippery to be made: give them with --env-option length=VALUE (from Python: "
         "env_options={'length': ...})"),
    (["--env-option", "length=6"], "needs slippery to be made: give it with --env-option slippery=VALUE (from "
                                   "Python: env_options={'slippery': ...})"),
])
def test_an_env_whose_constructor_needs_arguments_names_them_and_the_flag(folder, options, message):
    """It was gymnasium's TypeError, with its 'was raised from the environment creator ... with kwargs'."""
    result = workbench_cli(folder, "train", "--env", f"{MODULE}:Sized-v0", *options)
    assert result.returncode == 2
    assert result.stderr.strip() == f"workbench train: error: environment '{MODULE}:Sized-v0' {message}"


def test_recording_an_env_without_rgb_array_rendering_is_one_line(here, tmp_path):
    """Gymnasium's warning about the render mode came first, and its TypeError carried the kwargs."""
    run = workbench.train(env=f"{MODULE}:Corridor-v0", steps=200, backend="inline", logdir=str(tmp_path),
                          verbose=False)
    played = workbench_cli(here, "play", str(run.path), "--record", str(tmp_path / "corridor.gif"))
    assert played.returncode == 2
    assert played.stderr == (f"workbench play: error: recording {MODULE}:Corridor-v0 needs its env to take "
                             f"render_mode=\"rgb_array\" (Corridor.__init__() got an unexpected keyword argument "
                             f"'render_mode')\n")
    assert not (tmp_path / "corridor.gif").exists()

    run = workbench.train(env=f"{MODULE}:Unpainted-v0", steps=200, backend="inline", logdir=str(tmp_path),
                          verbose=False)
    played = workbench_cli(here, "play", str(run.path), "--record", str(tmp_path / "unpainted.gif"))
    assert played.returncode == 1  # it was gymnasium.Env.render's NotImplementedError, a traceback
    assert played.stderr == (f"workbench play: error: environment '{MODULE}:Unpainted-v0': render() raised "
                             f"NotImplementedError\n")
    assert not list(tmp_path.glob("*unpainted*"))


def test_a_module_that_is_nowhere_names_the_folder_it_looked_in(folder):
    result = workbench_cli(folder, "train", "--env", "nowhere_envs:Corridor-v0")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"workbench train: error: environment 'nowhere_envs:Corridor-v0': no module "
                                     f"'nowhere_envs' in {folder} or among the installed packages; run from "
                                     f"the folder that holds nowhere_envs.py, or pip install it")


@pytest.mark.slow
def test_ray_actors_import_the_module_env(folder):
    pytest.importorskip("ray")
    result = workbench_cli(folder, "train", "--env", f"{MODULE}:Corridor-v0", "--backend", "ray",
                           "--steps", "4000", "--name", "ray")
    assert result.returncode == 0, result.stderr
    assert "finished at step" in (folder / "runs" / "ray" / "summary.txt").read_text()


def test_ctrl_c_stops_a_python_api_run_with_a_checkpoint_and_resume_continues_it(tmp_path, monkeypatch):
    """What a notebook's interrupt does: the run ends at the next update with a checkpoint, and
    the caller's own SIGINT handler is back afterwards."""
    import os
    import signal

    from actors import Learner

    before = signal.getsignal(signal.SIGINT)
    update, interrupted = Learner.update, []

    def update_then_interrupt_once(self, arrived):  # Ctrl-C mid-run, after a first update
        update(self, arrived)
        if not interrupted:
            interrupted.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(Learner, "update", update_then_interrupt_once)
    run = workbench.train(env="CartPole-v1", steps=10_000_000, backend="inline", logdir=str(tmp_path),
                          name="interrupted", verbose=False)
    assert run.outcome == "stopped" and 0 < run.progress.step < 10_000_000
    assert signal.getsignal(signal.SIGINT) is before
    resumed = workbench.train(resume=run.path, steps=run.progress.step + 500, verbose=False)
    assert resumed.outcome == "finished" and resumed.path == run.path
    assert resumed.progress.step >= run.progress.step + 500


@pytest.mark.parametrize("call", [
    "import workbench\nworkbench.train(steps=2000, logdir=LOGDIR)\n",
    "from workbench.rl import TrainConfig, train\ntrain(TrainConfig(steps=2000, logdir=LOGDIR))\n",
])
def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path, call):
    """multiprocessing's forkserver re-runs the caller's script in every actor it starts: there
    the training call (the API's or workbench.rl's, which the API calls) says what to do in one
    line instead of a traceback about bootstrapping."""
    script = tmp_path / "unguarded.py"
    script.write_text(call.replace("LOGDIR", repr(str(tmp_path))))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert ("workbench.train was called again while an actor process imported the script that calls "
            "it: put the call under `if __name__ == \"__main__\":`") in done.stderr
    assert "bootstrapping phase" not in done.stderr
    assert "replaced it" not in done.stderr  # stopped at the first: a new actor would do the same
    assert re.search(r"RunFailed: actor \d exited because it re-ran the script that starts the run, which "
                     r"has no `if __name__ == \"__main__\":` guard: put the training call under one", done.stderr)


def test_an_env_whose_episodes_never_end_gets_a_one_line_warning(here):
    from actors import ActorSpec, InlineActors, Learner
    from agents import make_agent, make_config

    env = f"{MODULE}:Treadmill-v0"
    info = probe(env)
    agent = make_agent("a3c", info.observation_space, info.action_space, make_config("a3c"))
    lines = []
    learner = Learner(agent, InlineActors(ActorSpec(env, "a3c", make_config("a3c"), envs_per_actor=2), 1), 400,
                      console=lines.append)
    learner.no_episode_steps = 200
    learner.run()
    warnings = [line for line in lines if line.startswith("warning: ")]
    assert warnings == ["warning: no episode has ended in the first 200 env steps: if the env has no time "
                        "limit, give it one with --env-option max_episode_steps=N"]
    assert learner.warnings == [warnings[0].removeprefix("warning: ")]


def test_whole_episodes_of_an_env_that_never_ends_stop_the_run_naming_the_time_limit(here, tmp_path, monkeypatch):
    """REINFORCE's actors waited for the episode's end forever: no progress line, and inline not
    even Ctrl-C stopped it."""
    import actors.collector

    monkeypatch.setattr(actors.collector, "LONGEST_EPISODE", 2_000)
    with pytest.raises(RunFailed, match=r"^an episode has gone on for 2,000 steps without ending, and this agent "
                                        r"learns from whole episodes: give the env a time limit with --env-option "
                                        r"max_episode_steps=N; no checkpoint was written$"):
        train(TrainConfig(env=f"{MODULE}:Treadmill-v0", agent="reinforce", backend="inline", steps=3_000,
                          logdir=str(tmp_path)), name="treadmill", console=lambda line: None)


def test_the_no_episode_warning_waits_the_same_steps_in_each_env():
    """Pong's first episodes last ~800 steps in each env: with 15 actors x 8 envs, 50k steps in all
    (the old threshold) was 420 in each, and every such run was told its env had no time limit."""
    from actors import ActorSpec, InlineActors, Learner
    from actors.learner import NO_EPISODE_STEPS_PER_ENV
    from agents import make_agent, make_config

    info = probe("CartPole-v1")
    agent = make_agent("a3c", info.observation_space, info.action_space, make_config("a3c"))
    few, many = (Learner(agent, InlineActors(ActorSpec("CartPole-v1", "a3c", make_config("a3c"),
                                                       envs_per_actor=envs), actors), 400)
                 for actors, envs in [(1, 1), (3, 4)])
    assert few.no_episode_steps == NO_EPISODE_STEPS_PER_ENV >= 1_000
    assert many.no_episode_steps == 12 * NO_EPISODE_STEPS_PER_ENV
