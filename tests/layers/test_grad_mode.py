"""``no_grad()``: same outputs, nothing kept for backward, per-context flag."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cnn_xp import Affine, AvgPooling, BatchNormalization, Convolution, DeepConvNet, Pooling, Relu, Sigmoid, no_grad
from cnn_xp.layers import grad_enabled

rng = np.random.default_rng(0)
LAYERS = {
    "conv": (lambda: Convolution(rng.standard_normal((4, 3, 3, 3)), np.zeros(4), pad=1), (2, 3, 6, 6)),
    "maxpool": (lambda: Pooling(2, 2, 2), (2, 3, 6, 6)),
    "avgpool": (lambda: AvgPooling(2, 2, 2), (2, 3, 6, 6)),
    "affine": (lambda: Affine(rng.standard_normal((12, 5)), np.zeros(5)), (4, 3, 2, 2)),
    "relu": (lambda: Relu(), (3, 4)),
    "sigmoid": (lambda: Sigmoid(), (3, 4)),
    "bn": (lambda: BatchNormalization(np.ones(3), np.zeros(3)), (4, 3, 2, 2)),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_no_grad_gives_the_same_output_and_refuses_backward(name):
    make, shape = LAYERS[name]
    layer = make()
    x = np.random.default_rng(1).standard_normal(shape)
    expected = layer.forward(x)
    dout = np.ones_like(expected)
    layer.backward(dout)  # works after a normal forward
    fresh = make()
    fresh.__dict__.update({k: v for k, v in layer.__dict__.items() if k in ("W", "b", "gamma", "beta")})
    with no_grad():
        assert not grad_enabled()
        # a 3x3 convolution trains by Winograd and infers by im2col: equal up to float64 rounding
        np.testing.assert_allclose(fresh.forward(x), expected, rtol=1e-12, atol=1e-12)
    assert grad_enabled()
    with pytest.raises(
        RuntimeError, match=r"backward\(\) called before forward\(\) \(or after a forward under no_grad"
    ):
        fresh.backward(dout)


def test_no_grad_is_restored_after_an_exception_and_is_per_thread():
    with pytest.raises(ZeroDivisionError), no_grad():
        1 / 0  # noqa: B018
    assert grad_enabled()
    seen = []
    with no_grad():
        t = threading.Thread(target=lambda: seen.append(grad_enabled()))
        t.start()
        t.join()
    assert seen == [True]


def test_accuracy_keeps_nothing_for_backward_and_leaves_a_cached_forward_alone():
    ref, net = DeepConvNet(seed=0), DeepConvNet(seed=0)  # same weights, same dropout draws
    x = np.random.default_rng(2).random((4, 1, 28, 28), dtype=np.float32)
    t = np.array([1, 2, 3, 4])
    ref.loss(x, t)
    grads = ref.backward()
    net.loss(x, t)
    net.accuracy(np.random.default_rng(3).random((6, 1, 28, 28), dtype=np.float32), np.zeros(6, int))
    again = net.backward()  # the accuracy call in between did not replace the cached forward
    for key in grads:
        np.testing.assert_array_equal(again[key], grads[key])
