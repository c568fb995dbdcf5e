"""Weight sharing: one publish plus one pull of N float32 parameters, two ways, in one run.

    python benchmarks/sharing.py [--quick]

- workbench: the run's shared block as `workbench train` makes it (a `multiprocess` RawArray
  wrapped in actors.shared.SharedState): publish copies the vector in, a pull that finds a new
  version copies it out;
- peer: a `multiprocess` Manager's dict holding the weights as a dict of per-layer arrays (the
  book's way): publish stores it under one key, a pull reads it back, each one pickled round trip
  through the manager process.
Both pull in the publishing process: the copy costs the same in an actor.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the actors package

import report  # noqa: E402
from harness import Case, Measure, run_cases  # noqa: E402

SIZES = {"100k": 100_000, "678k": 678_000, "1.7M": 1_700_000}
PEER = "manager.dict"


def _layers(n_params: int) -> dict[str, np.ndarray]:
    """The vector cut into four layer-like arrays, as a state dict would hold it."""
    flat = np.random.default_rng(0).standard_normal(n_params).astype(np.float32)
    return {f"layer{i}": part for i, part in enumerate(np.array_split(flat, 4))}


def shared_memory_side(n_params: int):
    def setup():
        import ctypes

        import multiprocess as mp

        from actors.shared import SharedState

        block = mp.get_context("forkserver").RawArray(ctypes.c_uint8, SharedState.size(n_params, 2))
        shared = SharedState(block, n_params, 2)
        weights = np.concatenate(list(_layers(n_params).values()))
        local = np.empty_like(weights)
        known = [0]

        def step():
            shared.publish(weights, 0)
            known[0] = shared.pull(local, known[0])
        return step
    return setup


def manager_dict_side(manager, n_params: int):
    def setup():
        shared = manager.dict()
        weights = _layers(n_params)

        def step():
            shared["weights"] = weights
            return shared["weights"]
        return step
    return setup


@contextlib.contextmanager
def _cases(repeats: int):
    """The cases (the peer sits in the Case's torch slot), with the peer's manager running."""
    import multiprocess as mp

    with mp.Manager() as dict_manager:
        yield [Case(f"publish + pull {label} params", shared_memory_side(n),
                    manager_dict_side(dict_manager, n), repeats=repeats) for label, n in SIZES.items()]


def run(quick: bool = False, full: bool = False, smoke: bool = False) -> list[Measure]:
    """For `python -m benchmarks sharing`; a quick run takes a fifth of the repeats."""
    with _cases(200 if full else 50) as cases:
        return run_cases(cases, quick, smoke, full, peer_name=PEER, peer_available=True)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    args = parser.parse_args(argv)
    print(report.suite_table(run(args.quick)))
    print("ratio = shared memory median / manager.dict median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
