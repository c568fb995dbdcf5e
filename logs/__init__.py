"""TensorBoard event files and console progress."""
from .console import format_duration, progress_line
from .tensorboard import EventWriter, Window

__all__ = ["EventWriter", "Window", "format_duration", "progress_line"]
