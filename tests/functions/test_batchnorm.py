"""Batch normalisation's compiled kernels against its array passes and a float64 reference, and
the statistics of a batch split into parts (the shards of a batch) against the whole batch's."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp.functions.batchnorm import batch_norm_backward, batch_norm_forward
from cnn_xp.functions.fast_paths import numpy_kernels

from ..helpers import native_skip_reason


@pytest.fixture(autouse=True)
def _built():
    reason = native_skip_reason()
    if reason is not None:
        pytest.skip(reason)


def _data(dtype, shape=(6, 5, 7, 9), seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 2).astype(dtype)
    c = shape[1]
    gamma, beta = (rng.random(c) + 0.5).astype(dtype), rng.standard_normal(c).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    mean, var = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    return x, gamma, beta, dy, mean, var


def _both(x, gamma, beta, dy, mean, var, train, reduce=None):
    out = []
    for kernels in (True, False):
        with numpy_kernels() if not kernels else np.errstate():
            y, state, bm, bv, count = batch_norm_forward(
                x, gamma, beta, 1e-5, train=train, running_mean=mean, running_var=var, reduce=reduce
            )
            dx, dgamma, dbeta = batch_norm_backward(dy, gamma, state, reduce)
            assert (state.x is not None) == kernels  # the kernels ran, or the array passes
        out.append((y, dx, dgamma, dbeta, bm, bv, count))
    return out


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("dtype", "rtol"), [("float64", 1e-12), ("float32", 2e-5)])
def test_the_kernels_compute_what_the_array_passes_compute(train, dtype, rtol):
    data = _data(dtype)
    (k, a) = _both(*data, train)
    for got, want, name in zip(k[:4], a[:4], ("y", "dx", "dgamma", "dbeta"), strict=True):
        assert got.dtype == want.dtype == np.dtype(dtype), name
        scale = float(np.max(np.abs(want)))
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=name)
    if train:
        np.testing.assert_allclose(k[4], a[4], rtol=rtol, atol=rtol)
        np.testing.assert_allclose(k[5], a[5], rtol=rtol)


def test_float32_statistics_are_summed_in_float64():
    """Sums in float64: a channel of 2**20 values of 1 + 1e-3 * noise keeps its small variance;
    float32 sums alone would lose it to rounding."""
    rng = np.random.default_rng(1)
    x = (1 + 1e-3 * rng.standard_normal((64, 2, 128, 128))).astype(np.float32)
    g, b = np.ones(2, np.float32), np.zeros(2, np.float32)
    _, _, _, var, _ = batch_norm_forward(x, g, b, 1e-12, train=True, running_mean=g, running_var=g)
    exact = x.astype(np.float64).var(axis=(0, 2, 3))
    np.testing.assert_allclose(var, exact, rtol=1e-6)


@pytest.mark.parametrize("kernels", [True, False], ids=["kernels", "array passes"])
def test_a_batch_in_parts_with_their_sums_added_is_the_whole_batch(kernels):
    """Two threads, each with a part of the batch, adding their sums through a Turnstile (what the
    shards of a batch do): each part gets the whole batch's output and input gradient, and the
    parts' parameter gradients add up to the whole batch's."""
    from cnn_xp.threads import Turnstile, run_in_threads

    x, gamma, beta, dy, mean, var = _data("float64", shape=(8, 3, 5, 5))
    parts = (slice(0, 5), slice(5, 8))
    with numpy_kernels() if not kernels else np.errstate():
        whole_y, state, *_ = batch_norm_forward(x, gamma, beta, 1e-5, train=True, running_mean=mean, running_var=var)
        whole = (whole_y, *batch_norm_backward(dy, gamma, state))
        turnstile = Turnstile(2)

        def part(shard):
            def reduce(value):
                return turnstile.sum(shard, value)

            p = parts[shard]
            y, s, *_ = batch_norm_forward(
                x[p], gamma, beta, 1e-5, train=True, running_mean=mean, running_var=var, reduce=reduce
            )
            return (y, *batch_norm_backward(dy[p], gamma, s, reduce))

        got = run_in_threads(part, 2, turnstile.abort)
    for i, p in enumerate(parts):
        np.testing.assert_allclose(got[i][0], whole[0][p], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[i][1], whole[1][p], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got[0][2] + got[1][2], whole[2], rtol=1e-12)
    np.testing.assert_allclose(got[0][3] + got[1][3], whole[3], rtol=1e-12)
