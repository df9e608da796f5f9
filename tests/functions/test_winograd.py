"""Winograd convolutions (cnn_xp.functions.winograd): against PyTorch and finite differences in
float64 (with the compiled transforms the convolutions whose output tiles need fewer products run
F(4x4, 3x3), the others F(2x2, 3x3)), F(2x2, 3x3)'s float32 error against the direct path's, the
adjoint identities its backward rests on, and where the convolution takes it (CPU training) and
where not (inference, a GPU, the switch).  F(4x4, 3x3) alone: test_winograd4.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnn_xp import Convolution, no_grad
from cnn_xp.backend import combine_into
from cnn_xp.functions import winograd
from cnn_xp.functions.conv2d import conv2d_backward, conv2d_forward
from cnn_xp.functions.fast_paths import (
    direct_convolution,
    generic_paths,
    numpy_kernels,
    small_winograd_tiles,
    winograd_enabled,
)

from ..helpers import CONV3X3_CASES, GRAD_RTOL, conv3x3_data, native_skip_reason, numeric_grad, rel_error


@pytest.fixture(autouse=True, params=["compiled", "numpy"])
def transforms(request):
    """Every test here runs with the compiled transforms (cnn_xp.functions.native) and with the
    NumPy passes they replace."""
    if request.param == "numpy":
        with numpy_kernels():
            yield request.param
        return
    reason = native_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    yield request.param


CASES = CONV3X3_CASES
_data = conv3x3_data


def _run(x, W, b, dy, pad):
    y, state = conv2d_forward(x, W, b, (1, 1), pad)
    dx, dW, db = conv2d_backward(dy, W, state)
    return y, dx, dW, db, state.path


@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_torch_in_float64(torch, case):
    x, W, b, dy, pad = _data(case)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    yt.backward(torch.tensor(dy))
    y, dx, dW, db, path = _run(x, W, b, dy, pad)
    assert path == "winograd"
    for got, want in ((y, yt), (dx, xt.grad), (dW, Wt.grad), (db, bt.grad)):
        assert got.shape == tuple(want.shape) and got.dtype == np.float64 and got.flags.c_contiguous
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_gradients_match_finite_differences():
    x, W, b, dy, pad = _data(CASES[1])
    layer = Convolution(W.copy(), b.copy(), pad=pad)

    def loss() -> float:
        return float(np.sum(layer.forward(x) * dy))

    loss()
    dx = layer.backward(dy)
    assert layer._state.path == "winograd"
    dW, db = layer.dW.copy(), layer.db.copy()
    assert rel_error(dx, numeric_grad(loss, x)) < GRAD_RTOL
    assert rel_error(dW, numeric_grad(loss, layer.W)) < GRAD_RTOL
    assert rel_error(db, numeric_grad(loss, layer.b)) < GRAD_RTOL


# DeepConvNet's 3x3 layers after the first: (C, FN, H, pad)
DEEP_LAYERS = [(16, 16, 28, 1), (16, 32, 14, 1), (32, 32, 14, 2), (32, 64, 8, 1), (64, 64, 8, 1)]


@pytest.mark.parametrize("layer", DEEP_LAYERS, ids=str)
def test_float32_error_is_the_direct_paths_order(layer):
    """The bound documented in cnn_xp.functions.winograd: F(2x2, 3x3) and the direct path within
    2e-6 of the largest magnitude of a float64 reference (measured 1.6e-7 to 5.7e-7 on these
    shapes).  (F(4x4, 3x3), which these layers take by default: test_winograd4.py.)"""
    c, fn, h, p = layer
    x, W, b, dy, pad = _data((8, c, fn, h, h, (p, p)), seed=1)
    with generic_paths():
        ref = _run(x, W, b, dy, pad)
    low = [a.astype(np.float32) for a in (x, W, b, dy)]
    with small_winograd_tiles():
        wino = _run(*low, pad)
    with direct_convolution():
        direct = _run(*low, pad)
    assert wino[-1] == "winograd" and direct[-1] == "flat_rows"
    for got in (wino, direct):
        for g, r in zip(got[:3], ref[:3], strict=True):
            assert g.dtype == np.float32
            assert np.abs(g - r).max() <= 2e-6 * np.abs(r).max()


def test_the_backward_transforms_are_the_adjoints_of_the_forward_ones():
    """<T v, w> = <v, T* w> for the input and output transforms, on random vectors."""
    rng = np.random.default_rng(3)
    t = winograd.tiling((2, 3, 7, 6), (1, 2))
    x = rng.standard_normal((2, 3, 7, 6))
    w = rng.standard_normal((16, 3, t.tiles))
    v = winograd.transform_input(x, t, np.empty(16 * 3 * t.tiles))
    np.testing.assert_allclose(np.sum(v * w), np.sum(x * winograd.input_gradient(w, t)), rtol=1e-12)
    m = rng.standard_normal((16, 4, t.tiles))
    g = rng.standard_normal((2, 4, t.oh, t.ow))
    y = winograd.transform_output(m.copy(), np.zeros(4), t)
    np.testing.assert_allclose(np.sum(y * g), np.sum(m * winograd.output_gradient(g, t)), rtol=1e-12)
    dW = rng.standard_normal((4, 3, 3, 3))
    u = rng.standard_normal((16, 4, 3))
    np.testing.assert_allclose(
        np.sum(winograd.transform_filters(dW) * u), np.sum(dW * winograd.filter_gradient(u, 4, 3)), rtol=1e-12
    )


def test_filter_transform_is_g_g_gt_exactly():
    """U = G g G^T per filter, against G of Lavin & Gray written out here; integer filters make
    every product and sum exact, so the one matrix product must match to the bit."""
    g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    W = np.random.default_rng(5).integers(-8, 9, size=(3, 2, 3, 3)).astype(np.float32)
    want = np.einsum("ik,fckl,jl->ijfc", g, W.astype(np.float64), g).reshape(16, 3, 2)
    u = winograd.transform_filters(W)
    assert u.dtype == np.float32 and u.shape == (16, 3, 2)
    np.testing.assert_array_equal(u, want)
    dU = np.random.default_rng(6).integers(-8, 9, size=(16, 3, 2)).astype(np.float32)
    dW = winograd.filter_gradient(dU, 3, 2)
    assert dW.dtype == np.float32 and dW.shape == (3, 2, 3, 3) and dW.flags.c_contiguous
    np.testing.assert_array_equal(dW, np.einsum("ik,ijfc,jl->fckl", g, dU.reshape(4, 4, 3, 2).astype(np.float64), g))


def test_junk_tiles_get_zero_gradient():
    """The last tile of each tile row straddles two rows: its output is dropped, so its gradient
    must be exactly zero (else it would leak into the neighbouring row's input gradient)."""
    t = winograd.tiling((2, 3, 6, 6), (1, 1))
    dM = np.reshape(winograd.output_gradient(np.ones((2, 4, t.oh, t.ow)), t), (16, 4, t.n, t.th, t.t1))
    assert np.all(dM[..., -1] == 0) and np.any(dM[..., :-1] != 0)


def test_training_takes_it_inference_and_other_kernels_do_not():
    x, W, b, _, pad = _data(CASES[0])
    assert conv2d_forward(x, W, b, (1, 1), pad)[1].path == "winograd"
    assert conv2d_forward(x, W, b, (1, 1), pad, keep_cols=False)[1].path == "flat_rows"  # inference
    assert conv2d_forward(x[:, :1], W[:, :1], b, (1, 1), pad)[1].path == "generic"  # one input channel
    assert conv2d_forward(x, W[:, :, :2, :2], b, (1, 1), pad)[1].path == "flat_rows"  # 2x2
    assert conv2d_forward(x, W, b, (2, 2), pad)[1].path == "strided"  # stride 2
    layer = Convolution(W, b, pad=pad)
    with no_grad():
        layer.forward(x)
    assert layer._state is None and layer.algorithm is None and layer.winograd_tile is None
    layer.forward(x)
    assert layer.algorithm == "winograd" and layer.winograd_tile == 2  # a 6x6 output: F(2x2, 3x3)
    with no_grad():
        layer.forward(x)  # (the flat rows, keeping nothing)
    assert layer.algorithm == "winograd"  # the last forward with gradients, which backward uses


def test_a_batch_too_big_to_keep_its_patches_takes_the_direct_path(monkeypatch):
    import cnn_xp.functions.conv2d as conv2d

    x, W, b, dy, pad = _data(CASES[0])
    per_image = winograd.tile_elems(x.shape, pad) * 8
    monkeypatch.setattr(conv2d, "workspace_limit_bytes", per_image)  # one image's patches
    y, state = conv2d_forward(x, W, b, (1, 1), pad)
    assert state.path == "flat_rows"
    ref = _run(x, W, b, dy, pad)
    np.testing.assert_allclose(y, ref[0], rtol=1e-12, atol=1e-12)


def test_an_empty_batch():
    x, W, b, dy, pad = _data(CASES[0])
    y, dx, dW, db, path = _run(x[:0], W, b, dy[:0], pad)
    assert path == "winograd"
    assert y.shape == (0, 4, 6, 6) and dx.shape == (0, 3, 6, 6)
    np.testing.assert_array_equal(dW, np.zeros_like(W))
    np.testing.assert_array_equal(db, np.zeros_like(b))


def test_the_switch_turns_it_off_alone():
    with direct_convolution():
        assert not winograd_enabled()
    assert winograd_enabled()
    with generic_paths():
        assert not winograd_enabled()
    # (the environment variable: tests/functions/test_conv2d.py, beside CNN_XP_FAST_PATHS)


def test_combine_into_writes_in_place_and_accumulates(backend):
    a = backend.asarray(np.array([1.0, 2.0, 3.0]))
    b = backend.asarray(np.array([0.5, 0.25, 4.0]))
    out = backend.asarray(np.zeros(3))
    assert combine_into(out, a, b) is out
    backend.assert_matches(out, np.array([1.5, 2.25, 7.0]), "float64")
    combine_into(out, out, b, -1)  # out -= b, in place
    backend.assert_matches(out, np.array([1.0, 2.0, 3.0]), "float64")
    view = out[1:]
    combine_into(view, 0, b[1:], -1)  # a view of out: written through
    backend.assert_matches(out, np.array([1.0, -0.25, -4.0]), "float64")


def test_blocks_of_images_give_the_whole_batchs_results(monkeypatch, torch):
    """A shard worked through in blocks of images (conv2d._winograd_geometry) equals the batch done
    at once up to the rounding of dW's sum over blocks, and PyTorch's result in float64 (with
    the compiled transforms F(4x4, 3x3): groups of one image against one group of five)."""
    import cnn_xp.functions.conv2d as conv2d

    x, W, b, dy, pad = _data((5, 3, 4, 9, 7, (1, 1)))
    whole = _run(x, W, b, dy, pad)
    monkeypatch.setattr(conv2d, "winograd_block_tiles", 1)
    monkeypatch.setattr(conv2d, "winograd_block_bytes", 1)  # one image per block
    monkeypatch.setattr(conv2d, "winograd_group_images", 1)
    _, blocks = conv2d._winograd_geometry(x.shape, pad, False, 2, 8, conv2d.winograd_block_tiles, 1)
    assert len(blocks) == 5
    blocked = _run(x, W, b, dy, pad)
    assert blocked[-1] == "winograd"
    for got, want in zip(blocked[:4], whole[:4], strict=True):
        assert got.flags.c_contiguous
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    xt, Wt = torch.tensor(x, requires_grad=True), torch.tensor(W, requires_grad=True)
    torch.nn.functional.conv2d(xt, Wt, torch.tensor(b), padding=pad).backward(torch.tensor(dy))
    np.testing.assert_allclose(blocked[1], xt.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocked[2], Wt.grad.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("layer", "m", "images"),
    [
        ((16, 28), 2, 4),
        ((16, 14), 2, 18),
        ((32, 14), 2, 9),
        ((32, 8), 2, 25),
        ((64, 8), 2, 25),
        ((16, 28), 4, 16),
        ((16, 14), 4, 32),
        ((32, 14), 4, 32),
        ((32, 8), 4, 50),
        ((64, 8), 4, 50),
    ],
    ids=str,
)
def test_deepconvnets_shards_are_blocked_as_the_rule_says(layer, m, images):
    """The block sizes the rule gives DeepConvNet's layers (C, H) on a shard of 50 float32 images:
    about 1 MiB of patches, at least 500 tiles (F(2x2, 3x3)'s sizes measured in docs/benchmarks.md;
    F(4x4, 3x3)'s the same rule, counted by hand: 49, 16 and 4 compact tiles per image, then
    rounded up to a multiple of 8 images: 11 -> 16 on 28x28)."""
    import cnn_xp.functions.conv2d as conv2d

    c, h = layer
    t, views = conv2d._winograd_geometry((50, c, h, h), (1, 1), m == 4, m, 4, 500, 2**20, 8)
    assert (t.group == 0) if m == 2 else (min(t.group, 50) == images)  # F(4x4, 3x3): the blocks are its groups
    assert views[0][0] == slice(0, images) and views[-1][0].stop == 50
    assert all(b[0].start == a[0].stop for a, b in itertools.pairwise(views))
    per_image = t.th * t.row_tiles
    assert all(v[1] == slice(v[0].start * per_image, v[0].stop * per_image) for v in views)
