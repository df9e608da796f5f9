"""PyTorch state dicts into cnn_xp networks: a torch model of the same architecture predicts
identically (float32 round-off) after ``net.load_state_dict(model.state_dict())``."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp import Adam, Affine, BatchNormalization, Convolution, DeepConvNet, Network, Pooling, Relu, SimpleConvNet

F32_TOL = 1e-5  # float32 round-off over a few thousand multiply-adds


def torch_simple_convnet(nn):
    return nn.Sequential(
        nn.Conv2d(1, 30, 5), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(30 * 12 * 12, 100), nn.ReLU(), nn.Linear(100, 10),
    )  # fmt: skip


def test_simple_convnet_predicts_like_the_torch_model_it_was_loaded_from(torch):
    torch.manual_seed(0)
    model = torch_simple_convnet(torch.nn).eval()
    net = SimpleConvNet(seed=1)
    net.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(net.params["W2"], model[4].weight.detach().numpy().T)  # Linear (out, in) -> (in, out)
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        expected = model(x).numpy()
    got = net.predict(x, train_flg=False)
    np.testing.assert_allclose(got, expected, rtol=F32_TOL, atol=F32_TOL)


class TorchCustom:
    """conv (no bias) + BatchNorm2d + ReLU + pool + conv + Linear + BatchNorm1d + Linear, with
    non-trivial running statistics (set by a few training-mode batches)."""

    @staticmethod
    def build(nn):
        return nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2, 2),
            nn.Conv2d(4, 5, 3, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(5 * 1 * 1, 6), nn.BatchNorm1d(6),
            nn.ReLU(), nn.Linear(6, 3),
        )  # fmt: skip

    @staticmethod
    def ours():
        z = np.zeros
        return Network(
            [
                ("conv1", Convolution(z((4, 3, 3, 3), np.float32), z(4, np.float32), pad=1)),
                ("bn1", BatchNormalization(np.ones(4, np.float32), z(4, np.float32))),
                ("relu1", Relu()),
                ("pool", Pooling(2, 2, stride=2)),
                ("conv2", Convolution(z((5, 4, 3, 3), np.float32), z(5, np.float32), stride=2)),
                ("relu2", Relu()),
                ("fc1", Affine(z((5, 6), np.float32), z(6, np.float32))),
                ("bn2", BatchNormalization(np.ones(6, np.float32), z(6, np.float32))),
                ("relu3", Relu()),
                ("fc2", Affine(z((6, 3), np.float32), z(3, np.float32))),
            ]
        )


def test_custom_network_with_batchnorm_and_a_bias_free_conv(torch):
    torch.manual_seed(0)
    model = TorchCustom.build(torch.nn)
    with torch.no_grad():
        for _ in range(3):  # move the running statistics away from 0 and 1
            model(torch.randn(8, 3, 6, 6) * 2 + 1)
    model.eval()
    net = TorchCustom.ours()
    net.load_state_dict(model.state_dict())
    assert np.all(net.params["b1"] == 0)  # Conv2d(bias=False): a zero bias
    np.testing.assert_array_equal(net.buffers["running_var2"], model[8].running_var.numpy())
    x = torch.randn(10, 3, 6, 6)
    with torch.no_grad():
        expected = model(x).numpy()
    np.testing.assert_allclose(net.predict(x, train_flg=False), expected, rtol=F32_TOL, atol=F32_TOL)


def test_named_parameters_work_as_well_as_a_state_dict(torch):
    model = torch_simple_convnet(torch.nn)
    net = SimpleConvNet(seed=1)
    net.load_state_dict(dict(model.named_parameters()))  # tensors that require grad
    np.testing.assert_array_equal(net.params["W3"], model[6].weight.detach().numpy().T)


def test_float64_network_takes_float32_tensors(torch):
    model = torch_simple_convnet(torch.nn).eval()
    net = SimpleConvNet(dtype="float64")
    net.load_state_dict(model.state_dict())
    assert net.params["W1"].dtype == np.float64
    np.testing.assert_array_equal(net.params["W1"], model[0].weight.detach().numpy().astype(np.float64))


def test_mismatched_architectures_name_both_sides_and_change_nothing(torch):
    model = torch_simple_convnet(torch.nn)
    net = DeepConvNet(seed=0)
    before = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(
        ValueError,
        match=r"PyTorch modules \['0 \(Conv2d\)', '4 \(Linear\)', '6 \(Linear\)'\] do not pair up.*'Conv1 \(Convolution\)'",
    ):
        net.load_state_dict(model.state_dict())
    wrong_size = torch.nn.Sequential(torch.nn.Conv2d(1, 30, 3), torch.nn.Linear(4, 100), torch.nn.Linear(100, 10))
    small = SimpleConvNet(seed=0)
    with pytest.raises(ValueError, match=r"W1: expected \(30, 1, 5, 5\), got \(30, 1, 3, 3\)"):
        small.load_state_dict(wrong_size.state_dict())
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_unsupported_torch_module_is_named(torch):
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 2, 3))
    with pytest.raises(
        ValueError, match=r"PyTorch module '0' with entries \{'weight': \(2, 1, 3\), 'bias': \(2,\)\} is not a Conv2d"
    ):
        SimpleConvNet().load_state_dict(model.state_dict())


def test_loading_a_torch_state_dict_copies_it_so_training_leaves_the_torch_model_alone(torch):
    torch.manual_seed(0)
    model = torch_simple_convnet(torch.nn)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    net = SimpleConvNet(seed=1)
    net.load_state_dict(model.state_dict())
    theirs = [v.numpy() for v in model.state_dict().values()]
    for key, value in net.params.items():
        assert value.flags.writeable and not any(np.shares_memory(value, t) for t in theirs), key
    rng = np.random.default_rng(0)
    x, t = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    Adam(lr=0.1).update(net.params, net.gradient(x, t))  # in place, on cnn_xp's arrays
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())  # the caller's model as it was
    assert not np.array_equal(net.params["W2"], before["4.weight"].numpy().T)  # while cnn_xp's weights moved
