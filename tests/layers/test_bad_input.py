"""Bad input to layers: each raises ValueError/TypeError (RuntimeError for misuse of state)
whose message names the argument, what was seen and what was expected; nothing is changed."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Affine, AvgPooling, BatchNormalization, Convolution, Dropout, Pooling, Relu, Sigmoid, SoftmaxWithLoss


def conv(**kw):
    return Convolution(np.zeros((4, 3, 3, 3)), np.zeros(4), **kw)


CASES = [
    (
        "conv x wrong rank",
        lambda: conv().forward(np.zeros((3, 8, 8))),
        ValueError,
        ["x", "4-D", "(N, C, H, W)", "(3, 8, 8)"],
    ),
    (
        "conv channel mismatch",
        lambda: conv().forward(np.zeros((1, 2, 8, 8))),
        ValueError,
        ["x", "3 input channels", "(1, 2, 8, 8)"],
    ),
    (
        "conv window larger than padded input",
        lambda: conv().forward(np.zeros((1, 3, 2, 2))),
        ValueError,
        ["x", "larger than the padded input", "(2, 2)"],
    ),
    ("conv stride 0", lambda: conv(stride=0), ValueError, ["stride", ">= 1", "0"]),
    ("conv negative stride", lambda: conv(stride=-2), ValueError, ["stride", "-2"]),
    ("conv negative pad", lambda: conv(pad=-1), ValueError, ["pad", ">= 0", "-1"]),
    (
        "conv bias wrong size",
        lambda: Convolution(np.zeros((4, 3, 3, 3)), np.zeros(3)),
        ValueError,
        ["b", "(4,)", "(3,)"],
    ),
    ("conv W wrong rank", lambda: Convolution(np.zeros((4, 3, 3)), np.zeros(4)), ValueError, ["W", "4-D", "(4, 3, 3)"]),
    ("affine bias wrong size", lambda: Affine(np.zeros((5, 3)), np.zeros(5)), ValueError, ["b", "(3,)", "(5,)"]),
    (
        "affine feature mismatch",
        lambda: Affine(np.zeros((5, 3)), np.zeros(3)).forward(np.zeros((2, 4))),
        ValueError,
        ["x", "5 features", "(2, 4)"],
    ),
    (
        "affine 1-D input",
        lambda: Affine(np.zeros((5, 3)), np.zeros(3)).forward(np.zeros(5)),
        ValueError,
        ["x", "at least 2", "(5,)"],
    ),
    (
        "pool window too large",
        lambda: Pooling(3, 3, 1).forward(np.zeros((1, 1, 2, 2))),
        ValueError,
        ["x", "larger than the padded input"],
    ),
    ("pool stride 0", lambda: Pooling(2, 2, stride=0), ValueError, ["stride", "0"]),
    ("pool size 0", lambda: AvgPooling(0, 2), ValueError, ["pool_h", ">= 1", "0"]),
    ("pool pad too large", lambda: Pooling(2, 2, 2, pad=2), ValueError, ["pad", "half the pool size", "2"]),
    ("pool wrong rank", lambda: Pooling(2, 2, 2).forward(np.zeros((4, 4))), ValueError, ["x", "4-D", "(4, 4)"]),
    (
        "labels out of range",
        lambda: SoftmaxWithLoss().forward(np.zeros((3, 4)), np.array([0, 4, 1])),
        ValueError,
        ["t", "[0, 4)", "[0, 4]"],
    ),
    (
        "negative labels",
        lambda: SoftmaxWithLoss().forward(np.zeros((3, 4)), np.array([0, -1, 1])),
        ValueError,
        ["t", "[-1, 1]"],
    ),
    (
        "labels wrong batch size",
        lambda: SoftmaxWithLoss().forward(np.zeros((3, 4)), np.array([0, 1])),
        ValueError,
        ["t", "3 labels", "(2,)"],
    ),
    (
        "float labels",
        lambda: SoftmaxWithLoss().forward(np.zeros((3, 4)), np.array([0.0, 1.0, 2.0])),
        TypeError,
        ["t", "integer dtype", "float64"],
    ),
    (
        "one-hot wrong shape",
        lambda: SoftmaxWithLoss().forward(np.zeros((3, 4)), np.zeros((3, 5))),
        ValueError,
        ["t", "(3, 4)", "(3, 5)"],
    ),
    (
        "empty batch",
        lambda: SoftmaxWithLoss().forward(np.zeros((0, 4)), np.zeros(0, dtype=int)),
        ValueError,
        ["x", "empty batch"],
    ),
    ("dropout ratio 1", lambda: Dropout(1.0), ValueError, ["dropout_ratio", "[0, 1)", "1.0"]),
    (
        "bn gamma per element",
        lambda: BatchNormalization(np.ones(12), np.zeros(12)).forward(np.zeros((2, 3, 2, 2))),
        ValueError,
        ["x", "12 channels", "per channel"],
    ),
    ("bn beta mismatch", lambda: BatchNormalization(np.ones(3), np.zeros(4)), ValueError, ["beta", "(3,)", "(4,)"]),
    (
        "bn one value per channel",
        lambda: BatchNormalization(np.ones(3), np.zeros(3)).forward(np.zeros((1, 3)), train_flg=True),
        ValueError,
        ["x", "more than 1 value per channel"],
    ),
    (
        "conv dout wrong shape",
        lambda: _run(conv(), np.zeros((1, 3, 5, 5)), np.zeros((1, 4, 2, 2))),
        ValueError,
        ["dout", "(1, 4, 3, 3)", "(1, 4, 2, 2)"],
    ),
]


def _run(layer, x, dout):
    layer.forward(x)
    return layer.backward(dout)


@pytest.mark.parametrize(("name", "call", "exc", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, call, exc, words):
    with pytest.raises(exc) as info:
        call()
    for word in words:
        assert word in str(info.value), f"{word!r} not in {info.value}"


@pytest.mark.parametrize(
    "layer",
    [
        conv(),
        Pooling(2, 2, 2),
        AvgPooling(2, 2),
        Affine(np.zeros((4, 2)), np.zeros(2)),
        Relu(),
        Sigmoid(),
        SoftmaxWithLoss(),
        Dropout(),
        BatchNormalization(np.ones(3), np.zeros(3)),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_backward_before_forward_is_runtime_error(layer):
    with pytest.raises(RuntimeError, match=rf"{type(layer).__name__}.backward\(\) called before forward\(\)"):
        layer.backward(np.ones((1, 1)))


def test_bad_forward_changes_nothing():
    layer = conv()
    W, b = layer.W.copy(), layer.b.copy()
    layer.forward(np.ones((1, 3, 4, 4)))
    state = layer._state
    with pytest.raises(ValueError):
        layer.forward(np.zeros((1, 2, 4, 4)))
    assert layer._state is state  # the cache of the last good forward is intact
    np.testing.assert_array_equal(layer.W, W)
    np.testing.assert_array_equal(layer.b, b)


def test_mixed_devices_are_refused():
    xps = pytest.importorskip("array_api_strict")
    layer = conv()  # NumPy parameters
    x = xps.asarray(np.zeros((1, 3, 5, 5)), device=xps.Device("device1"))
    with pytest.raises(ValueError, match=r"x: array of type .* cannot be mixed"):
        layer.forward(x)
    dev = xps.Device("device1")
    layer2 = Convolution(xps.asarray(np.zeros((4, 3, 3, 3)), device=dev), xps.asarray(np.zeros(4), device=dev))
    with pytest.raises(ValueError, match=r"x: is on device .* but the layer's parameters are on"):
        layer2.forward(xps.asarray(np.zeros((1, 3, 5, 5))))


def test_a_convolution_whose_public_state_changed_is_refused_before_its_kernels_run():
    """W replaced between forward and backward, or a bias shorter than the filters: the Winograd
    kernels would have read past their arrays; each is one ValueError naming the array."""
    from cnn_xp import Convolution

    rng = np.random.default_rng(0)
    layer = Convolution(rng.standard_normal((8, 4, 3, 3)).astype(np.float32), np.zeros(8, np.float32), pad=1)
    x = rng.standard_normal((2, 4, 8, 8)).astype(np.float32)
    y = layer.forward(x)
    layer.W = rng.standard_normal((16, 4, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=r"W: has shape \(16, 4, 3, 3\) but the forward ran with \(8, 4, 3, 3\)"):
        layer.backward(np.ones_like(y))
    layer.W, layer.b = rng.standard_normal((8, 4, 3, 3)).astype(np.float32), np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"b: expected shape \(FN,\)=\(8,\)"):
        layer.forward(x)


def test_pooling_backward_of_a_big_endian_gradient_equals_the_native_one():
    """(The compiled backward once took a big-endian dout through float64: 1 ulp off.)"""
    from cnn_xp import Pooling

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    layer = Pooling(3, 3, stride=1)
    y = layer.forward(x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    native = layer.backward(dy)
    swapped = layer.backward(dy.astype(">f4"))
    assert swapped.dtype == np.dtype(">f4")
    np.testing.assert_array_equal(swapped.astype(np.float32), native)


@pytest.mark.parametrize("state", [None, [1, 2], "W1", 3])
def test_load_state_dict_of_something_not_a_mapping_is_one_typeerror(state):
    from cnn_xp import SimpleConvNet

    with pytest.raises(TypeError, match=r"state: expected a mapping of names to arrays \(a state dict\), got"):
        SimpleConvNet().load_state_dict(state)
