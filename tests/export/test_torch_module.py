"""``cnn_xp.export.to_torch``: the same network in PyTorch computes the same function."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import BatchNormalization, DeepConvNet, ResNet, SimpleConvNet
from cnn_xp.export.torch_module import to_torch, torch_parameters
from cnn_xp.layers.composite import iter_leaves


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: SimpleConvNet(seed=0, dtype="float32"), (1, 28, 28)),
        (lambda: DeepConvNet(seed=0), (1, 28, 28)),
        (lambda: ResNet(8, input_dim=(3, 16, 16), seed=0), (3, 16, 16)),
    ],
    ids=["simple", "deep", "resnet8"],
)
def test_to_torch_computes_the_same_scores_in_train_and_eval_modes(torch, make, shape):
    net = make()
    rng = np.random.default_rng(0)
    for _, layer in iter_leaves(net.layers.items()):  # statistics and affine terms of their own
        if isinstance(layer, BatchNormalization):
            c = layer.gamma.shape[0]
            layer.running_mean[...] = rng.standard_normal(c)
            layer.running_var[...] = rng.uniform(0.5, 2.0, c)
            layer.gamma[...], layer.beta[...] = rng.uniform(0.5, 1.5, c), rng.standard_normal(c)
    x = rng.standard_normal((6, *shape)).astype(np.float32)
    net.eval()
    module = to_torch(net)
    assert not module.training
    with torch.no_grad():
        got = module(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, net.predict(x), rtol=1e-4, atol=1e-4)
    if not isinstance(net, DeepConvNet):  # (Dropout draws differently) batch statistics in training mode
        module.train()
        with torch.no_grad():
            got = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(got, net.predict(x, train_flg=True), rtol=1e-4, atol=1e-4)
    params = torch_parameters(net, module)
    assert set(params) == set(net.params)
    for key, p in params.items():
        ours = net.params[key]
        theirs = p.detach().numpy()
        np.testing.assert_array_equal(theirs.T if theirs.shape != ours.shape else theirs, ours)
