"""`workbench plot`: learning curves of several runs in one PNG, averaged over the runs of each
group (their seeds) with a 95% bootstrap band, over env steps or wall-clock time."""
from __future__ import annotations

from pathlib import Path

from workbench.commands import HelpFormatter, failed

X_AXES = {"steps": "env steps", "time": "seconds of training"}  # a recipe's steps are its updates


def add_parser(subparsers):
    p = subparsers.add_parser(
        "plot", help="plot the learning curves of runs (mean and 95%% band over seeds) to a PNG",
        description="Read each run folder's TensorBoard events and draw its episodic return (or "
                    "--tag), smoothed over the last --window points, against env steps or time. Runs "
                    "of the same env and agent are one curve: their mean, with the 95% bootstrap "
                    "interval of that mean across the runs as a band.",
        epilog="examples:\n"
               "  workbench plot runs/CartPole-v1-* --out cartpole.png\n"
               "  workbench plot runs/CartPole-v1-a3c-* runs/CartPole-v1-ppo-* --x time --out race.png\n"
               "  workbench plot runs/s0 runs/s1 --label lr=0.01 --label lr=0.01 --out lr.png",
        formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders (written by workbench train, or by workbench recipe with --tag)")
    p.add_argument("--out", type=Path, default=Path("curves.png"), help="the PNG to write (default curves.png)")
    p.add_argument("--x", choices=tuple(X_AXES), default="steps",
                   help="steps: env steps (default); time: seconds since the run's first episode")
    p.add_argument("--tag", default="charts/episodic_return",
                   help="the TensorBoard scalar to plot (default charts/episodic_return)")
    p.add_argument("--window", type=int, default=100,
                   help="points averaged into each point of a curve (default 100: the last-100 mean)")
    p.add_argument("--label", action="append", metavar="LABEL",
                   help="the group of each run, in order (default: ENV AGENT from its config.json); "
                        "runs with the same label are averaged")
    p.add_argument("--title", help="the plot's title (default: the runs' envs)")
    return p


def run(args) -> int:
    from logs.curves import band, draw, read_scalars, scalar_tags
    from workbench.runs import RunDir

    try:
        if args.window < 1:
            raise ValueError(f"--window must be >= 1, got {args.window}")
        if args.label and len(args.label) != len(args.runs):
            raise ValueError(f"--label takes one label per run: {len(args.runs)} runs, "
                             f"{len(args.label)} labels")
        if args.out.suffix.lower() != ".png":
            raise ValueError(f"--out must be a .png file, not {args.out.name!r}")
        paths = [Path(folder).resolve() for folder in args.runs]
        twice = next((args.runs[i] for i, path in enumerate(paths) if path in paths[:i]), None)
        if twice:
            raise ValueError(f"{twice} is given twice: one run would count as two seeds")
        groups: dict[str, list] = {}
        envs, rl_runs = [], 0
        for i, folder in enumerate(args.runs):
            config = RunDir.existing(folder).read_config()
            curve = read_scalars(folder, args.tag)
            if len(curve.values) == 0:
                tags = scalar_tags(folder)
                raise ValueError(f"{folder} has no {args.tag!r} points" + (
                    f"; its scalars: {', '.join(tags)} (choose one with --tag)" if tags else " yet"))
            envs.append(str(config.get("env", config.get("recipe", "?"))))
            rl_runs += "agent" in config
            label = args.label[i] if args.label else f"{envs[-1]} {config.get('agent', '')}".strip()
            groups.setdefault(label, []).append(curve)
    except ValueError as error:  # RunError too: not a run folder
        return failed("plot", error)
    x = "steps" if args.x == "steps" else "seconds"
    bands = {f"{label} ({len(curves)} run{'s' if len(curves) > 1 else ''})":
             band(curves, x, window=args.window) for label, curves in groups.items()}
    title = args.title or ", ".join(dict.fromkeys(envs))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    x_label = "steps" if args.x == "steps" and rl_runs < len(args.runs) else X_AXES[args.x]
    draw(bands, x_label, f"{args.tag}, mean of the last {args.window}", title, args.out)
    print(f"wrote {args.out}: {len(groups)} curve(s) from {len(args.runs)} run(s)")
    return 0
