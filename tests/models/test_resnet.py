"""Residual networks: the paper's architecture and sizes, an independent PyTorch implementation
as the oracle of the forward pass and every gradient, finite differences, batch normalisation
inside blocks, and the ways a ResNet description or its input can be wrong."""

from __future__ import annotations

import numpy as np
import pytest

import cnn_xp
from cnn_xp import BatchNormalization, Convolution, Network, Relu, Residual, ResNet, Sequential
from cnn_xp.models import MODELS, build_model, build_named_model


def test_the_paper_sizes_and_the_registered_names():
    # conv (no bias), BN gamma/beta, the affine layer with bias; option B projections where the shape changes
    assert sum(int(p.size) for p in ResNet(20).params.values()) == 272_474
    assert sum(int(p.size) for p in ResNet(56).params.values()) == 855_770
    for depth in (20, 32, 44, 56, 110):
        assert f"resnet{depth}" in MODELS
    net = build_named_model("resnet32", (1, 28, 28), 10, seed=0)
    assert isinstance(net, ResNet) and net.config["kwargs"]["depth"] == 32
    convs = [p for p, leaf in net.leaves.items() if isinstance(leaf, Convolution) and leaf.W.shape[2] == 3]
    assert len(convs) == 31  # 6n + 1 of the 6n + 2 weighted layers (the last is the affine one)
    wide = ResNet(20, width=2)
    assert wide.params["W1"].shape == (32, 3, 3, 3) and wide.layers["Affine"].W.shape == (128, 10)


def test_he_initialisation_and_batchnorm_as_the_identity():
    net = ResNet(20, seed=1)
    W = net.leaves["Stage2.Block2.body.conv1"].W
    assert abs(float(W.std()) - np.sqrt(2 / (32 * 9))) < 0.1 * np.sqrt(2 / (32 * 9))
    bn = net.leaves["Stage3.Block1.shortcut.bn"]
    assert np.all(bn.gamma == 1) and np.all(bn.beta == 0) and np.all(bn.running_var == 1)
    assert bn.gamma is not bn.running_var  # separate arrays: the optimizer updates gamma in place
    same = ResNet(20, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip(net.params.values(), same.params.values(), strict=True))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"depth": 21}, r"depth: expected 6n \+ 2 .* got 21; the nearest are 20 and 26"),
        ({"depth": 4}, r"depth: expected an int >= 8"),
        ({"input_dim": (3, 7, 32)}, r"input_dim: ResNet needs images of at least 8x8 pixels .* got 7x32"),
        ({"width": 0}, r"width: expected a number in \(0.0, 64.0\]"),
    ],
)
def test_a_network_that_cannot_be_built_is_one_line(kwargs, words):
    with pytest.raises(ValueError, match=words):
        ResNet(**kwargs)


def test_a_block_whose_branches_disagree_names_the_shapes():
    rng = np.random.default_rng(0)
    body = Convolution(rng.standard_normal((4, 2, 3, 3)), None, stride=2, pad=1)
    block = Residual(body)  # an identity shortcut cannot follow a strided body
    with pytest.raises(
        ValueError, match=r"branches give different shapes: body \(1, 4, 3, 3\), shortcut \(1, 2, 6, 6\)"
    ):
        block.forward(rng.standard_normal((1, 2, 6, 6)))


# --------------------------------------------------------------------------- the PyTorch oracle


def torch_resnet(torch, depth: int, channels: int, classes: int, width: tuple[int, int, int]):
    """ResNet of the paper written in PyTorch (option B shortcuts), independently of cnn_xp."""
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, c_in: int, c_out: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(c_out)
            self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(c_out)
            self.shortcut = nn.Sequential()
            if stride != 1 or c_in != c_out:
                self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

        def forward(self, x):
            return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))

    n = (depth - 2) // 6
    layers = [nn.Conv2d(channels, width[0], 3, 1, 1, bias=False), nn.BatchNorm2d(width[0]), nn.ReLU()]
    c_in = width[0]
    for stage, c_out in enumerate(width):
        for i in range(n):
            layers.append(Block(c_in, c_out, 2 if stage and not i else 1))
            c_in = c_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, classes)]
    return nn.Sequential(*layers)


@pytest.mark.parametrize("depth", [8, 20])
def test_forward_and_every_gradient_equal_pytorch_in_float64(torch, depth):
    t_net = torch_resnet(torch, depth, 3, 7, (8, 16, 32)).double()
    for m in t_net.modules():  # random BatchNorm parameters, so that they matter
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.5, 0.5)
    net = ResNet(depth, input_dim=(3, 12, 10), output_size=7, width=0.5, dtype="float64")
    net.load_state_dict(t_net.state_dict())
    rng = np.random.default_rng(0)
    x, t = rng.standard_normal((6, 3, 12, 10)), rng.integers(0, 7, 6)
    tx = torch.tensor(x, requires_grad=True)
    loss_t = torch.nn.functional.cross_entropy(t_net(tx), torch.tensor(t))
    loss_t.backward()
    loss = net.loss(x, t)
    grads = net.backward()
    assert abs(float(loss) - loss_t.item()) < 1e-12
    theirs = [p.grad.numpy() for p in t_net.parameters()]
    assert len(theirs) == len(grads)
    for (key, g), want in zip(grads.items(), theirs, strict=True):
        want = want.T if key == f"W{len([k for k in grads if k.startswith('W')])}" else want  # Linear (out, in)
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-12, err_msg=key)
    # the running statistics moved as PyTorch's (momentum 0.1 there is 0.9 here; unbiased variance)
    t_bns = [m for m in t_net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    ours = [leaf for leaf in net.leaves.values() if isinstance(leaf, BatchNormalization)]
    for mine, their in zip(ours, t_bns, strict=True):
        np.testing.assert_allclose(mine.running_mean, their.running_mean.numpy(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mine.running_var, their.running_var.numpy(), rtol=1e-12)
    # inference: the running statistics, in both
    t_net.eval()
    with torch.no_grad():
        np.testing.assert_allclose(net.predict(x), t_net(torch.tensor(x)).numpy(), rtol=1e-10, atol=1e-12)


def test_finite_differences_of_a_small_resnet():
    net = ResNet(8, input_dim=(2, 8, 8), output_size=3, width=0.25, dtype="float64", seed=2)
    for leaf in net.leaves.values():  # BatchNorm away from the identity
        if isinstance(leaf, BatchNormalization):
            leaf.gamma[...] = np.linspace(0.6, 1.4, leaf.gamma.shape[0])
            leaf.beta[...] = np.linspace(-0.3, 0.3, leaf.beta.shape[0])
    rng = np.random.default_rng(1)
    x, t = rng.standard_normal((4, 2, 8, 8)), rng.integers(0, 3, 4)
    backprop = {k: g.copy() for k, g in net.gradient(x, t).items()}
    h = 1e-5
    for key, p in net.params.items():  # central differences at 5 elements of every parameter
        for i in rng.choice(p.size, size=min(5, p.size), replace=False):
            old = p.flat[i]
            p.flat[i] = old + h
            up = float(net.loss(x, t))
            p.flat[i] = old - h
            down = float(net.loss(x, t))
            p.flat[i] = old
            assert abs(backprop[key].flat[i] - (up - down) / (2 * h)) <= 1e-6 + 1e-5 * abs(backprop[key].flat[i]), key


def test_batchnorm_inside_blocks_follows_train_and_eval():
    net = ResNet(8, input_dim=(1, 8, 8), output_size=2, dtype="float64", seed=0)
    x = np.random.default_rng(0).standard_normal((5, 1, 8, 8)) * 3 + 1
    bn = net.leaves["Stage2.Block1.body.bn2"]
    before = bn.running_mean.copy()
    with cnn_xp.no_grad():
        net.predict(x)  # inference: running statistics are read, not changed
    np.testing.assert_array_equal(bn.running_mean, before)
    net.loss(x, np.zeros(5, int))  # training: batch statistics, running ones updated
    assert not np.array_equal(bn.running_mean, before)
    net.eval()
    before = bn.running_mean.copy()
    net.loss(x, np.zeros(5, int))
    np.testing.assert_array_equal(bn.running_mean, before)
    assert not net.leaves["Stage1.Block1.body.bn1"].training


def test_the_description_round_trips_and_a_bad_block_in_it_is_refused():
    net = ResNet(8, input_dim=(1, 8, 8), output_size=2, seed=0)
    spec = net.spec()
    assert spec["kwargs"]["depth"] == 8 and spec["name"] == "ResNet"
    again = build_model(spec)
    again.load_state_dict(net.state_dict())
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    assert type(again) is ResNet
    np.testing.assert_array_equal(again.predict(x), net.predict(x))
    generic = {k: v for k, v in spec.items() if k != "kwargs"} | {"name": "MyResNet"}  # as a plain network
    assert type(build_model(generic)) is Network
    broken = generic | {
        "layers": [
            dict(spec["layers"][0]),
            {"name": "Block", "type": "Residual", "body": {"type": "Relu"}, "shortcut": 3},
        ]
    }
    with pytest.raises(ValueError, match=r"Block: Residual config: shortcut expected a layer config, got 3"):
        build_model(broken)
    deep = {"name": "Deep", "type": "Sequential", "layers": [{"name": "r", "type": "Relu"}]}
    for _ in range(40):
        deep = {"name": "s", "type": "Sequential", "layers": [deep]}
    with pytest.raises(ValueError, match="nested more than 32 deep"):
        build_model({"name": "Network", "layers": [deep]})


def test_a_users_residual_block_of_cnn_xp_layers_trains_and_round_trips():
    rng = np.random.default_rng(0)
    body = Sequential([("conv", Convolution(rng.standard_normal((3, 3, 3, 3)) * 0.2, 0.0, pad=1)), ("relu", Relu())])
    net = Network([("block", Residual(body)), ("fc", cnn_xp.Affine(rng.standard_normal((75, 2)), np.zeros(2)))])
    x, t = rng.standard_normal((4, 3, 5, 5)), np.array([0, 1, 1, 0])
    g = net.gradient(x, t)
    assert set(g) == {"W1", "b1", "W2", "b2"}
    again = build_model(net.spec())
    again.load_state_dict(net.state_dict())
    np.testing.assert_array_equal(again.predict(x), net.predict(x))
