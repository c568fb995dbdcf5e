import os

import numpy as np
import pytest

import nets


def pytest_collection_modifyitems(config, items):
    if nets.gpu_available():
        return
    skip = pytest.mark.skip(reason="needs CuPy and an NVIDIA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session", autouse=True)
def offline_data(tmp_path_factory):
    """No test touches the internet or the user's data folder: datasets resolve to an empty
    folder and downloads are refused (subprocesses inherit both); tests/test_downloads.py serves
    its files from a loopback server."""
    os.environ["WORKBENCH_DATA"] = str(tmp_path_factory.mktemp("data"))
    os.environ["WORKBENCH_OFFLINE"] = "1"
