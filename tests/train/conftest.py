from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Adam, SimpleConvNet
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist


@pytest.fixture(scope="session")
def mnist_small():
    (x, t), (xt, tt) = load_mnist(normalize=False)
    return (x[:400], t[:400]), (xt[:200], tt[:200])


def small_net(dtype="float32", seed=0):
    return SimpleConvNet(
        conv_param={"filter_num": 4, "filter_size": 5, "pad": 0, "stride": 1},
        hidden_size=16,
        weight_init_std="he",
        dtype=dtype,
        seed=seed,
    )


def loaders(data, seed=0, batch=50, dtype="float32"):
    (x, t), (xt, tt) = data
    return (
        DataLoader(x, t, batch, shuffle=True, seed=seed, dtype=dtype, scale=1 / 255),
        DataLoader(xt, tt, 100, shuffle=False, dtype=dtype, scale=1 / 255),
    )


@pytest.fixture
def make_trainer(mnist_small, tmp_path):
    from cnn_xp.train import Trainer

    def make(out=None, lr=0.01, **kw):
        train, test = loaders(mnist_small)
        return Trainer(small_net(), Adam(lr=lr), train, test, out_dir=out, quiet=True, **kw)

    return make


__all__ = ["loaders", "np", "small_net"]
