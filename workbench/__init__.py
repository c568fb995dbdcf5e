"""workbench: parallel RL training, replay and supervised recipes on the `nets` engine."""
__version__ = "0.1.0"
