"""Finite-difference gradient checks in float64 for every layer (tolerance: helpers.GRAD_RTOL)."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Affine, AvgPooling, BatchNormalization, Convolution, Dropout, Pooling, Relu, Sigmoid, SoftmaxWithLoss

from ..helpers import GRAD_RTOL, numeric_grad, rel_error

rng = np.random.default_rng(1234)


def check_layer(layer, x, forward=None):
    """Check d(sum(out * R))/d(input) and /d(each parameter) against central differences."""
    forward = forward or layer.forward
    out = forward(x)
    R = rng.standard_normal(out.shape)

    def f():
        return float(np.sum(forward(x) * R))

    forward(x)
    dx = layer.backward(R)
    analytic = {"x": dx, **{name: getattr(layer, "d" + name) for name in layer.param_names}}
    arrays = {"x": x, **{name: getattr(layer, name) for name in layer.param_names}}
    for name, arr in arrays.items():
        err = rel_error(analytic[name], numeric_grad(f, arr))
        assert err < GRAD_RTOL, f"{type(layer).__name__} d{name}: relative error {err:.2e}"


@pytest.mark.parametrize(("stride", "pad"), [(1, 0), (2, 1), (3, 2), ((2, 1), (0, 1))])
def test_convolution(stride, pad):
    layer = Convolution(rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3), stride=stride, pad=pad)
    check_layer(layer, rng.standard_normal((2, 2, 7, 6)))


@pytest.mark.parametrize(("k", "stride", "pad"), [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_max_pooling(k, stride, pad):
    check_layer(Pooling(k, k, stride, pad), rng.standard_normal((2, 3, 6, 7)))


@pytest.mark.parametrize(("k", "stride", "pad"), [(2, 2, 0), (3, 1, 1), (3, 2, 1)])
def test_avg_pooling(k, stride, pad):
    check_layer(AvgPooling(k, k, stride, pad), rng.standard_normal((2, 3, 6, 7)))


def test_affine_with_4d_input():
    check_layer(Affine(rng.standard_normal((2 * 3 * 3, 4)), rng.standard_normal(4)), rng.standard_normal((5, 2, 3, 3)))


def test_relu():
    x = rng.standard_normal((4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    check_layer(Relu(), x)


def test_sigmoid():
    check_layer(Sigmoid(), 3 * rng.standard_normal((4, 5)))


@pytest.mark.parametrize("shape", [(6, 4), (4, 3, 3, 2)])
@pytest.mark.parametrize("train", [True, False])
def test_batch_normalization(shape, train):
    c = shape[1]
    bn = BatchNormalization(
        rng.standard_normal(c),
        rng.standard_normal(c),
        running_mean=rng.standard_normal(c),
        running_var=rng.uniform(0.5, 2, c),
    )
    check_layer(bn, rng.standard_normal(shape), forward=lambda x: bn.forward(x, train_flg=train))


def test_dropout_with_a_fixed_mask():
    layer = Dropout(0.3, seed=0)
    state = layer.rng.get_state()

    def forward(x):
        layer.rng.set_state(state)  # the same mask for every evaluation
        return layer.forward(x, train_flg=True)

    check_layer(layer, rng.standard_normal((4, 6)), forward=forward)


@pytest.mark.parametrize("one_hot", [False, True])
def test_softmax_with_loss(one_hot):
    x = rng.standard_normal((5, 4))
    labels = rng.integers(0, 4, 5)
    t = np.eye(4)[labels] if one_hot else labels
    layer = SoftmaxWithLoss()

    def f():
        return float(layer.forward(x, t))

    f()
    err = rel_error(layer.backward(), numeric_grad(f, x))
    assert err < GRAD_RTOL, err
