"""Optimizers against torch.optim (CPU, float64) over 10 steps: an oracle independent of the book.

SGD, Momentum, Nesterov, AdaGrad and RMSprop are the same update rules as PyTorch's (with its
eps set to ours), so they agree to round-off. cnn_xp's Nesterov is the form of Bengio et al.
that PyTorch's nesterov=True also implements; the book's code differs (see Nesterov's docstring).
Adam places eps after the bias correction of the learning rate (the book's form), PyTorch before
it, so with eps = 1e-12 on both they agree to ~1e-9 relative.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

from ..helpers import TORCH_MISSING

torch = pytest.importorskip("torch", reason=TORCH_MISSING)  # every test here compares with PyTorch

CASES = [
    ("SGD", lambda: SGD(lr=0.1), lambda p: torch.optim.SGD(p, lr=0.1), 1e-13),
    ("Momentum", lambda: Momentum(lr=0.05, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9), 1e-12),
    (
        "Nesterov",
        lambda: Nesterov(lr=0.05, momentum=0.8),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True),
        1e-12,
    ),
    ("AdaGrad", lambda: AdaGrad(lr=0.1), lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-7), 1e-12),
    (
        "RMSprop",
        lambda: RMSprop(lr=0.01, decay_rate=0.9),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-7),
        1e-12,
    ),
    (
        "Adam",
        lambda: Adam(lr=0.01, beta1=0.8, beta2=0.95, eps=1e-12),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.95), eps=1e-12),
        1e-9,
    ),
]


@pytest.mark.parametrize(("name", "ours", "theirs", "rtol"), CASES, ids=[c[0] for c in CASES])
def test_ten_steps_agree_with_torch_optim(name, ours, theirs, rtol):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((4, 3))
    params = {"W": start.copy()}
    tp = torch.tensor(start.copy(), requires_grad=True)
    opt, topt = ours(), theirs([tp])
    for _ in range(10):
        g = rng.standard_normal((4, 3))
        opt.update(params, {"W": g})
        tp.grad = torch.tensor(g)
        topt.step()
    np.testing.assert_allclose(params["W"], tp.detach().numpy(), rtol=rtol, atol=rtol)
