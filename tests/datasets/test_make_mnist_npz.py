"""scripts/make_mnist_npz.py: its unpickler admits NumPy arrays and refuses everything else."""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_mnist_npz.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("make_mnist_npz", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_arrays_are_admitted(script):
    data = ((np.arange(6, dtype=np.float32).reshape(2, 3) / 256, np.array([1, 2])),)
    out = script.ArraysOnly(io.BytesIO(pickle.dumps(data, protocol=4))).load()
    np.testing.assert_array_equal(out[0][0], data[0][0])


@pytest.mark.parametrize("payload", [os.system, eval, print, Path])
def test_any_other_global_is_refused(script, payload):
    with pytest.raises(pickle.UnpicklingError, match="refusing global"):
        script.ArraysOnly(io.BytesIO(pickle.dumps(payload))).load()


def test_conversion_of_a_small_fake_source(script, tmp_path):
    rng = np.random.default_rng(0)
    split = lambda n: (rng.integers(0, 256, (n, 784)).astype(np.float32) / 256, rng.integers(0, 10, n))  # noqa: E731
    source = tmp_path / "mnist.pkl.gz"
    with gzip.open(source, "wb") as f:
        pickle.dump((split(5), split(3), split(4)), f, protocol=4)
    out = tmp_path / "mnist.npz"
    import sys

    argv, sys.argv = sys.argv, ["make_mnist_npz.py", "--source", str(source), "--out", str(out)]
    try:
        assert script.main() == 1  # these are not the real MNIST arrays: digests mismatch, nothing written
    finally:
        sys.argv = argv
    assert not out.exists()
    images = script.to_uint8(split(2)[0])
    assert images.dtype == np.uint8 and images.shape == (2, 28, 28)
    with pytest.raises(ValueError, match="not exact multiples of 1/256"):
        script.to_uint8(np.full((1, 784), 0.3, dtype=np.float32))
