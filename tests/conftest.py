from __future__ import annotations

import pytest

from cnn_xp.functions.fast_paths import numpy_kernels

from .helpers import NUMPY, TORCH_MISSING, cupy_backend, gpu_skip_reason, strict_backend, torch_backend


@pytest.fixture(params=["numpy", "strict", "torch", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Every test using this fixture runs on NumPy, on array_api_strict's fake device
    ``Device("device1")`` (which refuses silent conversion to NumPy and mixing devices), on
    PyTorch CPU tensors (a second, independent implementation of the array API: results equal
    NumPy's to round-off), and on CuPy with a real GPU (skipped, with the reason, when there is none)."""
    if request.param == "numpy":
        yield NUMPY
        return
    if request.param == "strict":
        pytest.importorskip("array_api_strict", reason="array_api_strict is not installed")
        # array_api_strict wraps NumPy, so its results are NumPy's bit for bit -- NumPy's passes,
        # which the compiled CPU kernels replace for NumPy arrays (bit-exact, but for the
        # rounding of sums over Winograd's compact tiles): the comparison is with those passes;
        # tests/functions/test_native.py compares the kernels with them
        with numpy_kernels():
            yield strict_backend()
        return
    if request.param == "torch":
        pytest.importorskip("torch", reason=TORCH_MISSING)
        yield torch_backend()
        return
    reason = gpu_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    yield cupy_backend()


@pytest.fixture(params=["float32", "float64"])
def float_dtype(request):
    return request.param


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the independent oracle (and a second array library); tests that take this
    fixture are skipped, saying so, on the light install without it."""
    return pytest.importorskip("torch", reason=TORCH_MISSING)
