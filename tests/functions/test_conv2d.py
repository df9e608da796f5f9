"""The convolution's fast paths (flat rows, stride 1; Winograd, 3x3 stride 1 on the CPU) against the
generic reference path and PyTorch, chunking, workspace reuse and ``no_grad``."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numpy as np
import pytest

import cnn_xp.functions.conv2d as conv2d
from cnn_xp import Convolution, no_grad
from cnn_xp.functions.conv2d import conv2d_backward, conv2d_forward
from cnn_xp.functions.fast_paths import (
    direct_convolution,
    fast_paths_enabled,
    generic_paths,
    small_winograd_tiles,
    winograd_enabled,
)
from cnn_xp.functions.workspace import Workspace

# (N, C, FN, H, W, KH, KW, pad): C < FN and C >= FN (the two input-gradient methods), asymmetric
# kernels and pads, pad > K - 1, 1x1 kernels, one image, a non-square image
CASES = [
    (3, 2, 4, 7, 6, 3, 3, (1, 1)),
    (2, 3, 5, 8, 8, 3, 2, (2, 0)),
    (4, 1, 3, 5, 9, 5, 5, (0, 0)),
    (2, 4, 2, 6, 6, 1, 1, (0, 0)),
    (2, 2, 2, 4, 4, 3, 3, (3, 3)),
    (5, 3, 4, 9, 7, 2, 3, (1, 2)),
    (1, 6, 3, 5, 5, 3, 3, (1, 1)),
    (3, 5, 5, 6, 11, 3, 3, (2, 1)),
]


def _data(case, dtype=np.float64, seed=0):
    n, c, fn, h, w, kh, kw, pad = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    W = rng.standard_normal((fn, c, kh, kw)).astype(dtype)
    b = rng.standard_normal(fn).astype(dtype)
    oh, ow = h + 2 * pad[0] - kh + 1, w + 2 * pad[1] - kw + 1
    dy = rng.standard_normal((n, fn, oh, ow)).astype(dtype)
    return x, W, b, dy, pad


def _run(x, W, b, dy, pad, workspace=None):
    y, state = conv2d_forward(x, W, b, (1, 1), pad, workspace=workspace)
    dx, dW, db = conv2d_backward(dy, W, state)
    return y, dx, dW, db, state


def _expected_path(case, winograd: bool) -> str:
    """The path a training step on the CPU takes (see conv2d._choose_path)."""
    c, kh, kw = case[1], case[5], case[6]
    if (kh, kw) == (1, 1) and tuple(case[7]) == (0, 0):
        return "pointwise"  # a matrix product per image
    if c == 1:
        return "generic"  # one input channel: per-image products
    return "winograd" if winograd and (kh, kw) == (3, 3) else "flat_rows"


PATHS = {"direct": direct_convolution, "winograd": contextlib.nullcontext}


@pytest.mark.parametrize("case", CASES, ids=str)
@pytest.mark.parametrize("mode", PATHS)
def test_fast_path_matches_generic_path(case, mode):
    x, W, b, dy, pad = _data(case)
    with PATHS[mode]():
        assert winograd_enabled() == (mode == "winograd")
        fast = _run(x, W, b, dy, pad)
    assert fast[-1].path == _expected_path(case, mode == "winograd")  # the fast path really ran
    with generic_paths():
        assert not fast_paths_enabled() and not winograd_enabled()
        ref = _run(x, W, b, dy, pad)
    assert ref[-1].path == "generic"
    for got, want in zip(fast[:4], ref[:4], strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert fast[0].flags.c_contiguous and fast[1].flags.c_contiguous and fast[2].flags.c_contiguous


@pytest.mark.parametrize("case", CASES[:3] + CASES[5:], ids=str)
@pytest.mark.parametrize("mode", ["winograd", "direct", "generic"])
def test_every_path_matches_torch(torch, case, mode):
    x, W, b, dy, pad = _data(case)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    yt = torch.nn.functional.conv2d(xt, Wt, bt, padding=pad)
    yt.backward(torch.tensor(dy))
    with generic_paths() if mode == "generic" else PATHS[mode]():
        y, dx, dW, db, state = _run(x, W, b, dy, pad)
    assert state.path == ("generic" if mode == "generic" else _expected_path(case, mode == "winograd"))
    for got, want in ((y, yt), (dx, xt.grad), (dW, Wt.grad), (db, bt.grad)):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("case", CASES[:2] + CASES[5:6], ids=str)
@pytest.mark.parametrize("generic", [False, True], ids=["fast", "generic"])
def test_chunked_batches_give_the_same_result(monkeypatch, case, generic):
    x, W, b, dy, pad = _data(case)
    with generic_paths() if generic else contextlib.nullcontext():
        whole = _run(x, W, b, dy, pad)
        monkeypatch.setattr(conv2d, "workspace_limit_bytes", 1)  # too big to keep...
        monkeypatch.setattr(conv2d, "chunk_bytes", 1)  # ...and one image per chunk
        chunked = _run(x, W, b, dy, pad)
    assert chunked[-1].chunk == 1 and whole[-1].chunk == x.shape[0]
    for got, want in zip(chunked[:4], whole[:4], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("switch", [contextlib.nullcontext, small_winograd_tiles, direct_convolution])
def test_workspace_is_reused_between_steps_and_results_stay_right(switch):
    """Each path's kept columns (F(2x2, 3x3)'s V, the flat rows) live in one buffer, step after
    step; F(4x4, 3x3) keeps none (each block's patches are made where they are used)."""
    x, W, b, dy, pad = _data(CASES[0], np.float32)
    with switch():
        layer = Convolution(W, b, pad=pad)
        first = layer.forward(x)
        buf = layer._workspace._buf
        keeps = layer.winograd_tile != 4
        assert (buf is not None) == keeps, (layer.algorithm, layer.winograd_tile)
        dx1 = layer.backward(dy)
        x2 = x[::-1].copy()
        second = layer.forward(x2)
        assert layer._workspace._buf is buf  # no new allocation for the same shapes
        dx2 = layer.backward(dy)
        ref = Convolution(W, b, pad=pad)
        np.testing.assert_array_equal(second, ref.forward(x2))
        np.testing.assert_array_equal(dx2, ref.backward(dy))
    assert not np.array_equal(first, second) and np.array_equal(dx1, dx2)  # dx depends on W only


def test_backward_twice_recomputes_the_spent_columns():
    x, W, b, dy, pad = _data(CASES[1])
    layer = Convolution(W, b, pad=pad)
    layer.forward(x)
    dx1, dW1 = layer.backward(dy), layer.dW.copy()
    dx2, dW2 = layer.backward(dy), layer.dW.copy()
    np.testing.assert_array_equal(dx1, dx2)
    np.testing.assert_array_equal(dW1, dW2)


def test_workspace_follows_dtype_and_keeps_its_buffer_while_it_fits():
    ws = Workspace()
    a = ws.take((2, 3), like=np.zeros(1, np.float32))
    assert a.shape == (2, 3) and a.dtype == np.float32 and ws.capacity(np.zeros(1, np.float32)) == 6
    buf = ws._buf
    ws.take((5,), like=np.zeros(1, np.float32))
    assert ws._buf is buf
    c = ws.take((2, 2), like=np.zeros(1, np.float64))
    assert c.dtype == np.float64 and ws.capacity(np.zeros(1, np.float32)) == 0
    ws.take((3, 3), like=np.zeros(1, np.float64))
    assert ws.capacity(np.zeros(1, np.float64)) == 9
    ws.release()
    assert ws.capacity(np.zeros(1, np.float64)) == 0


@pytest.fixture
def flat_rows():
    """The direct path for every 3x3 convolution (with the compiled kernels inference may take
    Winograd F(4x4, 3x3): tests/functions/test_winograd4.py)."""
    with direct_convolution():
        yield


def test_inference_without_grad_keeps_nothing_and_bounds_the_columns(monkeypatch, flat_rows):
    x, W, b, dy, pad = _data(CASES[0], np.float32)
    layer = Convolution(W, b, pad=pad)
    expected = layer.forward(x)
    fresh = Convolution(W, b, pad=pad)
    per_image = conv2d._FlatRows.col_elems(x.shape, W.shape, (1, 1), pad) * 4
    monkeypatch.setattr(conv2d, "chunk_bytes", 2 * per_image)
    with no_grad():
        y = fresh.forward(x)
    np.testing.assert_array_equal(y, expected)
    assert fresh._state is None and fresh._workspace.capacity(x) == 0  # nothing kept, nothing grown
    _, state = conv2d_forward(x, W, b, (1, 1), pad, keep_cols=False)
    assert state.path == "flat_rows" and state.chunk == 2 and state.cols is None
    with pytest.raises(
        RuntimeError, match=r"Convolution.backward\(\) called before forward\(\) \(or after a forward under no_grad"
    ):
        fresh.backward(dy)
    # under no_grad a trained layer's workspace is left alone (threads may share the layer)
    buf = layer._workspace._buf
    snapshot = buf.copy()
    with no_grad():
        np.testing.assert_array_equal(layer.forward(np.concatenate([x] * 5)), np.concatenate([expected] * 5))
    assert layer._workspace._buf is buf
    np.testing.assert_array_equal(buf, snapshot)


@pytest.mark.slow
def test_concurrent_no_grad_forwards_through_one_network_agree_with_sequential_ones():
    from concurrent.futures import ThreadPoolExecutor

    from cnn_xp import DeepConvNet
    from cnn_xp.threads import get_num_threads

    threads = get_num_threads()
    net = DeepConvNet(seed=0).eval()
    rng = np.random.default_rng(5)
    batches = [rng.random((n, 1, 28, 28), dtype=np.float32) for n in (7, 30, 13, 64, 1, 40, 22, 9)]
    net.gradient(batches[1], np.zeros(30, int))  # a training step first: the layers hold workspaces
    with no_grad():
        expected = [net.predict(b) for b in batches]

    def run(b):
        with no_grad():  # the flag is per thread, as in PyTorch
            return net.predict(b)

    # Shared scratch memory would give wrong scores; rounding may differ in the last bits, since
    # the BLAS library has one thread count for the whole process and the threads that split a
    # batch set it to 1 while the others run (OpenBLAS rounds differently with 1 and 2 threads)
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            for got, want in zip(pool.map(run, batches), expected, strict=True):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert get_num_threads() == threads  # the concurrent passes left the thread count as it was


@pytest.mark.parametrize(
    "variable, expected",
    [("CNN_XP_FAST_PATHS", {"0": "False False", "1": "True True"}),  # all fast paths (Winograd too)
     ("CNN_XP_WINOGRAD", {"0": "True False", "1": "True True"})],  # Winograd alone
)  # fmt: skip
def test_the_switches_can_be_set_from_the_environment(variable, expected):
    code = "from cnn_xp.functions.fast_paths import fast_paths_enabled as f, winograd_enabled as w; print(f(), w())"
    for value, want in expected.items():
        out = subprocess.run(
            [sys.executable, "-c", code], env={**os.environ, variable: value},
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert out.stdout.strip() == want


@pytest.mark.parametrize("case", [CASES[0], CASES[1]], ids=str)
def test_fast_path_on_every_backend_matches_numpy(backend, float_dtype, case):
    """array_api_strict's fake device (same kernels: bit-identical) and CuPy on a real GPU."""
    x, W, b, dy, pad = _data(case, float_dtype)
    put, ws = backend.asarray, Workspace()
    for _ in range(2):  # the second step reuses the workspace
        y, state = conv2d_forward(put(x), put(W), put(b), (1, 1), pad, workspace=ws)
        got = (y, *conv2d_backward(put(dy), put(W), state))
    assert state.path == ("flat_rows" if backend.name == "cupy" else _expected_path(case, True))  # a GPU: no Winograd
    for g, want in zip(got, _run(x, W, b, dy, pad)[:4], strict=True):
        backend.assert_matches(g, want, float_dtype)


def test_a_batch_too_big_for_the_workspace_keeps_no_columns_and_backward_recomputes_them(monkeypatch):
    x, W, b, dy, pad = _data(CASES[5])
    ref = Convolution(W, b, pad=pad)
    y_ref, dx_ref = ref.forward(x), ref.backward(dy)
    per_image = conv2d._FlatRows.col_elems(x.shape, W.shape, (1, 1), pad) * 8
    monkeypatch.setattr(conv2d, "workspace_limit_bytes", 2 * per_image)  # 5 images do not fit
    monkeypatch.setattr(conv2d, "chunk_bytes", 2 * per_image)  # chunks of 2
    layer = Convolution(W, b, pad=pad)
    np.testing.assert_allclose(layer.forward(x), y_ref, rtol=1e-12, atol=1e-12)
    assert layer._state.cols is None and layer._state.chunk == 2
    assert layer._workspace.capacity(x) == 0  # the chunks ran in a temporary buffer
    np.testing.assert_allclose(layer.backward(dy), dx_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.dW, ref.dW, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.db, ref.db, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", [CASES[0], CASES[6]], ids=str)
def test_skipping_the_input_gradient_leaves_the_parameter_gradients_unchanged(case):
    x, W, b, dy, pad = _data(case)
    full = Convolution(W, b, pad=pad)
    full.forward(x)
    full.backward(dy)
    lean = Convolution(W, b, pad=pad)
    lean.forward(x)
    assert lean.backward(dy, need_dx=False) is None
    np.testing.assert_array_equal(lean.dW, full.dW)
    np.testing.assert_array_equal(lean.db, full.db)


def test_network_backward_skips_the_first_layers_input_gradient_only(monkeypatch):
    from cnn_xp import SimpleConvNet

    net = SimpleConvNet(seed=0, dtype="float64")
    calls = []
    for name, layer in net.layers.items():
        orig = layer.backward

        def spy(dout, *args, _orig=orig, _name=name, **kwargs):
            calls.append((_name, args, kwargs))
            return _orig(dout, *args, **kwargs)

        monkeypatch.setattr(layer, "backward", spy)
    x = np.random.default_rng(0).random((3, 1, 28, 28))
    net.loss(x, np.array([1, 2, 3]))
    net.backward()
    assert calls[-1] == ("Conv1", (), {"need_dx": False})
    assert all(c[1:] == ((), {}) for c in calls[:-1])


def test_the_built_in_networks_take_the_fast_path_and_agree_with_the_generic_one():
    from cnn_xp import DeepConvNet

    x = np.random.default_rng(0).random((4, 1, 28, 28))
    t = np.array([0, 1, 2, 3])
    net = DeepConvNet(seed=0, dtype="float64", dropout_ratio=0.0)
    fast = net.gradient(x, t)
    convs = [layer for layer in net.layers.values() if isinstance(layer, Convolution)]
    assert len(convs) == 6 and all(layer._state.path == "winograd" for layer in convs[1:])
    assert convs[0]._state.path == "generic"  # one input channel: per-image products (see conv2d_forward)
    with direct_convolution():
        direct = net.gradient(x, t)
    assert all(layer._state.path == "flat_rows" for layer in convs[1:])
    with generic_paths():
        ref = net.gradient(x, t)
    assert all(layer._state.path == "generic" for layer in convs)
    for key in ref:
        np.testing.assert_allclose(direct[key], ref[key], rtol=1e-10, atol=1e-12)
    for key in ref:
        np.testing.assert_allclose(fast[key], ref[key], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("generic", [False, True], ids=["fast", "generic"])
def test_an_empty_batch_gives_empty_outputs_and_zero_gradients(generic):
    W, b = np.ones((2, 1, 3, 3)), np.zeros(2)
    with generic_paths() if generic else contextlib.nullcontext():
        layer = Convolution(W, b, pad=1)
        y = layer.forward(np.zeros((0, 1, 4, 4)))
        dx = layer.backward(np.zeros((0, 2, 4, 4)))
    assert y.shape == (0, 2, 4, 4) and dx.shape == (0, 1, 4, 4)
    np.testing.assert_array_equal(layer.dW, np.zeros_like(W))
    np.testing.assert_array_equal(layer.db, np.zeros(2))


# (N, C, FN, H, W, K, stride, pad): the residual networks' 1x1 shortcuts (stride 1 and 2) and
# 3x3 stride-2 convolutions, odd sizes (a dropped last row and column), a wider stride and kernel
STRIDED_CASES = [
    (3, 4, 6, 9, 8, 1, 1, 0),
    (3, 4, 6, 9, 8, 1, 2, 0),
    (3, 5, 7, 9, 10, 3, 2, 1),
    (2, 3, 4, 8, 8, 3, 2, 0),
    (2, 2, 3, 7, 7, 5, 3, 2),
]


def _strided_data(case, dtype="float64"):
    n, c, fn, h, w, k, s, p = case
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((fn, c, k, k)), rng.standard_normal(fn)
    oh, ow = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    return [a.astype(dtype) for a in (x, W, b, rng.standard_normal((n, fn, oh, ow)))] + [(s, s), (p, p)]


@pytest.mark.parametrize("case", STRIDED_CASES, ids=str)
def test_pointwise_and_strided_paths_match_the_generic_path(case):
    x, W, b, dy, stride, pad = _strided_data(case)
    y, state = conv2d_forward(x, W, b, stride, pad)
    got = (y, *conv2d_backward(dy, W, state))
    assert state.path == ("pointwise" if case[5] == 1 else "strided")
    with generic_paths():
        y2, state2 = conv2d_forward(x, W, b, stride, pad)
        want = (y2, *conv2d_backward(dy, W, state2))
    assert state2.path == "generic"
    for g, r in zip(got, want, strict=True):
        assert g.shape == r.shape and g.dtype == r.dtype
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", STRIDED_CASES[1:3], ids=str)
def test_pointwise_and_strided_paths_on_every_backend(backend, float_dtype, case):
    x, W, b, dy, stride, pad = _strided_data(case, float_dtype)
    put = backend.asarray
    y, state = conv2d_forward(put(x), put(W), put(b), stride, pad, workspace=Workspace())
    got = (y, *conv2d_backward(put(dy), put(W), state))
    y_ref, state_ref = conv2d_forward(x, W, b, stride, pad)
    for g, want in zip(got, (y_ref, *conv2d_backward(dy, W, state_ref)), strict=True):
        backend.assert_matches(g, want, float_dtype)


@pytest.mark.parametrize("path", ["strided", "pointwise", "generic"])
def test_an_input_whose_reshape_is_a_strided_view_gives_the_right_result(torch, path):
    """A (1, 1, 2, 1) slice of a wider array flattens to a 1-D view with a stride of two
    elements; columns taken from it as if it were contiguous read the wrong elements."""
    rng = np.random.default_rng(0)
    wide = rng.standard_normal((2, 3, 6, 2))
    x = wide[:1, :1, ::3, ::2]  # (1, 1, 2, 1): every stride a multiple of the element size
    k, stride = ((2, 1), 2) if path == "strided" else ((1, 1), 2) if path == "pointwise" else ((2, 1), 1)
    W, b = rng.standard_normal((1, 1, *k)), rng.standard_normal(1)
    y, state = conv2d_forward(x, W, b, (stride, stride), (0, 0))
    assert state.path == path
    want = torch.nn.functional.conv2d(torch.tensor(x.copy()), torch.tensor(W), torch.tensor(b), stride=stride)
    np.testing.assert_allclose(y, want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("case", CASES[:4], ids=str)
def test_need_db_false_skips_the_bias_gradient_only(case):
    """A convolution without a bias asks for no db (a pass over dy saved); dx and dW are the
    same bits as with it."""
    x, W, _b, dy, pad = _data(case)
    _y, state = conv2d_forward(x, W, None, (1, 1), pad)
    dx, dW, db = conv2d_backward(dy, W, state, need_db=False)
    assert db is None
    _y2, state2 = conv2d_forward(x, W, None, (1, 1), pad)
    dx2, dW2, db2 = conv2d_backward(dy, W, state2)
    np.testing.assert_array_equal(dx, dx2)
    np.testing.assert_array_equal(dW, dW2)
    np.testing.assert_allclose(db2, dy.sum(axis=(0, 2, 3)), rtol=1e-12)
