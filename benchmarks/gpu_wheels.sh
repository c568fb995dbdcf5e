#!/usr/bin/env bash
# The Python packages gpu_check.sh needs that a lent GPU machine's image lacks, fetched here as
# wheels for its Python 3.12 into .whl/ (ignored by git), which gpu_check.sh installs first. Its
# image holds NumPy, Numba, CuPy, PyTorch, pytest, tqdm, imageio, Pillow, threadpoolctl,
# TensorBoard and OpenCV (/work/.library/device/KINDS.md); the machine cannot download. Then name
# `.whl` in the device call's carry. From the repository root:
#
#   benchmarks/gpu_wheels.sh && ls .whl
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .whl \
  gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1 multiprocess==0.70.19 dill==0.4.1 \
  tensorboardX==2.6.5 stable-baselines3==2.9.2
du -sh .whl
