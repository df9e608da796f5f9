"""A seeded fuzz of the compiled kernels' Python side (cnn_xp.functions.native).

Two halves, each drawing ``CNN_XP_FUZZ_CASES`` cases (default 150) per kernel family from one
seed (``CNN_XP_FUZZ_SEED``, default 0), so that a failure names a case that can be replayed:

* consistent arguments of random sizes (one-pixel images, odd sizes, pads as large as the
  window, one channel, empty batches): the compiled result equals the NumPy passes';
* one argument made inconsistent (wrong dtype or size, strided, read-only, overlapping another,
  a tiling that does not describe its arrays): the wrapper raises KernelArgumentError before
  the kernel runs.

In CI the same file runs against kernels built with AddressSanitizer and
UndefinedBehaviorSanitizer (``.ci/run``), where a read or write outside an array aborts.
"""

# Every closure below is called at once, inside the loop iteration that made it:
# ruff: noqa: B023

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import pytest

from cnn_xp.functions import native, winograd
from cnn_xp.functions.activations import relu, relu_grad
from cnn_xp.functions.adam import adam_update
from cnn_xp.functions.batchnorm import batch_norm_backward, batch_norm_forward
from cnn_xp.functions.conv2d import conv2d_backward, conv2d_forward
from cnn_xp.functions.fast_paths import numpy_kernels, small_winograd_tiles
from cnn_xp.functions.pooling import max_pool, max_pool_grad

from ..helpers import native_skip_reason

CASES = int(os.environ.get("CNN_XP_FUZZ_CASES", "150"))
SEED = int(os.environ.get("CNN_XP_FUZZ_SEED", "0"))
DTYPES = (np.float32, np.float64)


@pytest.fixture(autouse=True)
def _built():
    reason = native_skip_reason()
    if reason is not None:
        pytest.skip(reason)


def _cases(family: str):
    """(case number, its generator): the case replays from the seed, the family and its number."""
    for case in range(CASES):
        yield case, np.random.default_rng([SEED, sum(map(ord, family)), case])


def _close(got, want, dtype, what: str) -> None:
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol, err_msg=what)


def _compare(fn: Callable, *args, dtype, what: str) -> None:
    """fn's results with the kernels and with the NumPy passes (each on its own copies)."""
    compiled = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    with numpy_kernels():
        reference = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    for got, want in zip(compiled, reference, strict=True):
        _close(got, want, dtype, what)


# --------------------------------------------------------------------------- consistent arguments


def test_convolutions_of_random_sizes_equal_the_numpy_passes():
    for case, rng in _cases("conv"):
        dtype = DTYPES[case % 2]
        n, c, fn = int(rng.integers(0, 4)), int(rng.integers(1, 6)), int(rng.integers(1, 6))
        h, w = (int(v) for v in rng.integers(1, 14, 2))
        pad = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        if h + 2 * pad[0] < 3 or w + 2 * pad[1] < 3:
            continue
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        W = rng.standard_normal((fn, c, 3, 3)).astype(dtype)
        b = rng.standard_normal(fn).astype(dtype) if case % 3 else None

        def both(x, W, b):
            y, state = conv2d_forward(x, W, b, (1, 1), pad)
            dx, dW, db = conv2d_backward(np.ones_like(y) * np.float32(0.5).astype(dtype), W, state)
            return [y, dx, dW] + ([db] if b is not None else [])

        what = f"case {case}: x {x.shape}, pad {pad}, {np.dtype(dtype)}"
        _compare(both, x, W, b, dtype=dtype, what=what)
        with small_winograd_tiles():
            _compare(both, x, W, b, dtype=dtype, what=what + ", F(2x2)")


def test_strided_convolutions_of_random_sizes_equal_the_numpy_passes():
    for case, rng in _cases("strided"):
        dtype = DTYPES[case % 2]
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        stride = (int(rng.integers(2, 4)), int(rng.integers(1, 4)))
        pad = (int(rng.integers(0, kh + 1)), int(rng.integers(0, kw + 1)))  # up to whole rows of padding
        h, w = int(rng.integers(max(1, kh - 2 * pad[0]), 12)), int(rng.integers(max(1, kw - 2 * pad[1]), 12))
        n, c, fn = int(rng.integers(0, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5))
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        W = rng.standard_normal((fn, c, kh, kw)).astype(dtype)

        def both(x, W):
            y, state = conv2d_forward(x, W, None, stride, pad)
            assert state.path == ("pointwise" if (kh, kw, *pad) == (1, 1, 0, 0) else "strided"), state.path
            dx, dW, _ = conv2d_backward(np.sin(np.arange(y.size, dtype=dtype)).reshape(y.shape), W, state)
            return [y, dx, dW]

        what = f"case {case}: x {x.shape}, W {W.shape}, stride {stride}, pad {pad}, {np.dtype(dtype)}"
        _compare(both, x, W, dtype=dtype, what=what)


def test_pooling_of_random_windows_equals_the_numpy_passes():
    for case, rng in _cases("pool"):
        dtype = DTYPES[case % 2]
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        sh, sw = (int(v) for v in rng.integers(1, 4, 2))
        ph, pw = int(rng.integers(0, kh)), int(rng.integers(0, kw))  # a pad below the window
        h, w = int(rng.integers(max(1, kh - 2 * ph), 12)), int(rng.integers(max(1, kw - 2 * pw), 12))
        x = rng.standard_normal((int(rng.integers(0, 3)), int(rng.integers(1, 4)), h, w)).astype(dtype)
        if case % 5 == 0 and x.size:
            x.flat[rng.integers(0, x.size, 3)] = [np.nan, np.inf, -np.inf]

        def both(x):
            y, state = max_pool(x, kh, kw, (sh, sw), (ph, pw))
            dy = np.arange(y.size, dtype=dtype).reshape(y.shape)
            return [y, max_pool_grad(dy, state)]

        _compare(both, x, dtype=dtype, what=f"case {case}: x {x.shape}, window {(kh, kw, sh, sw, ph, pw)}")


def test_elementwise_kernels_of_random_sizes_equal_the_numpy_passes():
    for case, rng in _cases("elementwise"):
        dtype = DTYPES[case % 2]
        shape = tuple(int(v) for v in rng.integers(0, 7, int(rng.integers(0, 5))))
        x = rng.standard_normal(shape).astype(dtype)
        what = f"case {case}: shape {shape}, {np.dtype(dtype)}"

        def rel(x):
            y, mask = relu(x)
            return [y, relu_grad(x * 3, mask)]

        _compare(rel, x, dtype=dtype, what=what)

        def step(p, g, m, v):
            adam_update(p, g, m, v, 0.1, 0.001, 0.01, 1e-8)
            return [p, m, v]

        _compare(step, x, x * 2, x * 0.5, x * x, dtype=dtype, what=what)


def test_batch_normalisation_of_random_sizes_equals_the_numpy_passes():
    for case, rng in _cases("batchnorm"):
        dtype = DTYPES[case % 2]
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 7)), int(rng.integers(1, 7)))
        c = shape[1]
        x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
        gamma, beta = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        train = bool(case % 3)

        def both(x, gamma, beta):
            mean, var = np.zeros(c, dtype), np.ones(c, dtype)
            y, state, *_ = batch_norm_forward(x, gamma, beta, 1e-5, train=train, running_mean=mean, running_var=var)
            return [y, *batch_norm_backward(np.cos(x), gamma, state)]

        _compare(both, x, gamma, beta, dtype=dtype, what=f"case {case}: x {shape}, train {train}")


# --------------------------------------------------------------------------- inconsistent arguments


def _refused(call: Callable, what: str) -> None:
    with pytest.raises(native.KernelArgumentError):
        call()
        pytest.fail(f"{what}: the kernel ran")


def _broken(rng: np.random.Generator, a: np.ndarray, may_alias: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """``a`` made wrong one way: dtype, size, layout, writeability or (given) aliasing."""
    kinds = ["dtype", "size", "strided", "readonly"] + (["alias"] if may_alias is not None else [])
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "strided" and a.size < 2:
        kind = "size"  # (one element is contiguous whatever its stride)
    if kind == "dtype":
        return a.astype(np.float16 if a.dtype == np.float32 else np.int64), kind
    if kind == "size":
        return np.resize(a, max(0, a.size + int(rng.choice([-3, -1, 1, 7])))).astype(a.dtype), kind
    if kind == "strided":
        return np.repeat(a.reshape(-1), 2)[::2], kind
    if kind == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a, kind
    return may_alias.reshape(-1)[: a.size].reshape(a.shape), kind


def test_adam_refuses_every_inconsistent_argument():
    for case, rng in _cases("adam-bad"):
        dtype = DTYPES[case % 2]
        size = int(rng.integers(2, 50))
        args = [rng.standard_normal(size).astype(dtype) for _ in range(4)]
        which = int(rng.integers(4))
        bad, kind = _broken(rng, args[which], may_alias=args[(which + 1) % 4])
        if kind == "readonly" and which == 1:  # g is only read
            continue
        args[which] = bad
        _refused(lambda: native.adam(*args, 0.1, 0.001, 0.01, 1e-8), f"case {case}: argument {which} {kind}")


def test_elementwise_and_batchnorm_kernels_refuse_inconsistent_arguments():
    for case, rng in _cases("bn-bad"):
        dtype = DTYPES[case % 2]
        shape = (int(rng.integers(1, 4)), int(rng.integers(1, 5)), int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        c = shape[1]
        x = rng.standard_normal(shape).astype(dtype)
        vectors = [rng.standard_normal(c).astype(dtype) for _ in range(3)]
        which = int(rng.integers(3))
        bad, kind = _broken(rng, vectors[which])
        if kind == "readonly":
            continue  # the vectors are only read
        vectors[which] = bad
        what = f"case {case}: x {shape}, vector {which} {kind}"
        if which < 2:
            _refused(lambda: native.bn_affine(x, vectors[0], vectors[1]), what)
        _refused(lambda: native.bn_grad_apply(x, x, *vectors), what)
        mean = np.resize(np.zeros(c), c + 1 if case % 2 else max(0, c - 1))
        _refused(lambda: native.bn_sqdev(x, mean), f"case {case}: mean of {mean.size} for {c} channels")
        _refused(lambda: native.bn_grad_sums(x, x, mean), f"case {case}: mean of {mean.size} for {c} channels")
        mask = np.resize(np.zeros(x.size, bool), x.size + 1)
        _refused(lambda: native.relu_grad(x, mask), f"case {case}: a mask of {mask.size} for {x.size}")
        _refused(lambda: native.bn_sum(x.reshape(shape[0], -1)), f"case {case}: x of 2 dimensions")


def test_pooling_kernels_refuse_windows_and_winners_that_do_not_match():
    for case, rng in _cases("pool-bad"):
        dtype = DTYPES[case % 2]
        x = rng.standard_normal((2, 2, int(rng.integers(2, 9)), int(rng.integers(2, 9)))).astype(dtype)
        kh, kw, s, p = 2, 2, (2, 2), (0, 0)
        oh, ow = (x.shape[2] - 2) // 2 + 1, (x.shape[3] - 2) // 2 + 1
        wrong = (oh + int(rng.integers(1, 4)), ow) if case % 2 else (oh, ow + int(rng.integers(1, 4)))
        _refused(lambda: native.max_pool(x, kh, kw, s, p, wrong), f"case {case}: output {wrong} for {(oh, ow)}")
        _refused(lambda: native.max_pool(x, 0, kw, s, (kh, 0), (oh, ow)), f"case {case}: an empty window")
        y, winners = native.max_pool(x, kh, kw, s, p, (oh, ow))
        small = winners.reshape(-1)[:-1].reshape(-1, 1, 1, 1) if winners.size > 1 else winners[:0]
        bigger = (x.shape[0], x.shape[1], x.shape[2] + 2 * int(rng.integers(1, 3)), x.shape[3])
        _refused(lambda: native.max_pool_grad(y, small, x.shape, kh, kw, s, p), f"case {case}: short winners")
        _refused(
            lambda: native.max_pool_grad(y, winners, bigger, kh, kw, s, p), f"case {case}: x {bigger} for y {y.shape}"
        )
        _refused(
            lambda: native.max_pool_grad(y, winners.astype(np.int16), x.shape, kh, kw, s, p),
            f"case {case}: winners int16",
        )


def test_strided_column_kernels_refuse_inconsistent_arguments():
    for case, rng in _cases("strided-bad"):
        dtype = DTYPES[case % 2]
        n, c, h, w = (int(v) for v in rng.integers(1, 6, 4))
        k, s, p = int(rng.integers(1, 4)), (2, int(rng.integers(1, 3))), (int(rng.integers(0, 2)), 0)
        if h + 2 * p[0] < k or w < k:
            continue
        oh, ow = (h + 2 * p[0] - k) // s[0] + 1, (w - k) // s[1] + 1
        out = np.zeros((c, k, k, n, oh, ow), dtype)
        memory = rng.standard_normal(n * c * h * w + out.size).astype(dtype)
        x = memory[: n * c * h * w].reshape(n, c, h, w)
        bad, kind = _broken(rng, out, may_alias=memory[x.size // 2 :])  # (an alias overlaps x)
        what = f"case {case}: x {x.shape}, out {kind}"
        if kind == "strided":  # the right shape, every other element
            if out.size < 2:
                continue
            bad = np.zeros((*out.shape[:-1], 2 * ow), dtype)[..., ::2]
        _refused(lambda: native.im2col(x, k, k, s, p, bad), what)
        taller = (n, c, h + s[0] * int(rng.integers(1, 3)), w)  # more output rows than the columns hold
        _refused(lambda: native.col2im(out, taller, k, k, s, p), f"case {case}: x {taller} for columns {out.shape}")


def test_winograd_kernels_refuse_tilings_that_do_not_describe_their_arrays():
    for case, rng in _cases("winograd-bad"):
        dtype = DTYPES[case % 2]
        m = 4 if case % 3 else 2
        n, c, h, w = 2, int(rng.integers(1, 4)), int(rng.integers(3, 12)), int(rng.integers(3, 12))
        t = winograd.tiling((n, c, h, w), (1, 1), compact=True, m=m)
        x = rng.standard_normal((n, c, h, w)).astype(dtype)

        def grown(field: str) -> winograd.Tiling:  # (a tiling consistent with other sizes is safe: not asked)
            return dataclasses.replace(t, **{field: getattr(t, field) + int(rng.integers(1, 4))})

        field = ["n", "c", "h", "w"][int(rng.integers(4))]  # x's size changes with each
        what = f"case {case}: F({m}x{m}), {field} grown for x {x.shape}"
        _refused(lambda: native.transform_input(x, grown(field), np.empty(t.k * c * t.tiles, dtype)), what)
        fn = int(rng.integers(1, 4))
        M = rng.standard_normal((t.k, fn, t.tiles)).astype(dtype)
        b = rng.standard_normal(fn + int(rng.integers(1, 3))).astype(dtype)  # a bias longer than the filters
        _refused(lambda: native.transform_output(M, b, t), f"case {case}: a bias of {b.size} for {fn} filters")
        _refused(lambda: native.transform_output(M, b[:fn], grown("n")), f"case {case}: more images than M holds")
        dy = rng.standard_normal((n, fn, t.oh, t.ow)).astype(dtype)
        _refused(lambda: native.output_gradient(dy, grown("n")), f"case {case}: more images than dy holds")
        dv = rng.standard_normal((t.k, c, t.tiles)).astype(dtype)
        _refused(lambda: native.input_gradient(dv, grown("nc"[case % 2])), f"case {case}: dV too small")
        negative = dataclasses.replace(t, ph=-1)
        _refused(lambda: native.input_gradient(np.zeros((t.k, c, t.tiles), dtype), negative), f"case {case}: pad -1")
