"""Fixtures shared by the tests of the Python bindings: the models and data sets in a temporary
folder, and one fitted NFK.

Run by ctest (`python_bindings`) with PYTHONPATH=<build>/python and NFK_CLI=<build>/nfk; by hand:
    PYTHONPATH=build/python NFK_CLI=build/nfk /usr/bin/python3 -m pytest -q python/tests
"""
import numpy as np
import pytest
import torch

import nfk
from support import N, THREADS, Cnn, Disc, Gen

nfk.set_num_threads(THREADS)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """Models (TorchScript, written by PyTorch) and data sets in a temporary folder."""
    d = tmp_path_factory.mktemp("nfk")
    torch.manual_seed(0)
    torch.jit.script(Cnn().eval()).save(str(d / "cnn.pt"))
    torch.jit.script(Disc().eval()).save(str(d / "disc.pt"))
    torch.jit.script(Gen().eval()).save(str(d / "gen.pt"))
    rng = np.random.default_rng(0)
    np.save(d / "x64.npy", rng.random((N, 1, 8, 8)))                     # float64
    np.save(d / "x32.npy", rng.random((N, 1, 8, 8), dtype=np.float32))  # float32
    np.save(d / "xu8.npy", rng.integers(0, 256, (N, 1, 8, 8), dtype=np.uint8))
    np.save(d / "y32.npy", rng.random((N // 2, 1, 8, 8), dtype=np.float32))
    np.save(d / "bad_shape.npy", rng.random((8, 3, 5, 5), dtype=np.float32))
    return d


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((N, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def fitted(d, x):
    return nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, seed=1).fit(x)


@pytest.fixture(scope="module")
def ref(fitted, x):
    """transform of the plain float32 C-order array: what every other form must give."""
    return fitted.transform(x)


def pytest_sessionstart(session):
    """Under python/install_test.sh: the package tested is the one pip installed in the venv."""
    import os

    venv = os.environ.get("NFK_EXPECT_INSTALLED")
    if venv:
        assert os.path.realpath(nfk.__file__).startswith(os.path.realpath(venv)), nfk.__file__
