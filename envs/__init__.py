"""Environment construction and wrappers on Gymnasium."""
