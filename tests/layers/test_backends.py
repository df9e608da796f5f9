"""Every layer gives NumPy's results on array_api_strict's fake device and (when present) CuPy."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    Dropout,
    Pooling,
    Relu,
    Sigmoid,
    SoftmaxWithLoss,
    no_grad,
)


def _cases(dtype, seed=0):
    rng = np.random.default_rng(seed)
    cast = lambda a: np.asarray(a, dtype=dtype)  # noqa: E731
    return {
        "conv": (
            lambda put: Convolution(
                put(cast(rng.standard_normal((4, 3, 3, 3)))), put(cast(rng.standard_normal(4))), stride=2, pad=1
            ),
            (2, 3, 8, 7),
        ),
        "maxpool": (lambda put: Pooling(3, 3, 2, 1), (2, 3, 8, 7)),
        "avgpool": (lambda put: AvgPooling(2, 2, 2), (2, 3, 8, 7)),
        "affine": (
            lambda put: Affine(put(cast(rng.standard_normal((12, 5)))), put(cast(rng.standard_normal(5)))),
            (4, 3, 2, 2),
        ),
        "relu": (lambda put: Relu(), (3, 4)),
        "sigmoid": (lambda put: Sigmoid(), (3, 4)),
        "bn2d": (
            lambda put: BatchNormalization(put(cast(rng.standard_normal(3))), put(cast(rng.standard_normal(3)))),
            (4, 3, 2, 2),
        ),
        "bn1d": (
            lambda put: BatchNormalization(put(cast(rng.standard_normal(4))), put(cast(rng.standard_normal(4)))),
            (5, 4),
        ),
    }


@pytest.mark.parametrize("name", list(_cases("float64")))
def test_layer_agrees_with_numpy(backend, float_dtype, name):
    make, shape = _cases(float_dtype)[name]
    ref_layer = make(lambda a: a)
    make, shape = _cases(float_dtype)[name]  # the same draws again, placed on the backend
    dev_layer = make(backend.asarray)
    x = np.random.default_rng(1).standard_normal(shape).astype(float_dtype)
    out_ref = ref_layer.forward(x)
    out_dev = dev_layer.forward(backend.asarray(x))
    backend.assert_matches(out_dev, out_ref, float_dtype)
    dout = np.random.default_rng(2).standard_normal(out_ref.shape).astype(float_dtype)
    backend.assert_matches(dev_layer.backward(backend.asarray(dout)), ref_layer.backward(dout), float_dtype)
    for p in ref_layer.param_names:
        backend.assert_matches(getattr(dev_layer, "d" + p), getattr(ref_layer, "d" + p), float_dtype)
    for b in ref_layer.buffer_names:
        backend.assert_matches(getattr(dev_layer, b), getattr(ref_layer, b), float_dtype)


@pytest.mark.parametrize("shape", [(4, 3, 2, 2), (5, 3)], ids=["2d", "1d"])
def test_batch_norm_in_eval_mode_agrees_with_numpy(backend, float_dtype, shape):
    """After a training step (running statistics updated), eval mode normalises with the running
    statistics: forward with and without no_grad (which keeps nothing), and backward."""
    rng = np.random.default_rng(5)
    gamma, beta = (rng.standard_normal(3).astype(float_dtype) for _ in range(2))
    x, x2, dout = (rng.standard_normal(shape).astype(float_dtype) for _ in range(3))
    ref, dev = BatchNormalization(gamma, beta), BatchNormalization(backend.asarray(gamma), backend.asarray(beta))
    ref.forward(x)
    dev.forward(backend.asarray(x))
    ref.eval(), dev.eval()
    with no_grad():
        backend.assert_matches(dev.forward(backend.asarray(x2)), ref.forward(x2), float_dtype)
    backend.assert_matches(dev.forward(backend.asarray(x2)), ref.forward(x2), float_dtype)
    backend.assert_matches(dev.backward(backend.asarray(dout)), ref.backward(dout), float_dtype)
    for b in ("running_mean", "running_var"):
        backend.assert_matches(getattr(dev, b), getattr(ref, b), float_dtype)
    assert not np.allclose(ref.running_mean, 0)  # the training step moved them


def test_softmax_with_loss_agrees(backend, float_dtype):
    x = np.random.default_rng(4).standard_normal((6, 5)).astype(float_dtype)
    t = np.array([0, 4, 2, 2, 1, 3])
    ref, dev = SoftmaxWithLoss(), SoftmaxWithLoss()
    backend.assert_matches(dev.forward(backend.asarray(x), backend.asarray(t)), ref.forward(x, t), float_dtype)
    backend.assert_matches(dev.backward(), ref.backward(), float_dtype)


def test_dropout_on_device_keeps_device_and_scales(backend):
    x = backend.asarray(np.ones((200, 50), dtype=np.float32))
    layer = Dropout(0.25, seed=0)
    out = backend.numpy(layer.forward(x, train_flg=True))
    assert out.dtype == np.float32
    kept = out != 0
    assert 0.70 < kept.mean() < 0.80  # 10,000 draws: 0.75 +- 0.0043 (1 sd)
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(
        backend.numpy(layer.backward(backend.asarray(np.ones((200, 50), np.float32)))) != 0, kept
    )
    np.testing.assert_array_equal(backend.numpy(layer.forward(x, train_flg=False)), np.ones((200, 50)))
