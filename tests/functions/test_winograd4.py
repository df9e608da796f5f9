"""Winograd F(4x4, 3x3) (the compiled transforms of cnn_xp.functions.native, _winograd4.c):
against PyTorch in float64 for every shape and group size, the adjoint identities its backward
rests on, its filter transform against G written out here, its float32 error bound, and which
convolutions take it (fewer products than F(2x2, 3x3); the switches)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from cnn_xp import Convolution, no_grad
from cnn_xp.functions import conv2d, winograd
from cnn_xp.functions.fast_paths import (
    direct_convolution,
    generic_paths,
    numpy_kernels,
    small_winograd_tiles,
    winograd_max_tile,
)

from ..helpers import CONV3X3_CASES, conv3x3_data, native_skip_reason

# outputs that are not a multiple of 4 (a part-empty last tile row or column), pads 0-2, one
# image, a one-pixel output, a non-square image; DeepConvNet's conv2 on 3 images; and 7 images
# (as one group: copied four images at a time, then three one at a time)
CASES = [*CONV3X3_CASES, (3, 16, 8, 28, 28, (1, 1)), (7, 3, 4, 9, 6, (1, 1))]
_data = conv3x3_data


@pytest.fixture(autouse=True)
def _built():
    reason = native_skip_reason()
    if reason is not None:
        pytest.skip(reason)


def _tiling(x, pad, group=0):
    return replace(winograd.tiling(x.shape, pad, compact=True, m=4), group=group)


def _convolve(x, W, b, t):
    """y by the transforms alone: A^T [U * V] A of every tile, plus b."""
    V = winograd.transform_input(x, t, np.empty(winograd.input_elems(t, x.itemsize), dtype=x.dtype))
    return winograd.transform_output(np.matmul(winograd.transform_filters(W, 4), V), b, t)


@pytest.mark.parametrize("group", [1, 2, 0], ids=["group1", "group2", "one_group"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_transforms_convolve_as_pytorch_in_float64(torch, case, group):
    """Groups of one image, of two (the last one short where N is odd) and of all N images."""
    x, W, b, _, pad = _data(case)
    t = _tiling(x, pad, group)
    want = torch.nn.functional.conv2d(*(torch.tensor(a) for a in (x, W, b)), padding=pad).numpy()
    y = _convolve(x, W, b, t)
    assert y.shape == want.shape and y.dtype == np.float64 and y.flags.c_contiguous
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("group", [2, 0], ids=["group2", "one_group"])
@pytest.mark.parametrize("case", CASES, ids=str)
def test_the_backward_transforms_are_the_adjoints_of_the_forward_ones(case, group):
    """<T v, w> = <v, T* w> for the input, output and filter transforms, on random vectors."""
    x, W, _, dy, pad = _data(case)
    rng = np.random.default_rng(1)
    t = _tiling(x, pad, group)
    fn = W.shape[0]
    v = winograd.transform_input(x, t, np.empty(winograd.input_elems(t, x.itemsize)))
    w = rng.standard_normal(v.shape)
    np.testing.assert_allclose(np.sum(v * w), np.sum(x * winograd.input_gradient(w, t)), rtol=1e-12)
    m = rng.standard_normal((36, fn, t.tiles))
    y = winograd.transform_output(m, np.zeros(fn), t)
    np.testing.assert_allclose(np.sum(y * dy), np.sum(m * winograd.output_gradient(dy, t)), rtol=1e-12)
    u = rng.standard_normal((36, fn, t.c))
    np.testing.assert_allclose(
        np.sum(winograd.transform_filters(W, 4) * u), np.sum(W * winograd.filter_gradient(u, fn, t.c)), rtol=1e-12
    )


def test_filter_transform_is_g_g_gt():
    """U = G g G^T per filter, G of Lavin & Gray's F(4x4, 3x3) (points 0, 1, -1, 2, -2, infinity)."""
    g = np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    )
    W = np.random.default_rng(5).standard_normal((3, 2, 3, 3))
    u = winograd.transform_filters(W, 4)
    assert u.shape == (36, 3, 2)
    np.testing.assert_allclose(u, np.einsum("ik,fckl,jl->ijfc", g, W, g).reshape(36, 3, 2), rtol=0, atol=1e-15)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_a_convolution_taking_it_matches_pytorch_in_float64(torch, case):
    """Forward and both gradients through conv2d, which takes F(4x4, 3x3) where it needs fewer
    products, and F(2x2, 3x3) inside small_winograd_tiles() -- both PyTorch's results."""
    x, W, b, dy, pad = _data(case)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    yt.backward(torch.tensor(dy))
    want = [yt, xt.grad, Wt.grad, bt.grad]
    for small in (True, False):
        with small_winograd_tiles() if small else contextlib.nullcontext():
            y, state = conv2d.conv2d_forward(x, W, b, (1, 1), pad)
        assert state.path == "winograd" and state.tile == (2 if small else conv2d._winograd_tile(x.shape, pad))
        dx, dW, db = conv2d.conv2d_backward(dy, W, state)
        for got, ref in zip((y, dx, dW, db), want, strict=True):
            np.testing.assert_allclose(got, ref.detach().numpy(), rtol=1e-12, atol=1e-12)


# DeepConvNet's 3x3 layers after the first: (C, FN, H, pad)
DEEP_LAYERS = [(16, 16, 28, 1), (16, 32, 14, 1), (32, 32, 14, 2), (32, 64, 8, 1), (64, 64, 8, 1)]


@pytest.mark.parametrize("layer", DEEP_LAYERS, ids=str)
def test_float32_error_bound(layer):
    """The bound documented in cnn_xp.functions.winograd: y, dx and dW within 2e-5 of the
    largest magnitude of a float64 reference (measured 1.5e-6 to 7.7e-6 on these shapes, three
    seeds; F(2x2, 3x3) and the direct path: 1.3e-7 to 7.1e-7)."""
    c, fn, h, p = layer
    x, W, b, dy, pad = _data((8, c, fn, h, h, (p, p)), seed=1)
    with generic_paths():
        y_ref, state = conv2d.conv2d_forward(x, W, b, (1, 1), pad)
        ref = (y_ref, *conv2d.conv2d_backward(dy, W, state)[:2])
    low = [a.astype(np.float32) for a in (x, W, b, dy)]
    y, state = conv2d.conv2d_forward(*low[:3], (1, 1), pad)
    assert state.path == "winograd" and state.tile == 4
    got = (y, *conv2d.conv2d_backward(low[3], low[1], state)[:2])
    for g, r in zip(got, ref, strict=True):
        assert g.dtype == np.float32
        assert np.abs(g - r).max() <= 2e-5 * np.abs(r).max()


def test_the_rule_takes_it_where_it_needs_fewer_products():
    """Products per channel pair: 36 per 4x4 tile against 16 per 2x2 tile (counted by hand)."""
    # outputs 6x6 (tie: 144), 7x5 (144 < 192), 3x10 (108 < 160), 1x1, 11x2 (108 > 96), 12x7, 28x28,
    # 9x6 (216 < 240)
    assert [conv2d._winograd_tile(case[:2] + case[3:5], case[5]) for case in CASES] == [2, 4, 4, 2, 2, 4, 4, 4]
    assert [conv2d._winograd_tile((50, c, h, h), (p, p)) for c, _, h, p in DEEP_LAYERS] == [4] * 5
    assert conv2d._winograd_tile((1, 2, 8, 8), (0, 0)) == 2  # 6x6 output: 4 x 36 = 9 x 16
    assert conv2d._winograd_tile((1, 2, 4, 4), (1, 1)) == 4  # 4x4 output: one tile, 36 against 4 x 16
    assert conv2d._winograd_tile((1, 2, 5, 5), (1, 1)) == 2  # 5x5 output: 4 x 36 against 9 x 16
    assert conv2d._winograd_tile((1, 2, 4, 4), (0, 0)) == 2  # 2x2 output: 36 against 16


def test_the_switches_keep_to_f2x2():
    x = np.zeros((2, 4, 8, 8), dtype=np.float32)
    W = np.zeros((4, 4, 3, 3), dtype=np.float32)
    b = np.zeros(4, dtype=np.float32)
    assert winograd_max_tile() == 4
    assert conv2d.conv2d_forward(x, W, b, (1, 1), (1, 1))[1].tile == 4
    with small_winograd_tiles():
        assert winograd_max_tile() == 2
        assert conv2d.conv2d_forward(x, W, b, (1, 1), (1, 1))[1].tile == 2
    assert winograd_max_tile() == 4
    with numpy_kernels():  # the NumPy passes are F(2x2, 3x3)'s
        assert conv2d.conv2d_forward(x, W, b, (1, 1), (1, 1))[1].tile == 2
    with direct_convolution():
        assert conv2d.conv2d_forward(x, W, b, (1, 1), (1, 1))[1].path == "flat_rows"
    layer = Convolution(W, b, pad=1)
    layer.forward(x)
    assert (layer.algorithm, layer.winograd_tile) == ("winograd", 4)
    with small_winograd_tiles():
        layer.forward(x)
    assert (layer.algorithm, layer.winograd_tile) == ("winograd", 2)
    with direct_convolution():
        layer.forward(x)
    assert (layer.algorithm, layer.winograd_tile) == ("flat_rows", None)
    code = "from cnn_xp.functions.fast_paths import winograd_max_tile, winograd_enabled; print(winograd_max_tile(), winograd_enabled())"
    for value, want in (("2", "2 True"), ("1", "4 True"), ("0", "4 False")):
        env = {**os.environ, "CNN_XP_WINOGRAD": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want


def test_inference_takes_it_chunk_by_chunk_and_keeps_nothing(torch, monkeypatch):
    """Without columns to keep (inference) a convolution whose tiles favour F(4x4, 3x3) takes it,
    in chunks of conv2d.chunk_bytes (here one image each), and a backward from that state
    recomputes each chunk's patches: PyTorch's results in float64.  The convolutions F(4x4, 3x3)
    does not pay for, the NumPy passes and F(2x2, 3x3) keep the flat rows there."""
    x, W, b, dy, pad = _data(CASES[-1])  # 28x28, 3 images
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    yt.backward(torch.tensor(dy))
    monkeypatch.setattr(conv2d, "chunk_bytes", conv2d._Winograd.col_elems(x.shape, W.shape, (1, 1), pad) * 8)
    y, state = conv2d.conv2d_forward(x, W, b, (1, 1), pad, keep_cols=False)
    assert (state.path, state.tile, state.chunk, state.cols, state.workspace) == ("winograd", 4, 1, None, None)
    for got, want in zip((y, *conv2d.conv2d_backward(dy, W, state)), (yt, xt.grad, Wt.grad, bt.grad), strict=True):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)
    layer = Convolution(W, b, pad=pad)
    with no_grad():
        np.testing.assert_allclose(layer.forward(x), yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    assert layer._state is None and layer._workspace.capacity(x) == 0
    x0, W0, b0, _, pad0 = _data(CASES[0])  # a 6x6 output: F(2x2, 3x3) by the rule
    assert conv2d.conv2d_forward(x0, W0, b0, (1, 1), pad0, keep_cols=False)[1].path == "flat_rows"
    for switch in (numpy_kernels, small_winograd_tiles):
        with switch():
            assert conv2d.conv2d_forward(x, W, b, (1, 1), pad, keep_cols=False)[1].path == "flat_rows"


def test_a_tiling_of_4x4_tiles_is_compact():
    with pytest.raises(ValueError, match="m: expected 2, or 4 with compact=True"):
        winograd.tiling((1, 2, 8, 8), (1, 1), compact=False, m=4)
    with pytest.raises(ValueError, match="m: expected"):
        winograd.tiling((1, 2, 8, 8), (1, 1), compact=True, m=3)


@pytest.mark.parametrize("where", ["an inf input", "inputs near float32's limit"])
def test_outside_its_range_winograd_gives_the_direct_paths_inf_and_nan(torch, where):
    """(F(4x4, 3x3) once gave 64 NaN where the direct path and PyTorch give inf, and non-finite
    outputs for finite inputs near 3e36 where they give none.)  The transforms count the
    non-finite values they write, and such a call is computed again by the direct path."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 12, 12)).astype(np.float32)
    if where == "an inf input":
        x[0, 1, 5, 5] = np.inf
    else:
        x *= np.float32(3e36)
    W, dy = rng.standard_normal((8, 4, 3, 3)).astype(np.float32), np.ones((2, 8, 12, 12), np.float32)
    y, state = conv2d.conv2d_forward(x, W, np.zeros(8, np.float32), (1, 1), (1, 1))
    dx, _, _ = conv2d.conv2d_backward(dy, W, state)
    assert state.path == "flat_rows"  # it fell back
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, torch.from_numpy(W), padding=1)
    ty.backward(torch.from_numpy(dy))
    for got, want in ((y, ty.detach().numpy()), (dx, tx.grad.numpy())):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
    ordinary = rng.standard_normal((2, 4, 12, 12)).astype(np.float32)
    assert (
        conv2d.conv2d_forward(ordinary, W, np.zeros(8, np.float32), (1, 1), (1, 1))[1].path == "winograd"
    )  # unchanged


@pytest.mark.parametrize("value", [np.inf, np.nan], ids=["inf", "nan"])
@pytest.mark.parametrize("image", [0, 3, 5], ids=["first", "in_a_quad", "left_over"])
def test_the_transforms_find_a_non_finite_result_wherever_it_is(value, image):
    """The output and input-gradient transforms look for non-finite results in one pass over
    their whole rows before copying them out: one bad value in any image of a group of six
    (copied back four at a time, then two one at a time) is found, and finite data is not."""
    from cnn_xp.functions import native

    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 3, 9, 10)).astype(np.float32)
    t = _tiling(x, (1, 1), group=6)
    V = winograd.transform_input(x, t, np.empty(winograd.input_elems(t, x.itemsize), dtype=x.dtype))
    M = np.matmul(winograd.transform_filters(rng.standard_normal((5, 3, 3, 3)).astype(np.float32), 4), V)
    b = np.zeros(5, np.float32)
    native.transform_output(M, b, t)  # finite: no error
    native.input_gradient(V.copy(), t)  # (V as the patches' gradient: any finite array)
    tile = image  # tiles are ordered (tile row, tile column, image in the group): this image's first
    bad = M.copy()
    bad[7, 2, tile] = value
    with pytest.raises(native.NonFiniteResult):
        native.transform_output(bad, b, t)
    dV = V.copy()
    dV[7, 1, tile] = value
    with pytest.raises(native.NonFiniteResult):
        native.input_gradient(dV, t)
