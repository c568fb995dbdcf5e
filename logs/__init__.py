"""TensorBoard event files and console progress."""
