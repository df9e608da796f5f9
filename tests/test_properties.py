"""Property tests (hypothesis): im2col/col2im, layers against PyTorch, optimizers against formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cnn_xp import (
    SGD,
    AdaGrad,
    Adam,
    Affine,
    AvgPooling,
    Convolution,
    Momentum,
    Nesterov,
    Pooling,
    RMSprop,
    col2im,
    im2col,
)

from .functions.test_im2col import naive_im2col
from .optim.test_optimizers import reference

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

window = st.fixed_dictionaries(
    {
        "n": st.integers(1, 3),
        "c": st.integers(1, 3),
        "h": st.integers(1, 9),
        "w": st.integers(1, 9),
        "kh": st.integers(1, 4),
        "kw": st.integers(1, 4),
        "stride": st.integers(1, 3),
        "pad": st.integers(0, 2),
        "seed": st.integers(0, 2**32 - 1),
    }
)


def fits(p):
    return p["kh"] <= p["h"] + 2 * p["pad"] and p["kw"] <= p["w"] + 2 * p["pad"]


@SETTINGS
@given(window)
def test_im2col_col2im_adjoint_and_naive(p):
    assume(fits(p))
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["n"], p["c"], p["h"], p["w"]))
    col = im2col(x, p["kh"], p["kw"], p["stride"], p["pad"])
    np.testing.assert_array_equal(col, naive_im2col(x, p["kh"], p["kw"], p["stride"], p["pad"]))
    y = rng.standard_normal(col.shape)
    back = col2im(y, x.shape, p["kh"], p["kw"], p["stride"], p["pad"])
    lhs, rhs = float(np.sum(col * y)), float(np.sum(x * back))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs), float(np.sum(np.abs(col * y))))
    # col2im against a naive scatter-add, too
    n, c, h, w = x.shape
    pad, s = p["pad"], p["stride"]
    oh, ow = (h + 2 * pad - p["kh"]) // s + 1, (w + 2 * pad - p["kw"]) // s + 1
    img = np.zeros((n, c, h + 2 * pad, w + 2 * pad))
    rows = y.reshape(n, oh, ow, c, p["kh"], p["kw"])
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                img[b, :, i * s : i * s + p["kh"], j * s : j * s + p["kw"]] += rows[b, i, j]
    np.testing.assert_allclose(back, img[:, :, pad : pad + h, pad : pad + w], rtol=1e-12, atol=1e-12)


def non_contiguous(x):
    """The same values as ``x`` in a strided, non-contiguous view."""
    wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
    wide[..., ::2] = x
    view = wide[..., ::2]
    assert view.shape[-1] == 1 or not view.flags.c_contiguous
    return view


def close(ours, theirs):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-11, atol=1e-11)


@SETTINGS
@given(window, st.integers(1, 4), st.booleans())
def test_convolution_matches_torch(torch, p, fn, strided):
    F = torch.nn.functional
    assume(fits(p))
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["n"], p["c"], p["h"], p["w"]))
    W, b = rng.standard_normal((fn, p["c"], p["kh"], p["kw"])), rng.standard_normal(fn)
    layer = Convolution(W, b, stride=p["stride"], pad=p["pad"])
    out = layer.forward(non_contiguous(x) if strided else x)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    tout = F.conv2d(tx, tW, tb, stride=p["stride"], padding=p["pad"])
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(non_contiguous(dout) if strided else dout), tx.grad)
    close(layer.dW, tW.grad)
    close(layer.db, tb.grad)


@SETTINGS
@given(window, st.sampled_from(["max", "avg"]), st.booleans())
def test_pooling_matches_torch(torch, p, kind, strided):
    F = torch.nn.functional
    assume(fits(p) and p["pad"] <= p["kh"] // 2 and p["pad"] <= p["kw"] // 2)
    rng = np.random.default_rng(p["seed"])
    x = rng.standard_normal((p["n"], p["c"], p["h"], p["w"]))
    layer = (Pooling if kind == "max" else AvgPooling)(p["kh"], p["kw"], p["stride"], p["pad"])
    out = layer.forward(non_contiguous(x) if strided else x)
    tx = torch.tensor(x, requires_grad=True)
    k, s, pad = (p["kh"], p["kw"]), p["stride"], p["pad"]
    tout = F.max_pool2d(tx, k, s, pad) if kind == "max" else F.avg_pool2d(tx, k, s, pad, count_include_pad=True)
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(dout), tx.grad)


@SETTINGS
@given(st.integers(1, 5), st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**32 - 1), st.booleans())
def test_affine_matches_torch(torch, n, d_in, d_out, seed, strided):
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x, W, b = rng.standard_normal((n, d_in)), rng.standard_normal((d_in, d_out)), rng.standard_normal(d_out)
    layer = Affine(W, b)
    out = layer.forward(non_contiguous(x) if strided else x)
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    tout = F.linear(tx, tW.T, tb)
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(dout), tx.grad)
    close(layer.dW, tW.grad)


OPTIMIZERS = {
    "SGD": (SGD, {"lr": 0.1}),
    "Momentum": (Momentum, {"lr": 0.05, "momentum": 0.9}),
    "Nesterov": (Nesterov, {"lr": 0.05, "momentum": 0.8}),
    "AdaGrad": (AdaGrad, {"lr": 0.1}),
    "RMSprop": (RMSprop, {"lr": 0.01, "decay_rate": 0.9}),
    "Adam": (Adam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}),
}


@settings(max_examples=25, deadline=None)
@given(
    st.sampled_from(sorted(OPTIMIZERS)),
    st.sampled_from(["float32", "float64"]),
    st.lists(st.integers(1, 5), min_size=1, max_size=3),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_one_optimizer_step_matches_formula_and_keeps_device_and_dtype(name, dtype, shape, seed, strict):
    cls, hyper = OPTIMIZERS[name]
    rng = np.random.default_rng(seed)
    params = {"W": rng.standard_normal(shape).astype(dtype)}
    grads = {"W": rng.standard_normal(shape).astype(dtype)}
    expected = reference(name, hyper, params, [grads])["W"]
    if strict:
        xps = pytest.importorskip("array_api_strict")
        dev = xps.Device("device1")
        on = {"W": xps.asarray(params["W"], device=dev)}
        cls(**hyper).update(on, {"W": xps.asarray(grads["W"], device=dev)})
        assert on["W"].device == dev
        got = np.asarray(on["W"].to_device(xps.Device("CPU_DEVICE")))
    else:
        on = {"W": params["W"].copy()}
        cls(**hyper).update(on, grads)
        got = on["W"]
    assert got.dtype == np.dtype(dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(got, expected, rtol=tol, atol=tol)
