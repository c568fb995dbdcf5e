"""workbench: parallel RL training, replay and supervised recipes on the `nets` engine.

From Python (workbench/api.py says more):

    import workbench
    run = workbench.train(env="CartPole-v1", agent="a3c", steps=100_000)
    policy = workbench.load(run.path)
    print(workbench.evaluate(policy, episodes=10))
"""
__version__ = "0.1.0"
API = ("train", "load", "evaluate")


def __getattr__(name: str):
    """The API's functions, imported when first used: the CLI, which imports this package, sets
    its thread limits before the engine loads."""
    if name in API:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


__all__ = list(API)
