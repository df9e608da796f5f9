from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Adam

from ..helpers import loaders, mnist_subset, small_net


@pytest.fixture(scope="session")
def mnist_small():
    return mnist_subset()


@pytest.fixture
def make_trainer(mnist_small, tmp_path):
    from cnn_xp.train import Trainer

    def make(out=None, lr=0.01, **kw):
        train, test = loaders(mnist_small)
        return Trainer(small_net(), Adam(lr=lr), train, test, out_dir=out, quiet=True, **kw)

    return make


__all__ = ["loaders", "np", "small_net"]
