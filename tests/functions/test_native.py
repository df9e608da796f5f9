"""The compiled Winograd transforms (cnn_xp.functions.native): bit for bit the NumPy passes they
replace, on every tile that holds output pixels; used only where they should be; switched off by
the environment and by numpy_transforms(); and a convolution's results unchanged by them."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest

from cnn_xp.functions import native, winograd
from cnn_xp.functions.conv2d import conv2d_backward, conv2d_forward
from cnn_xp.functions.fast_paths import native_enabled, numpy_transforms

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
    with numpy_transforms():
        reference = fn(*[a.copy() if isinstance(a, np.ndarray) else a for a in args])
    return compiled, reference


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert np.array_equal(a, b) and np.array_equal(np.signbit(a), np.signbit(b))


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
    with numpy_transforms():
        y_ref = winograd.transform_output(m.copy(), np.ones(FN), t)
    _same_bits(y, y_ref)
    _same_bits(m, kept)
    dy = rng.standard_normal((2, FN, t.ow, t.oh)).transpose(0, 1, 3, 2)  # not contiguous
    dm, dm_ref = _both(winograd.output_gradient, dy, t)
    _same_bits(dm, dm_ref)


@pytest.mark.parametrize("shape", SHAPES[:3] + SHAPES[-2:], ids=str)
def test_a_convolution_gives_the_same_bits_with_and_without_them(shape, float_dtype):
    n, c, h, w, pad = shape
    rng = np.random.default_rng(2)
    x = rng.standard_normal((n, c, h, w)).astype(float_dtype)
    W = rng.standard_normal((4, c, 3, 3)).astype(float_dtype)
    b = rng.standard_normal(4).astype(float_dtype)

    def step(x, W, b):
        y, state = conv2d_forward(x, W, b, (1, 1), pad)
        dy = np.cos(y)  # a gradient that depends on y
        return (y, *conv2d_backward(dy, W, state), state.path)

    compiled, reference = _both(step, x, W, b)
    if c > 1:
        assert compiled[-1] == reference[-1] == "winograd"
    for got, want in zip(compiled[:4], reference[:4], strict=True):
        np.testing.assert_array_equal(got, want)


def test_they_take_numpy_float_arrays_only(backend):
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert native.accepts(x) and native.accepts(x.astype(np.float64))
    assert not native.accepts(x.astype(np.float16)) and not native.accepts(x.astype(np.int32))
    assert native.accepts(backend.asarray(x)) == (backend.name == "numpy")


def test_numpy_transforms_turns_them_off_inside_the_block_only():
    x = np.zeros((1, 2, 4, 4), dtype=np.float32)
    assert native_enabled()
    with numpy_transforms():
        assert not native_enabled() and not native.accepts(x)
        with numpy_transforms():
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
    with numpy_transforms():
        v_ref = winograd.transform_input(x, t, np.empty(16 * 3 * t.tiles))
    _same_bits(v, v_ref)  # junk tiles too: this is the NumPy path


def test_calls_go_through_ctypes_cdll_which_releases_the_gil():
    """ctypes.CDLL lets go of the GIL for each call (ctypes.PyDLL would not): the two shards of a
    batch run their transforms at once."""
    lib = native._library()
    assert isinstance(lib, ctypes.CDLL) and not isinstance(lib, ctypes.PyDLL)
