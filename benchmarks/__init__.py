"""workbench's benchmark suites against their peers: `python -m benchmarks --help`.

Each suite script (engine.py, sharing.py, rl.py, recipes.py) also runs alone and imports its
siblings as top-level modules (`from harness import ...`), so the package puts this folder on
the import path for them.
"""
import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
