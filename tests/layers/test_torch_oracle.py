"""PyTorch (CPU, float64) as an independent oracle for forward and backward."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Affine, AvgPooling, BatchNormalization, Convolution, Pooling, SoftmaxWithLoss

from ..helpers import TORCH_MISSING

torch = pytest.importorskip("torch", reason=TORCH_MISSING)  # every test here compares with PyTorch
F = torch.nn.functional
rng = np.random.default_rng(7)
# float64 round-off: results of a few hundred multiply-adds agree to ~1e-14 relative.
RTOL, ATOL = 1e-12, 1e-12


def close(ours, theirs):
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=RTOL, atol=ATOL)


def leaf(a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("pad", [0, 1, 2])
@pytest.mark.parametrize(("n", "c", "h", "w", "fn", "k"), [(2, 3, 9, 8, 4, 3), (1, 1, 7, 7, 2, 5), (3, 2, 6, 10, 5, 2)])
def test_conv2d(stride, pad, n, c, h, w, fn, k):
    x, W, b = rng.standard_normal((n, c, h, w)), rng.standard_normal((fn, c, k, k)), rng.standard_normal(fn)
    layer = Convolution(W, b, stride=stride, pad=pad)
    out = layer.forward(x)
    tx, tW, tb = leaf(x), leaf(W), leaf(b)
    tout = F.conv2d(tx, tW, tb, stride=stride, padding=pad)
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    dx = layer.backward(dout)
    tout.backward(torch.from_numpy(dout))
    close(dx, tx.grad)
    close(layer.dW, tW.grad)
    close(layer.db, tb.grad)


@pytest.mark.parametrize(("k", "stride", "pad"), [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 1, 1)])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling(k, stride, pad, kind):
    x = rng.standard_normal((2, 3, 7, 8))
    layer = (Pooling if kind == "max" else AvgPooling)(k, k, stride, pad)
    out = layer.forward(x)
    tx = leaf(x)
    if kind == "max":
        tout = F.max_pool2d(tx, k, stride, pad)
    else:
        tout = F.avg_pool2d(tx, k, stride, pad, count_include_pad=True)
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(dout), tx.grad)


@pytest.mark.parametrize(("k", "stride", "shape"), [(2, 2, (2, 3, 8, 6)), (2, 3, (2, 3, 8, 7)), (3, 3, (1, 2, 9, 9))])
def test_max_pooling_with_ties_tiled_and_apart_windows(k, stride, shape):
    """Windows that tile the image, or lie apart, take the write-once backward; ties (small
    integers) send the gradient to the first maximum, as PyTorch does."""
    x = rng.integers(0, 3, shape).astype(np.float64)
    layer = Pooling(k, k, stride)
    tx = leaf(x)
    tout = F.max_pool2d(tx, k, stride)
    close(layer.forward(x), tout)
    dout = rng.standard_normal(tout.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(dout), tx.grad)


def test_linear():
    x, W, b = rng.standard_normal((6, 2, 5)), rng.standard_normal((10, 7)), rng.standard_normal(7)
    layer = Affine(W, b)
    out = layer.forward(x)
    tx, tW, tb = leaf(x), leaf(W), leaf(b)
    tout = F.linear(tx.reshape(6, 10), tW.T, tb)
    close(out, tout)
    dout = rng.standard_normal(out.shape)
    tout.backward(torch.from_numpy(dout))
    close(layer.backward(dout), tx.grad)
    close(layer.dW, tW.grad)
    close(layer.db, tb.grad)


@pytest.mark.parametrize("one_hot", [False, True])
def test_cross_entropy(one_hot):
    x, labels = 3 * rng.standard_normal((8, 5)), rng.integers(0, 5, 8)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, np.eye(5)[labels] if one_hot else labels)
    tx = leaf(x)
    tloss = F.cross_entropy(tx, torch.from_numpy(labels))
    close(loss, tloss)
    tloss.backward()
    close(layer.backward(), tx.grad)


@pytest.mark.parametrize("shape", [(8, 4), (4, 3, 5, 5)])
def test_batch_norm_train_and_eval(shape):
    c = shape[1]
    x, gamma, beta = rng.standard_normal(shape), rng.standard_normal(c), rng.standard_normal(c)
    bn = BatchNormalization(gamma.copy(), beta.copy(), momentum=0.9, eps=1e-5)
    out = bn.forward(x, train_flg=True)
    tx, tg, tb = leaf(x), leaf(gamma), leaf(beta)
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    tout = F.batch_norm(tx, rm, rv, tg, tb, training=True, momentum=0.1, eps=1e-5)
    close(out, tout)
    dout = rng.standard_normal(shape)
    tout.backward(torch.from_numpy(dout))
    close(bn.backward(dout), tx.grad)
    close(bn.dgamma, tg.grad)
    close(bn.dbeta, tb.grad)
    close(bn.running_mean, rm)
    close(bn.running_var, rv)
    close(bn.forward(x, train_flg=False), F.batch_norm(tx, rm, rv, tg, tb, training=False, eps=1e-5))
