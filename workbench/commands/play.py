"""`workbench play`: watch a trained agent. Rebuilds the env and the network from a run's saved
config, loads a checkpoint, plays N episodes, prints each return and the mean, and can record
the real game frames (not the network's 84x84 input) to a GIF or an MP4."""
from __future__ import annotations

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
                    "each episode's return and the mean.",
        epilog="examples:\n"
               "  workbench play runs/breakout-a3c --episodes 5 --record breakout.gif\n"
               "  workbench play runs/breakout-a3c/checkpoints/latest --greedy --seed 3\n"
               "  workbench play runs/cartpole/checkpoints/step-000050000.npz --record cartpole.mp4",
        formatter_class=HelpFormatter)
    p.add_argument("target", metavar="RUN_OR_CHECKPOINT",
                   help="a run folder (plays checkpoints/latest.npz), a checkpoint file, or "
                        "RUN/checkpoints/latest")
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
                   help="stop each episode after N steps (default: the env's own time limit)")
    return p


class Recorder:
    """Collects frames and writes a GIF (Pillow) or an MP4 (imageio-ffmpeg)."""

    def __init__(self, path: Path, fps: int):
        suffix = path.suffix.lower()
        if suffix not in RECORD_FORMATS:
            raise PlayError(f"--record needs a .gif or .mp4 file name, not {path.name!r}")
        try:
            if suffix == ".mp4":
                import imageio.v3  # noqa: F401
                import imageio_ffmpeg  # noqa: F401
            else:
                import PIL  # noqa: F401
        except ImportError as error:
            raise PlayError(f"recording a {suffix} needs {error.name}: pip install -e \".[atari]\"") from None
        if fps < 1:
            raise PlayError(f"--fps must be >= 1, got {fps}")
        folder = path.resolve().parent  # checked before the episodes are played; write() makes it
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        try:
            tempfile.TemporaryFile(dir=existing).close()
        except OSError as error:
            raise PlayError(f"--record {path}: cannot write into {existing} ({error.strerror})") from None
        self.path, self.fps, self.frames = path, fps, []

    def __call__(self, frame) -> None:
        if frame is None:
            raise PlayError("the env rendered no frame; it has no rgb_array render mode")
        self.frames.append(frame)

    def write(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.suffix.lower() == ".gif":
            self._write_gif()
        else:  # ffmpeg through imageio-ffmpeg; Atari's 160x210 frames need no resizing
            import imageio.v3 as iio
            import numpy as np

            iio.imwrite(self.path, np.stack(self.frames), plugin="FFMPEG", fps=self.fps,
                        macro_block_size=1)

    def _write_gif(self) -> None:
        """One palette for the whole clip, taken from frames spread over it: a palette per frame
        (what GIF writers do by default) costs about 30 times more, for games that use a few
        dozen colours anyway. Pillow merges identical consecutive frames, adding their durations."""
        import numpy as np
        from PIL import Image

        sample = np.concatenate(self.frames[::max(1, len(self.frames) // 16)], axis=0)
        palette = Image.fromarray(sample).quantize(256, method=Image.Quantize.MEDIANCUT)
        frames = [Image.fromarray(frame).quantize(palette=palette, dither=Image.Dither.NONE)
                  for frame in self.frames]
        frames[0].save(self.path, save_all=True, append_images=frames[1:], loop=0,
                       duration=round(1000 / self.fps), optimize=False)  # the palette is ready


def play(args) -> None:
    import numpy as np

    from workbench.episodes import Player, play_episodes, restore

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
    results = play_episodes(
        run.env, player, args.episodes, args.max_steps, on_frame=recorder,
        on_episode=lambda i, ret, steps: print(f"episode {i + 1}: return {ret:g} ({steps} steps)", flush=True))
    run.env.close()
    print(f"mean return {np.mean([r for r, _ in results]):g} over {len(results)} episode(s)")
    if recorder:
        recorder.write()
        print(f"recorded {len(recorder.frames)} frames to {args.record}")


def run(args) -> int:
    if "torch" not in sys.modules:  # see workbench train: nothing here makes a torch tensor
        sys.modules["torch"] = None
    try:
        play(args)
    except ValueError as error:  # every one-line error (CheckpointError too): flags, run, env
        return failed("play", error)
    return 0
