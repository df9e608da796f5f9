"""Shared test helpers: array backends, finite differences, comparisons."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from cnn_xp.backend import AGREEMENT, gpu_unavailable_reason, to_device, to_numpy


@dataclass(frozen=True)
class ArrayBackend:
    """Where a test puts its arrays: ``asarray`` moves host data there, ``numpy`` brings it back."""

    name: str
    device: Any
    exact: bool  # same kernels as NumPy underneath, so results must be bit-identical

    def asarray(self, a: Any) -> Any:
        return to_device(np.asarray(a), self.device)

    def numpy(self, a: Any) -> np.ndarray:
        return np.asarray(to_numpy(a))

    def assert_matches(self, got: Any, expected: Any, dtype: Any = np.float64) -> None:
        """Compare a result on this backend with NumPy's: bit-identical where the same kernels run
        underneath, else within cnn_xp.backend.AGREEMENT (other BLAS, other reduction orders)."""
        got_np = self.numpy(got)
        expected = np.asarray(to_numpy(expected))
        assert got_np.shape == expected.shape
        assert got_np.dtype == expected.dtype
        if self.exact:
            np.testing.assert_array_equal(got_np, expected)
        else:
            rtol, atol = AGREEMENT["float64" if np.dtype(dtype) == np.float64 else "float32"]
            np.testing.assert_allclose(got_np, expected, rtol=rtol, atol=atol)


def strict_backend() -> ArrayBackend:
    import array_api_strict

    return ArrayBackend("strict", array_api_strict.Device("device1"), exact=True)


def torch_backend() -> ArrayBackend:
    import torch

    return ArrayBackend("torch", torch.device("cpu"), exact=False)


NUMPY = ArrayBackend("numpy", "cpu", exact=True)
TORCH_MISSING = "PyTorch is not installed: the PyTorch oracle tests need pip install 'cnn_xp[torch]'"


def cupy_backend() -> ArrayBackend:
    return ArrayBackend("cupy", "gpu:0", exact=False)


def gpu_skip_reason() -> str | None:
    reason = gpu_unavailable_reason(0)
    return None if reason is None else f"no usable GPU: {reason}"


def mnist_subset(
    train: int = 400, test: int = 200
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The first ``train`` training and ``test`` test images of the bundled MNIST (uint8) with labels."""
    from cnn_xp.datasets import load_mnist

    (x, t), (xt, tt) = load_mnist(normalize=False)
    return (x[:train], t[:train]), (xt[:test], tt[:test])


def small_net(dtype: str = "float32", seed: int = 0) -> Any:
    """A SimpleConvNet of 4 filters and 16 hidden units: the training tests' network."""
    from cnn_xp import SimpleConvNet

    conv = {"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1}
    return SimpleConvNet(conv_param=conv, hidden_size=16, weight_init_std="he", dtype=dtype, seed=seed)


def loaders(data: Any, seed: int = 0, batch: int = 50, dtype: str = "float32", device: Any = "cpu") -> tuple[Any, Any]:
    """Shuffled training and ordered test DataLoaders (test batch 100) over ``data``, scaled to [0, 1]."""
    from cnn_xp.data import DataLoader

    (x, t), (xt, tt) = data
    return (
        DataLoader(x, t, batch, shuffle=True, seed=seed, dtype=dtype, scale=1 / 255, device=device),
        DataLoader(xt, tt, 100, shuffle=False, dtype=dtype, scale=1 / 255, device=device),
    )


def numeric_grad(f: Callable[[], float], x: np.ndarray, h: float = 1e-6, indices: Any = None) -> np.ndarray:
    """Central differences of scalar ``f()`` w.r.t. the host array ``x`` (changed in place and
    restored).  ``indices`` limits the check to some flat positions (others are NaN)."""
    grad = np.full(x.shape, np.nan)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        fp = f()
        flat[i] = old - h
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * h)
    return grad


def rel_error(analytic: np.ndarray, numeric: np.ndarray) -> float:
    """max |a - n| / max(|a|, |n|) over the checked (non-NaN) positions."""
    mask = ~np.isnan(numeric)
    a, n = np.asarray(analytic)[mask], numeric[mask]
    scale = max(np.max(np.abs(a)), np.max(np.abs(n)), 1e-12)
    return float(np.max(np.abs(a - n)) / scale)


# Finite-difference tolerance: central differences in float64 with h = 1e-6 have truncation
# error O(h^2) ~ 1e-12 and round-off ~ 1e-16 / h ~ 1e-10, so a correct gradient has relative
# error around 1e-9; we require < 1e-7 ("well under 1e-6").
GRAD_RTOL = 1e-7


def native_skip_reason() -> str | None:
    """Why the compiled Winograd transforms cannot be tested here (None: they can).

    Where ``CNN_XP_REQUIRE_NATIVE=1`` (CI, which builds them) their absence fails instead of
    skipping: a build that silently fell back must not pass as tested."""
    from cnn_xp.functions import native

    if native.available():
        return None
    if os.environ.get("CNN_XP_REQUIRE_NATIVE") == "1":
        pytest.fail("CNN_XP_REQUIRE_NATIVE=1 but the extension cnn_xp.functions._kernels was not built")
    return "the extension cnn_xp.functions._kernels was not built (no C compiler at install?)"


# 3x3 convolutions for the Winograd tests, (N, C, FN, H, W, pad): odd and even outputs (a
# part-empty last tile row or column), pads 0-2, asymmetric pads, C < FN and C > FN, one image, a
# one-pixel output, a non-square image
CONV3X3_CASES = [
    (2, 3, 4, 6, 6, (1, 1)),
    (3, 2, 5, 7, 5, (1, 1)),
    (1, 4, 2, 5, 8, (0, 2)),
    (2, 5, 3, 3, 3, (0, 0)),
    (2, 2, 2, 9, 4, (2, 0)),
    (4, 6, 6, 10, 7, (2, 1)),
]


def conv3x3_data(case: tuple[Any, ...], dtype: Any = np.float64, seed: int = 0) -> tuple[Any, ...]:
    """x, W (He-scaled), b, dy and pad of a case of :data:`CONV3X3_CASES`, N(0, 1) otherwise."""
    n, c, fn, h, w, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = (rng.standard_normal((fn, c, 3, 3)) * np.sqrt(2 / (9 * c))).astype(dtype)
    b = rng.standard_normal(fn).astype(dtype)
    dy = rng.standard_normal((n, fn, h + 2 * pad[0] - 2, w + 2 * pad[1] - 2)).astype(dtype)
    return x, W, b, dy, pad
