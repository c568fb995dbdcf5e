"""Weight sharing: one publish plus one pull of N float32 parameters, two ways, in one run.

    python benchmarks/sharing.py [--quick]

- workbench: the run's shared block as `workbench train` makes it (a `multiprocess` RawArray
  wrapped in actors.shared.SharedState). Publish: take a free weight slot and publish it (the
  optimizer has written its step there, out of place: the last row times that step, with the
  publish, against the same step in place); pull: an actor holds the newest slot and rebinds
  its network's parameters (four layer-like arrays) to it. No weight is copied.
- peer: a `multiprocess` Manager's dict holding the weights as a dict of per-layer arrays (the
  book's way): publish stores it under one key, a pull reads it back, each one pickled round trip
  through the manager process.
Both pull in the publishing process: the pull costs the same in an actor.
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
STEP_CASE = "rmsprop step 678k params into a free slot"
STEP_PEER = "in place"


def _layers(n_params: int) -> dict[str, np.ndarray]:
    """The vector cut into four layer-like arrays, as a state dict would hold it."""
    flat = np.random.default_rng(0).standard_normal(n_params).astype(np.float32)
    return {f"layer{i}": part for i, part in enumerate(np.array_split(flat, 4))}


def _model(n_params: int):
    """A module whose parameters are `_layers(n_params)`, flattened."""
    import nets

    model = nets.Module()
    for name, array in _layers(n_params).items():
        setattr(model, name, nets.Parameter(array))
    model.flat()
    return model


def shared_block(n_params: int, n_actors: int = 2):
    """A SharedState on an anonymous RawArray, as LocalProcesses makes it."""
    import ctypes

    import multiprocess as mp

    from actors.shared import Layout, SharedState

    layout = Layout(n_params, n_actors)
    shared = SharedState(mp.get_context("forkserver").RawArray(ctypes.c_uint8, layout.nbytes), layout)
    shared.initialize()
    return shared


def publish_and_pull(n_params: int):
    """(publish, pull): the learner publishing the slot its step went into, an actor taking it."""
    shared, actor = shared_block(n_params), _model(n_params)
    shared.publish(actor.flat().data, 0)  # the first publish copies the initial weights in

    def publish():
        shared.publish(shared.next_weights(), 0)

    def pull():
        _, weights, _ = shared.acquire(0)
        actor.flat().rebind(data=weights)
    return publish, pull


def shared_memory_side(n_params: int):
    def setup():
        publish, pull = publish_and_pull(n_params)

        def step():
            publish()
            pull()
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


def optimizer_step(n_params: int, into_slot: bool):
    """A3C's RMSProp step on `n_params`, into a free slot of the shared block or in place."""
    def setup():
        from nets import optim

        model, shared = _model(n_params), shared_block(n_params)
        model.flat().grad[...] = 1e-3
        optimizer = optim.RMSProp(model, lr=1e-4, alpha=0.99, eps=0.1, eps_inside_sqrt=True)

        def step():
            if into_slot:
                optimizer.step(into=shared.next_weights())
                shared.publish(model.flat().data, 0)
            else:
                optimizer.step()
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
        measures = run_cases(cases, quick, smoke, full, peer_name=PEER, peer_available=True)
    if smoke:
        return measures + [Measure(STEP_CASE, "ms/step", None, None, STEP_PEER, note="not run with --smoke")]
    step = Case(STEP_CASE, optimizer_step(SIZES["678k"], True), optimizer_step(SIZES["678k"], False),
                repeats=200 if full else 50)
    return measures + run_cases([step], quick, full=full, peer_name=STEP_PEER, peer_available=True)


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a fifth of the repeats (a smoke run)")
    args = parser.parse_args(argv)
    print(report.suite_table(run(args.quick)))
    print("ratio = workbench median / peer median")
    return 0


if __name__ == "__main__":
    sys.exit(main())
