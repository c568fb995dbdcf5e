"""`workbench play`: watch a trained agent. Rebuilds the env and the network from a run's saved
config, loads a checkpoint, plays N episodes, prints each return and the mean, and can record
the real game frames (not the network's 84x84 input) to a GIF or an MP4."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from pathlib import Path

from workbench.commands import HelpFormatter, failed
from workbench.runs import describe

RECORD_FORMATS = (".gif", ".mp4")


class PlayError(ValueError):
    """A flag `play` cannot use, in one line."""


def add_parser(subparsers):
    p = subparsers.add_parser(
        "play", help="play episodes with a trained agent, optionally recording a GIF or MP4",
        description="Rebuild a run's environment and network from its config, load a checkpoint "
                    "and play whole episodes (whole games with the real score on Atari). Prints "
                    "each episode's return and the mean. Ctrl-C or SIGTERM stops before the next "
                    "step; a recording keeps what was played.",
        epilog="examples:\n"
               "  workbench play runs/breakout-a3c --episodes 5 --record breakout.gif\n"
               "  workbench play runs/breakout-a3c/checkpoints/latest --greedy --seed 3\n"
               "  workbench play runs/cartpole/checkpoints/step-000050000.npz --record cartpole.mp4",
        formatter_class=HelpFormatter)
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder or its config.json (plays checkpoints/latest.npz), a "
                        "checkpoint file, or RUN/checkpoints/latest")
    p.add_argument("--episodes", type=int, metavar="N",
                   help="episodes to play (default 3, or 1 with --record: rendering costs more "
                        "than playing)")
    p.add_argument("--greedy", action="store_true",
                   help="always take the best action (default: sample from the policy; Q agents: "
                        "epsilon-greedy with epsilon 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed for the env and the sampling (default 0)")
    p.add_argument("--record", type=Path, metavar="FILE",
                   help="write the episodes' game frames to FILE (.gif or .mp4)")
    p.add_argument("--fps", type=int, default=25, help="frames per second of the recording (default 25)")
    p.add_argument("--max-steps", type=int, metavar="N",
                   help="stop each episode after N steps (default: the env's own time limit, at "
                        "most 50,000)")
    return p


class Recorder:
    """Streams the frames, as they are played, to a GIF (GifWriter) or an MP4 (imageio-ffmpeg) in a
    temporary file beside FILE that becomes FILE when closed: memory holds a frame or two however
    long the recording, and a play that fails leaves no half-written FILE."""

    def __init__(self, path: Path, fps: int):
        suffix = path.suffix.lower()
        if suffix not in RECORD_FORMATS:
            raise PlayError(f"--record needs a .gif or .mp4 file name, not {path.name!r}")
        try:
            if suffix == ".mp4":
                import imageio.v2  # noqa: F401
                import imageio_ffmpeg  # noqa: F401
            else:
                import PIL  # noqa: F401
        except ImportError as error:
            raise PlayError(f"recording a {suffix} needs {error.name}: pip install -e \".[atari]\"") from None
        if fps < 1:
            raise PlayError(f"--fps must be >= 1, got {fps}")
        folder = path.resolve().parent  # checked before the episodes are played; the first frame makes it
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        try:
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as error:
            raise PlayError(f"--record {path}: cannot write into {existing} ({error.strerror})") from None
        self.path, self.fps, self.frame_count = path, fps, 0
        # the same suffix: ffmpeg picks the container by it
        self.temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
        self.writer = None

    def __call__(self, frame) -> None:
        if frame is None:
            raise PlayError("the env rendered no frame; it has no rgb_array render mode")
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.suffix.lower() == ".gif":
                from workbench.gif import GifWriter

                self.writer = GifWriter(self.temporary, *frame.shape[:2], self.fps)
            else:  # ffmpeg through imageio-ffmpeg; Atari's 160x210 frames need no resizing
                import imageio.v2 as imageio

                self.writer = imageio.get_writer(self.temporary, format="FFMPEG", fps=self.fps,
                                                 macro_block_size=1)
        self.writer.append_data(frame)
        self.frame_count += 1

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, error_type, error, traceback) -> None:
        """Finishes FILE, or, where the play failed, removes what was written of it."""
        if self.writer is None:
            return
        try:
            if error_type is None:
                self.writer.close()
                os.replace(self.temporary, self.path)
            else:
                with contextlib.suppress(Exception):  # the play's error is the one to report
                    self.writer.close()
        finally:
            self.temporary.unlink(missing_ok=True)


def play(args) -> None:
    import numpy as np

    from workbench.episodes import Player, play_episodes, restore
    from workbench.runs import stop_signals

    if args.episodes is None:
        args.episodes = 1 if args.record else 3
    if args.episodes < 1:
        raise PlayError(f"--episodes must be >= 1, got {args.episodes}")
    if args.max_steps is not None and args.max_steps < 1:
        raise PlayError(f"--max-steps must be >= 1, got {args.max_steps}")
    recorder = Recorder(args.record, args.fps) if args.record else None
    run = restore(args.target, render=recorder is not None, seed=args.seed)
    print(f"playing {run.checkpoint} (step {run.step:,}): {describe(run.config)}, "
          f"{'greedy' if args.greedy else 'sampled'} actions, seed {args.seed}", flush=True)
    player = Player(run.agent, args.greedy, np.random.default_rng(args.seed))

    def report(index: int, total: float, steps: int) -> None:
        print(f"episode {index + 1}: return {total:g} ({steps} steps)", flush=True)

    # Ctrl-C or SIGTERM ends the play before the next step, as they end `workbench train`, and the
    # recording keeps what was played; it is finished inside the block, where a Ctrl-C is only noted
    with stop_signals() as received, recorder or contextlib.nullcontext():
        results = play_episodes(run.env, player, args.episodes, args.max_steps, on_frame=recorder,
                                on_episode=report, should_stop=lambda: bool(received))
    run.env.close()
    if results:
        print(f"mean return {np.mean([r for r, _ in results]):g} over {len(results)} episode(s)")
    ending = []
    if len(results) < args.episodes:
        ending.append(f"stopped by {received[0]} in episode {len(results) + 1} of {args.episodes}")
    if recorder:
        ending.append(f"recorded {recorder.frame_count} frames to {args.record}")
    if ending:
        print("; ".join(ending))


def run(args) -> int:
    if "torch" not in sys.modules:  # see workbench train: nothing here makes a torch tensor
        sys.modules["torch"] = None
    from envs import EnvError

    try:
        play(args)
    except ValueError as error:  # every one-line error (CheckpointError too): flags, run, env
        return failed("play", error)
    except EnvError as error:  # the env raised, or returned what it may not, while playing
        return failed("play", error, 1)
    return 0
