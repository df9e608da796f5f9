"""The compiled CPU kernels (cnn_xp.functions.native): the Winograd transforms bit for bit the
NumPy passes they replace, on every tile that holds output pixels, and a convolution's results
unchanged by them; max pooling's outputs and gradients those of the NumPy passes (ties, NaN,
-inf, padding, overlapping windows); used only where they should be; switched off by the
environment and by numpy_kernels()."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cnn_xp.functions import native, winograd
from cnn_xp.functions.conv2d import conv2d_backward, conv2d_forward
from cnn_xp.functions.fast_paths import native_enabled, numpy_kernels, small_winograd_tiles

from ..helpers import native_skip_reason


@pytest.fixture(autouse=True)
def _built():
    reason = native_skip_reason()
    if reason is not None:
        pytest.skip(reason)


# (n, C, H, W, pad): odd and even heights and widths (a half-empty last tile row or column), pads
# 0-3 (3: whole rows of padding), one image, one channel, a one-pixel output, DeepConvNet's shapes
SHAPES = [
    (2, 3, 6, 6, (1, 1)),
    (3, 2, 7, 5, (1, 1)),
    (1, 4, 5, 8, (0, 2)),
    (2, 5, 3, 3, (0, 0)),
    (2, 2, 9, 4, (2, 0)),
    (2, 2, 4, 4, (3, 3)),
    (1, 1, 4, 9, (2, 1)),
    (4, 16, 28, 28, (1, 1)),
    (3, 32, 7, 7, (1, 1)),
]
FN = 3  # output channels for the output transforms


def _real(t: winograd.Tiling) -> np.ndarray:
    """Which of the T tiles hold output pixels (the last of each tile row is junk)."""
    return np.arange(t.tiles) % t.t1 != t.t1 - 1


def _both(fn, *args):
    """(compiled, NumPy passes) results of ``fn(*args)``; arguments are copied for each."""
    compiled = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    with numpy_kernels():
        reference = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    return compiled, reference


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """The same values, NaN in the same places, and the same signs (of zeros too)."""
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a, b, equal_nan=True) and np.array_equal(np.signbit(a), np.signbit(b))


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_every_transform_is_bit_for_bit_the_numpy_passes(shape, float_dtype):
    n, c, h, w, pad = shape
    rng = np.random.default_rng(0)
    t = winograd.tiling((n, c, h, w), pad)
    real = _real(t)
    x = rng.standard_normal((n, c, h, w)).astype(float_dtype)
    v, v_ref = _both(lambda x: winograd.transform_input(x, t, np.empty(16 * c * t.tiles, x.dtype)), x)
    _same_bits(v[:, :, real], v_ref[:, :, real])

    m = rng.standard_normal((16, FN, t.tiles)).astype(float_dtype)
    b = rng.standard_normal(FN).astype(float_dtype)
    y, y_ref = _both(winograd.transform_output, m, b, t)
    _same_bits(y, y_ref)
    assert y.flags.c_contiguous and y.shape == (n, FN, t.oh, t.ow)

    dy = rng.standard_normal((n, FN, t.oh, t.ow)).astype(float_dtype)
    dm, dm_ref = _both(winograd.output_gradient, dy, t)
    _same_bits(dm, dm_ref)  # junk tiles included: both give them exact zeros

    dv = rng.standard_normal((16, c, t.tiles)).astype(float_dtype)
    dv[:, :, ~real] = 0  # as U^T dM gives them
    dx, dx_ref = _both(winograd.input_gradient, dv, t)
    _same_bits(dx, dx_ref)
    assert dx.flags.c_contiguous and dx.shape == (n, c, h, w)


def test_transform_output_leaves_m_alone_and_takes_strided_inputs():
    rng = np.random.default_rng(1)
    t = winograd.tiling((2, 3, 6, 7), (1, 1))
    m = rng.standard_normal((16, 2 * FN, t.tiles))[:, ::2, :]  # not contiguous
    kept = m.copy()
    y = winograd.transform_output(m, np.ones(FN), t)
    with numpy_kernels():
        y_ref = winograd.transform_output(m.copy(), np.ones(FN), t)
    _same_bits(y, y_ref)
    _same_bits(m, kept)
    dy = rng.standard_normal((2, FN, t.ow, t.oh)).transpose(0, 1, 3, 2)  # not contiguous
    dm, dm_ref = _both(winograd.output_gradient, dy, t)
    _same_bits(dm, dm_ref)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_the_compact_layout_holds_the_same_tiles(shape, float_dtype):
    """Without junk tiles (the layout the convolution gives the compiled transforms), V and dM
    hold the same values on the same tiles, and y and dx come out the same, bit for bit."""
    n, c, h, w, pad = shape
    rng = np.random.default_rng(7)
    full, compact = winograd.tiling((n, c, h, w), pad), winograd.tiling((n, c, h, w), pad, compact=True)
    assert compact.tiles == n * full.th * (full.t1 - 1) and compact.row_tiles == full.t1 - 1
    real = _real(full)
    x = rng.standard_normal((n, c, h, w)).astype(float_dtype)
    v = winograd.transform_input(x, full, np.empty(16 * c * full.tiles, x.dtype))
    v_compact = winograd.transform_input(x, compact, np.empty(16 * c * compact.tiles, x.dtype))
    _same_bits(v_compact, v[:, :, real])
    dy = rng.standard_normal((n, FN, full.oh, full.ow)).astype(float_dtype)
    _same_bits(winograd.output_gradient(dy, compact), winograd.output_gradient(dy, full)[:, :, real])
    m = rng.standard_normal((16, FN, full.tiles)).astype(float_dtype)
    b = rng.standard_normal(FN).astype(float_dtype)
    _same_bits(
        winograd.transform_output(np.ascontiguousarray(m[:, :, real]), b, compact),
        winograd.transform_output(m, b, full),
    )
    dv = rng.standard_normal((16, c, full.tiles)).astype(float_dtype)
    dv[:, :, ~real] = 0
    _same_bits(
        winograd.input_gradient(np.ascontiguousarray(dv[:, :, real]), compact), winograd.input_gradient(dv, full)
    )


@pytest.mark.parametrize("shape", SHAPES[:3] + SHAPES[-2:], ids=str)
def test_a_convolution_with_and_without_them(shape, float_dtype):
    """The same results within rounding: the F(2x2, 3x3) transforms are bit-exact, but with the
    compact layout the matrix products between them run over fewer (junk-free) tiles, and BLAS
    may round a product of another shape differently (and dW sums over other tiles).  (With the
    kernels a convolution may take F(4x4, 3x3) instead: test_winograd4.py; kept to F(2x2, 3x3)
    here.)"""
    n, c, h, w, pad = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(float_dtype)
    W = rng.standard_normal((4, c, 3, 3)).astype(float_dtype)
    b = rng.standard_normal(4).astype(float_dtype)

    def step(x, W, b):
        y, state = conv2d_forward(x, W, b, (1, 1), pad)
        dy = np.cos(y)  # a gradient that depends on y
        return (y, *conv2d_backward(dy, W, state), state)

    with small_winograd_tiles():
        compiled, reference = _both(step, x, W, b)
    if c > 1:
        assert compiled[-1].path == reference[-1].path == "winograd"
        assert compiled[-1].compact and not reference[-1].compact
    bound = 1e-13 if float_dtype == "float64" else 2e-6  # of the largest magnitude
    for got, want in zip(compiled[:4], reference[:4], strict=True):  # y, dx, dW, db
        assert got.shape == want.shape and got.dtype == want.dtype
        assert np.abs(got - want).max() <= bound * np.abs(want).max()


def test_they_take_numpy_float_arrays_only(torch):
    import array_api_strict

    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert native.accepts(x) and native.accepts(x.astype(np.float64))
    assert not native.accepts(x.astype(np.float16)) and not native.accepts(x.astype(np.int32))
    assert not native.accepts(array_api_strict.asarray(x)) and not native.accepts(torch.from_numpy(x))


def test_numpy_kernels_turns_them_off_inside_the_block_only():
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert native_enabled()
    with numpy_kernels():
        assert not native_enabled() and not native.accepts(x)
        with numpy_kernels():
            pass
        assert not native_enabled()
    assert native_enabled() and native.accepts(x)


def test_the_environment_turns_them_off():
    code = (
        "import numpy as np; from cnn_xp.functions import native; "
        "print(native.available(), native.accepts(np.zeros((1, 2, 4, 4), np.float32)))"
    )
    env = {**os.environ, "CNN_XP_NATIVE": "0"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]


def test_without_the_extension_the_numpy_passes_run(monkeypatch):
    monkeypatch.setattr(native, "_library", lambda: None)
    assert not native.available() and not native.accepts(np.zeros((1, 2, 4, 4)))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 5, 6))
    t = winograd.tiling(x.shape, (1, 1))
    v = winograd.transform_input(x, t, np.empty(16 * 3 * t.tiles))
    with numpy_kernels():
        v_ref = winograd.transform_input(x, t, np.empty(16 * 3 * t.tiles))
    _same_bits(v, v_ref)  # junk tiles too: this is the NumPy path


def test_every_kind_of_array_is_passed_at_its_own_address():
    """The address a kernel is given is the array's first element, whichever way it is found:
    a lent buffer (writeable, C-contiguous) or ``a.ctypes`` (read-only, strided, empty, a view
    at an offset)."""
    base = np.arange(4 * 6 * 8, dtype=np.float32).reshape(4, 6, 8)
    frozen = base.copy()
    frozen.flags.writeable = False
    arrays = {
        "contiguous": base,
        "offset view": base[1:],
        "strided": base[:, 1:, :],
        "planes": native.empty_planes(3, 5, 7, np.float32),
        "read-only": frozen,
        "empty": np.empty((0, 3), np.float64),
        "bool mask": np.zeros(9, np.bool_),
    }
    for what, a in arrays.items():
        assert native._pointer(a) == a.ctypes.data, what
    # ... and the kernel sees the data there: one pass of ReLU over a view that starts mid-array
    shifted = base.reshape(-1) - 100.0
    view = shifted[8:40]
    assert view.base is shifted and native._pointer(view) == native._pointer(shifted) + 8 * 4
    y, mask = native.relu(view)
    np.testing.assert_array_equal(y, np.maximum(view, 0))
    np.testing.assert_array_equal(mask, view <= 0)


def test_calls_go_through_ctypes_cdll_which_releases_the_gil():
    """ctypes.CDLL lets go of the GIL for each call (ctypes.PyDLL would not): the two shards of a
    batch run their transforms at once."""
    lib = native._library()
    assert isinstance(lib, ctypes.CDLL) and not isinstance(lib, ctypes.PyDLL)


# --------------------------------------------------------------------------- max pooling

# (pool_h, pool_w, stride, pad, H, W): the networks' 2x2/2 (even and odd sizes: a dropped last
# row and column), overlapping windows (3x3/1, 3x3/2 padded), a non-square window and stride
POOLS = [
    (2, 2, 2, 0, 8, 8),
    (2, 2, 2, 0, 7, 9),
    (3, 3, 1, 0, 6, 5),
    (3, 3, 2, 1, 7, 7),
    (2, 3, (1, 2), (1, 1), 5, 8),
    (1, 1, 1, 0, 3, 3),
]


def _pool_data(h, w, dtype, seed=0):
    """Inputs with ties (small integers; +0 and -0 side by side), NaN and -inf among them."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, (2, 3, h, w)).astype(dtype)
    x[0, 2, :2, :2] = [[0.0, -0.0], [-1.0, -1.0]]  # numpy.maximum(0.0, -0.0) is -0.0
    x[0, 0, 0, 0] = np.nan
    x[1, 2, -1, -1] = -np.inf
    x[1, 1, :2, :] = -np.inf  # whole windows of -inf: padding may win
    return x


@pytest.mark.parametrize("pool", POOLS, ids=str)
def test_max_pooling_gives_the_numpy_passes_results(pool, float_dtype):
    from cnn_xp import Pooling

    kh, kw, stride, pad, h, w = pool
    x = _pool_data(h, w, float_dtype)

    def run(x):
        layer = Pooling(kh, kw, stride=stride, pad=pad)
        y = layer.forward(x)
        dy = np.arange(1, y.size + 1, dtype=float_dtype).reshape(y.shape) / 7
        return y, layer.backward(dy), layer._state.winners is not None

    (y, dx, compiled), (y_ref, dx_ref, numpy_path) = _both(run, x)
    assert compiled and not numpy_path
    _same_bits(y, y_ref)
    np.testing.assert_array_equal(dx, dx_ref)
    assert dx.dtype == dx_ref.dtype and dx.flags.c_contiguous


def test_max_pooling_backward_takes_any_float_gradient():
    from cnn_xp import Pooling

    x = _pool_data(6, 6, np.float32)
    for dtype in (np.float16, np.float64):

        def run(x, dtype=dtype):
            layer = Pooling(2, 2)
            y = layer.forward(x)
            return layer.backward(np.linspace(-1, 1, y.size).reshape(y.shape).astype(dtype))

        dx, dx_ref = _both(run, x)
        assert dx.dtype == dx_ref.dtype == dtype
        np.testing.assert_array_equal(dx, dx_ref)


def test_max_pooling_of_integers_and_large_windows_takes_the_numpy_passes():
    from cnn_xp import Pooling

    layer = Pooling(2, 2)
    layer.forward(np.ones((1, 1, 4, 4), dtype=np.int32))
    assert layer._state.winners is None and layer._state.img is not None
    big = Pooling(16, 16, stride=16)  # 256 offsets: more than a byte holds
    big.forward(np.ones((1, 1, 16, 16), dtype=np.float32))
    assert big._state.winners is None and big._state.img is not None


# --------------------------------------------------------------------------- strided columns

# (n, C, H, W, FN, kernel, stride, pad): ResNet's downsampling 3x3 and 1x1 layers, odd sizes, a
# window wider than the stride, a pad as large as the window (whole rows of padding), one channel
STRIDED = [
    (4, 16, 28, 28, 8, (3, 3), (2, 2), (1, 1)),
    (3, 3, 9, 7, 4, (3, 3), (2, 2), (1, 1)),
    (2, 2, 8, 11, 3, (3, 2), (3, 2), (0, 1)),
    (2, 1, 5, 5, 2, (5, 5), (2, 2), (2, 2)),
    (3, 2, 6, 6, 2, (3, 3), (2, 2), (3, 3)),
    (0, 2, 6, 6, 2, (3, 3), (2, 2), (1, 1)),
]


@pytest.mark.parametrize("case", STRIDED, ids=str)
def test_strided_columns_and_their_gradient_are_the_numpy_passes_bits(case, float_dtype):
    n, c, h, w, fn, k, stride, pad = case
    rng = np.random.default_rng(11)
    x = rng.standard_normal((n, c, h, w)).astype(float_dtype)
    x.flat[: min(3, x.size)] = [-0.0, np.inf, np.nan][: min(3, x.size)]
    W = rng.standard_normal((fn, c, *k)).astype(float_dtype)
    b = rng.standard_normal(fn).astype(float_dtype)

    def run(x, W, b):
        y, state = conv2d_forward(x, W, b, stride, pad)
        assert state.path == "strided"
        dy = np.cos(np.arange(y.size, dtype=float_dtype)).reshape(y.shape)
        dx, dW, db = conv2d_backward(dy, W, state)
        return y, dx, dW, db

    for got, want in zip(*_both(run, x, W, b), strict=True):
        _same_bits(got, want)
    dx = run(x, W, b)[1]
    assert dx.flags.c_contiguous and dx.shape == x.shape


def test_the_strided_column_kernels_refuse_what_does_not_fit():
    x = np.ones((2, 3, 8, 8), np.float32)
    out = np.empty((3, 3, 3, 2, 4, 4), np.float32)
    with pytest.raises(native.KernelArgumentError, match=r"out: expected shape \(3, 3, 3, 2, 4, 4\)"):
        native.im2col(x, 3, 3, (2, 2), (1, 1), out[:, :, :, :1])
    with pytest.raises(native.KernelArgumentError, match="out: expected dtype float32, got float64"):
        native.im2col(x, 3, 3, (2, 2), (1, 1), out.astype(np.float64))
    out.flags.writeable = False
    with pytest.raises(native.KernelArgumentError, match="out: the kernel writes it, but the array is read-only"):
        native.im2col(x, 3, 3, (2, 2), (1, 1), out)
    big = np.ones(3 * 3 * 3 * 2 * 4 * 4 + x.size, np.float32)
    inside = big[: x.size].reshape(x.shape)
    with pytest.raises(native.KernelArgumentError, match="out: the kernel writes it, but it overlaps x"):
        native.im2col(inside, 3, 3, (2, 2), (1, 1), big[x.size // 2 :][: out.size].reshape(out.shape))
    with pytest.raises(native.KernelArgumentError, match="im2col: window"):
        native.im2col(x, 3, 3, (0, 2), (1, 1), out)
    with pytest.raises(native.KernelArgumentError, match="im2col: window"):
        native.im2col(x, 11, 3, (2, 2), (1, 1), out)  # a window larger than the padded image
    cols = np.ones((3, 3, 3, 2, 4, 4), np.float32)
    with pytest.raises(native.KernelArgumentError, match=r"cols: expected shape \(3, 3, 3, 2, 5, 4\)"):
        native.col2im(cols, (2, 3, 9, 8), 3, 3, (2, 2), (1, 1))


# --------------------------------------------------------------------------- ReLU


def test_relu_gives_the_numpy_passes_bits(float_dtype):
    from cnn_xp import Relu

    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 4, 5, 7)).astype(float_dtype)
    x.flat[:6] = [0.0, -0.0, np.nan, np.inf, -np.inf, -1e-45]
    dy = rng.standard_normal(x.shape).astype(float_dtype)
    dy.flat[6:9] = [np.nan, -0.0, np.inf]

    def run(x, dy):
        layer = Relu()
        return layer.forward(x), layer.mask, layer.backward(dy)

    (y, mask, dx), (y_ref, mask_ref, dx_ref) = _both(run, x, dy)
    _same_bits(y, y_ref)
    _same_bits(dx, dx_ref)  # -0.0 where dy * 0 gives it, NaN where dy is NaN
    assert mask.dtype == np.bool_ and np.array_equal(mask, mask_ref)


def test_relu_leaves_integers_and_other_gradients_to_numpy():
    from cnn_xp import Relu

    layer = Relu()
    y = layer.forward(np.array([[-2, 0, 3]], dtype=np.int32))
    assert y.dtype == np.int32 and y.tolist() == [[0, 0, 3]]
    dx = layer.backward(np.array([[1, 2, 3]], dtype=np.float16))
    assert dx.dtype == np.float16 and dx.tolist() == [[0, 0, 3]]
    with numpy_kernels():  # a mask made by the NumPy passes serves the compiled backward too
        layer.forward(np.array([[-1.0, 2.0]], dtype=np.float32))
    assert layer.backward(np.array([[5.0, 7.0]], dtype=np.float32)).tolist() == [[0.0, 7.0]]


# --------------------------------------------------------------------------- Adam


def test_adam_gives_the_numpy_passes_bits_step_after_step(float_dtype):
    from cnn_xp import Adam

    rng = np.random.default_rng(6)
    params = {"W": rng.standard_normal((30, 40)).astype(float_dtype), "b": np.zeros(7, float_dtype)}
    grads = [{k: rng.standard_normal(p.shape).astype(float_dtype) for k, p in params.items()} for _ in range(5)]
    grads[2]["b"][:] = 0.0  # a zero gradient, and a tiny one
    grads[3]["W"][0, :3] = [1e-30, -0.0, 3e4]

    def run(params):
        opt = Adam(lr=0.01)
        for g in grads:
            opt.update(params, {k: a.copy() for k, a in g.items()})
        return params, opt

    (p, opt), (p_ref, opt_ref) = _both(lambda *a: run(dict(zip(params, a, strict=True))), *params.values())
    for key in params:
        _same_bits(p[key], p_ref[key])
        for slot in ("m", "v"):
            _same_bits(opt.state_dict()["state"][slot][key], opt_ref.state_dict()["state"][slot][key])


def test_adam_leaves_what_it_cannot_update_in_place_to_numpy():
    from cnn_xp import Adam

    W = np.ones((4, 6), np.float32)
    view = W[:, ::2]  # not contiguous: the kernel would write past its elements
    assert not native.fits(
        *native.adam_arguments(
            view, np.ones((4, 3), np.float32), np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)
        )
    )
    params = {"W": view}
    Adam(lr=0.5).update(params, {"W": np.ones((4, 3), np.float32)})
    assert np.all(W[:, 1::2] == 1.0) and np.all(W[:, ::2] < 1.0)
    mixed = (np.ones(3, np.float32), np.ones(3, np.float64), np.zeros(3, np.float32), np.zeros(3, np.float32))
    assert not native.fits(*native.adam_arguments(*mixed))


@pytest.mark.parametrize("stale", ["a kernel missing", "other arguments"])
def test_kernels_older_than_their_sources_warn_and_step_aside(monkeypatch, stale):
    """An editable install whose extension was built from older sources (a kernel added since,
    or a kernel's arguments changed): the NumPy passes run, with a warning that says how to
    rebuild, instead of a crash or a call with the wrong arguments."""
    real = ctypes.CDLL

    class OlderVersion:  # what cnn_xp_kernels_abi() of an older build answers
        restype = argtypes = None

        def __call__(self):
            return native.header()[0] - 1

    class Stale:  # the real library's first two functions only, or an older version number
        def __init__(self, path):
            lib = real(path)
            self.cnn_xp_kernels_abi = OlderVersion() if stale == "other arguments" else lib.cnn_xp_kernels_abi
            self.winograd_scratch = lib.winograd_scratch

    monkeypatch.setattr(native.ctypes, "CDLL", Stale)
    native._library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="do not match its sources.*pip install -e"):
            assert not native.available()
        assert not native.accepts(np.zeros(3, np.float32))
    finally:
        monkeypatch.undo()
        native._library.cache_clear()
    assert native.available()


def test_a_backward_keeps_the_layout_its_forward_chose():
    """numpy_kernels() turned on between a forward and its backward: the backward still reads the
    forward's compact tiles with the compiled transforms, and its gradients are right."""
    x, W, b = (np.random.default_rng(8).standard_normal(s) for s in ((3, 4, 6, 6), (5, 4, 3, 3), (5,)))
    dy = np.ones((3, 5, 6, 6))
    y, state = conv2d_forward(x, W, b, (1, 1), (1, 1))
    assert state.compact
    with numpy_kernels():
        dx, dW, db = conv2d_backward(dy, W, state)
        y_ref, state_ref = conv2d_forward(x, W, b, (1, 1), (1, 1))
        dx_ref, dW_ref, db_ref = conv2d_backward(dy, W, state_ref)
    assert not state_ref.compact
    for got, want in ((y, y_ref), (dx, dx_ref), (dW, dW_ref), (db, db_ref)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_transform_input_refuses_an_out_it_cannot_write_into():
    """A buffer the kernel cannot fill in place (strided, or of another size) is refused before
    any work, rather than filled through a copy the caller never sees."""
    x = np.zeros((1, 2, 4, 4), np.float32)
    t = winograd.tiling(x.shape, (1, 1))
    size = 16 * t.c * t.tiles
    for out, words in [
        (np.empty(2 * size, np.float32)[::2], "out: expected a C-contiguous, aligned array"),
        (np.empty(size + 1, np.float32), f"out: expected {size} elements for these sizes, got {size + 1}"),
    ]:
        with pytest.raises(native.KernelArgumentError, match=words):
            native.transform_input(x, t, out)


@pytest.mark.parametrize("rows, tiles, itemsize", [(16, 3200, 4), (32, 800, 4), (64, 200, 8), (1, 1, 4), (3, 5, 8)])
def test_plane_stride_spreads_the_planes_over_the_cache_sets(rows, tiles, itemsize):
    """F(4x4, 3x3)'s planes are at least a plane apart and one 64-byte line past a whole number
    of 4 KiB pages, so the 36 planes a transform walks at once do not share a few L1 sets (the
    first three shapes are ResNet-20's, whose contiguous planes are whole pages apart)."""
    ld = native.plane_stride(rows, tiles, itemsize)
    assert ld >= rows * tiles and (ld * itemsize) % 4096 == 64
    assert ld * itemsize - rows * tiles * itemsize < 4096 + 64  # never more than a page wasted


def test_the_f4_transforms_read_and_write_planes_at_any_stride():
    """V, M, dM and dV of F(4x4, 3x3) laid out as planes (native.planes) give the same bits as
    C-contiguous copies, and matmul_planes equals matmul."""
    rng = np.random.default_rng(11)
    x, dy = rng.standard_normal((5, 3, 9, 7)), rng.standard_normal((5, 4, 9, 7))
    t = replace(winograd.tiling(x.shape, (1, 1), compact=True, m=4), group=2)
    v = winograd.transform_input(x, t, np.empty(winograd.input_elems(t, x.itemsize)))
    assert v.shape == (36, 3, t.tiles) and v.strides[0] == 8 * native.plane_stride(3, t.tiles, 8)
    U = rng.standard_normal((36, 4, 3))
    m = winograd.products(U, v, t)
    assert m.strides[0] == 8 * native.plane_stride(4, t.tiles, 8)
    _same_bits(m, np.matmul(U, np.ascontiguousarray(v)))
    _same_bits(
        winograd.transform_output(m, np.ones(4), t), winograd.transform_output(np.ascontiguousarray(m), np.ones(4), t)
    )
    dm = winograd.output_gradient(dy, t)
    assert dm.strides[0] == 8 * native.plane_stride(4, t.tiles, 8)
    dv = winograd.products(U.mT, dm, t)
    _same_bits(winograd.input_gradient(dv, t), winograd.input_gradient(np.ascontiguousarray(dv), t))


def test_the_f4_transforms_refuse_planes_laid_out_otherwise():
    """A (K, rows, T) argument whose planes are not C-contiguous matrices, or overlap (closer
    than a plane's size), or of another shape, is refused before the kernel runs."""
    x = np.zeros((2, 3, 8, 8))
    t = winograd.tiling(x.shape, (1, 1), compact=True, m=4)
    m = np.zeros((36, 4, t.tiles))
    overlapping = np.lib.stride_tricks.as_strided(m, strides=(8 * (4 * t.tiles - 1), *m.strides[1:]))
    for bad, words in [
        (np.zeros((36, t.tiles, 4)).transpose(0, 2, 1), "M: expected aligned planes of C-contiguous"),
        (overlapping, "M: expected aligned planes of C-contiguous"),
        (np.zeros((36, 4, t.tiles + 1)), "M: expected shape"),
    ]:
        with pytest.raises(native.KernelArgumentError, match=words):
            native.transform_output(bad, np.zeros(4), t)
    with pytest.raises(native.KernelArgumentError, match="buffer: expected a flat array of at least"):
        native.transform_input(x, t, np.empty(36 * 3 * t.tiles))
    strided = np.zeros(2 * winograd.input_elems(t, 8))[::2]  # reshaped, it would be a copy
    with pytest.raises(native.KernelArgumentError, match="buffer: expected a contiguous flat array"):
        native.transform_input(x, t, strided)
    assert not strided.any()


def test_the_f4_output_transforms_write_into_a_given_array_or_refuse_it():
    """transform_output and input_gradient write a block's result straight into its images of
    the batch's array (no copy); an out of another shape, not C-contiguous or read-only is
    refused before the kernel runs."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((4, 3, 8, 8))
    t = winograd.tiling(x.shape, (1, 1), compact=True, m=4)
    m, dv = rng.standard_normal((36, 5, t.tiles)), rng.standard_normal((36, 3, t.tiles))
    y, dx = np.zeros((6, 5, 8, 8)), np.zeros((6, 3, 8, 8))
    assert winograd.transform_output(m, np.ones(5), t, out=y[1:5]).base is y
    assert winograd.input_gradient(dv, t, out=dx[2:6]).base is dx
    _same_bits(y[1:5], winograd.transform_output(m, np.ones(5), t))
    _same_bits(dx[2:6], winograd.input_gradient(dv, t))
    assert not y[0].any() and not y[5].any() and not dx[:2].any()
    frozen = np.zeros((4, 5, 8, 8))
    frozen.flags.writeable = False
    for out, words in [
        (np.zeros((4, 5, 8, 9)), r"out: expected shape \(4, 5, 8, 8\)"),
        (np.zeros((4, 5, 8, 16))[..., ::2], "y: expected a C-contiguous"),
        (frozen, "y: the kernel writes it, but the array is read-only"),
    ]:
        with pytest.raises(native.KernelArgumentError, match=words):
            native.transform_output(m, np.ones(5), t, out=out)
