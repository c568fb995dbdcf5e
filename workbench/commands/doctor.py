"""`workbench doctor`: what is installed and whether the engine's kernels and devices work."""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import time
from pathlib import Path

import workbench
from workbench.commands import HelpFormatter

PACKAGES = ["numpy", "numba", "multiprocess", "tensorboardX", "tensorboard", "gymnasium", "ale-py", "ray",
            "tqdm", "imageio"]


def add_parser(subparsers):
    return subparsers.add_parser(
        "doctor", help="print versions and check Numba compilation and the GPU",
        description="Print Python and library versions, check that Numba compiles a kernel, "
                    "whether CuPy sees an NVIDIA GPU, which Ray cluster --address auto joins, and "
                    "where datasets are kept.",
        formatter_class=HelpFormatter)


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _numba_status() -> str:
    try:
        import numba
        import numpy as np

        start = time.perf_counter()
        add_one = numba.njit(lambda a: a + 1)
        ok = add_one(np.arange(3)).tolist() == [1, 2, 3]
        return f"compiles ({time.perf_counter() - start:.2f} s)" if ok else "compiled a wrong result"
    except Exception as error:  # noqa: BLE001 - report any failure, do not crash the doctor
        return f"FAILED: {error}"


def _cupy_wheel() -> str:
    """The installed CuPy distribution (its name says the CUDA major version it was built for)."""
    wheels = sorted(f"{d.metadata['Name']} {d.version}" for d in importlib.metadata.distributions()
                    if (d.metadata["Name"] or "").lower().startswith("cupy"))
    return ", ".join(wheels) or 'not installed (pip install -e ".[gpu]")'


def _cuda_version(number: int) -> str:
    return f"{number // 1000}.{number % 1000 // 10}"


def _gpu_status() -> str:
    from nets import backend

    if not backend.gpu_available():
        return "no GPU (CuPy not installed or no CUDA device)"
    cupy = backend.cupy_module()
    runtime = cupy.cuda.runtime
    props = runtime.getDeviceProperties(0)
    return (f"{props['name'].decode()}, {props['totalGlobalMem'] / 2**30:.0f} GiB; CUDA driver "
            f"{_cuda_version(runtime.driverGetVersion())}, runtime {_cuda_version(runtime.runtimeGetVersion())}")


def _ray_status() -> str:
    """Which cluster `--address auto` would join: Ray's own lookup order (RAY_ADDRESS, then the
    address file `ray start` writes), read without importing ray (seconds)."""
    if _version("ray") == "not installed":
        return 'not installed (--backend ray needs: pip install -e ".[cluster]")'
    address = os.environ.get("RAY_ADDRESS")
    if not address:
        current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
        address = current.read_text().strip() if current.exists() else ""
    if not address:
        return "--address auto finds no cluster (start one: ray start --head)"
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except (OSError, ValueError):
        return f"--address auto would join {address}, which does not answer (stale address?)"
    return f"--address auto joins {address}"


def _data_status() -> str:
    """The data folder and which of the recipes' standard datasets it holds already."""
    from workbench import downloads

    root = downloads.data_root()
    if root.exists() and not root.is_dir():
        return f"{root} is not a folder: set WORKBENCH_DATA to a folder (datasets go in its subfolders)"
    held = [name for name, remotes in downloads.DATASETS.items()
            if all(downloads.present(root / name, r) for r in remotes)]
    missing = [name for name in downloads.DATASETS if name not in held]
    notes = [f"holds {', '.join(held) or 'no dataset yet'}"]
    if missing:
        notes.append(f"{', '.join(missing)}: " + ("not downloaded, WORKBENCH_OFFLINE is set"
                                                   if downloads.offline() else "downloaded on first use"))
    return f"{root} ({'; '.join(notes)})"


def run(args) -> int:
    print(f"workbench     {workbench.__version__}")
    print(f"python        {platform.python_version()} on {platform.platform()}")
    for name in PACKAGES:
        print(f"{name:<14}{_version(name)}")
    print(f"{'cupy':<14}{_cupy_wheel()}")
    print(f"numba kernel  {_numba_status()}")
    print(f"gpu           {_gpu_status()}")
    print(f"ray cluster   {_ray_status()}")
    print(f"data folder   {_data_status()}")
    print("curves        tensorboard --logdir runs  (then open http://localhost:6006)")
    return 0
