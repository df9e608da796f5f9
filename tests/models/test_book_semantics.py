"""What the book's code relies on, in cnn_xp itself: Pooling's stride 2 by default, labels as a
column, a scalar convolution bias, and the network's numerical gradient."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import AvgPooling, Convolution, Pooling, SimpleConvNet


def test_pooling_strides_by_two_by_default_as_the_books_current_code():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    assert Pooling(2, 2).forward(x).shape == (1, 1, 2, 2)
    np.testing.assert_array_equal(Pooling(2, 2).forward(x)[0, 0], [[5, 7], [13, 15]])
    assert AvgPooling(2, 2).forward(x).shape == (1, 1, 2, 2)
    assert Pooling(2, 2, stride=1).forward(x).shape == (1, 1, 3, 3)


def test_a_scalar_bias_is_broadcast_like_the_books_b_zero():
    W = np.ones((2, 1, 3, 3), np.float32)
    conv = Convolution(W, 0)
    assert conv.b.shape == (2,) and conv.b.dtype == np.float32 and not conv.b.any()
    np.testing.assert_array_equal(Convolution(W, 1.5).b, [1.5, 1.5])
    x = np.ones((1, 1, 3, 3), np.float32)
    np.testing.assert_array_equal(conv.forward(x)[:, :, 0, 0], [[9.0, 9.0]])
    with pytest.raises(TypeError, match="b: expected an array"):
        Convolution(W, "0")


def test_numerical_gradient_matches_backprop_with_column_labels():
    """ch07/gradient_check.py: a 10x10 input, labels of shape (N, 1), float64."""
    net = SimpleConvNet(
        input_dim=(1, 10, 10),
        conv_param={"filter_num": 3, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=5,
        output_size=10,
        weight_init_std=0.1,
        dtype="float64",
        seed=0,
    )
    X = np.random.default_rng(1).random(100).reshape((1, 1, 10, 10))
    T = np.array([1]).reshape((1, 1))
    before = {k: v.copy() for k, v in net.params.items()}
    numeric = net.numerical_gradient(X, T)
    exact = net.gradient(X, T)
    for key in net.params:
        np.testing.assert_allclose(numeric[key], exact[key], rtol=1e-5, atol=1e-9, err_msg=key)
        np.testing.assert_array_equal(net.params[key], before[key])  # every element restored
    assert net.accuracy(X, T) in (0.0, 1.0)
    assert float(net.loss(X, T)) == pytest.approx(float(net.loss(X, np.array([1]))))


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_numerical_gradient_function_on_two_array_libraries(library):
    from cnn_xp.functions import numerical_gradient

    if library == "torch":
        torch = pytest.importorskip("torch", reason="PyTorch (the 'torch' extra) is not installed")
        x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    else:
        x = np.array([[1.0, 2.0], [3.0, -1.0]])
    g = numerical_gradient(lambda a: (a**3).sum(), x)
    np.testing.assert_allclose(np.asarray(g), 3 * np.asarray(x) ** 2, rtol=1e-7)
    np.testing.assert_array_equal(np.asarray(x), [[1.0, 2.0], [3.0, -1.0]])  # restored
    with pytest.raises(ValueError, match="contiguous"):
        numerical_gradient(lambda a: a.sum(), np.ones((3, 2)).T)
