"""Networks as data: every layer describes itself, one registry rebuilds any network, specs are
checked before anything is allocated, and files of the previous format still load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import cnn_xp
from cnn_xp import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    DeepConvNet,
    Dropout,
    Layer,
    Network,
    Pooling,
    Relu,
    Sigmoid,
    SimpleConvNet,
    SoftmaxWithLoss,
)
from cnn_xp.functions.fast_paths import direct_convolution
from cnn_xp.layers.registry import LAYER_TYPES, UnregisteredLayerError, layer_class
from cnn_xp.models import build_model
from cnn_xp.models.spec import check_spec
from cnn_xp.train import load_checkpoint

FIXTURES = Path(__file__).parent.parent / "fixtures"


def every_layer_network(seed: int = 0) -> Network:
    """conv (stride 2, pad 1) + BatchNorm 4-D + ReLU + max pool + avg pool + Sigmoid + affine +
    BatchNorm 2-D + Dropout + affine: one of each layer type cnn_xp has."""
    rng = np.random.default_rng(seed)
    f32 = np.float32
    layers = [
        ("conv", Convolution(rng.normal(0, 0.3, (4, 1, 3, 3)).astype(f32), np.zeros(4, f32), stride=2, pad=1)),
        ("bn", BatchNormalization(np.ones(4, f32), np.zeros(4, f32), momentum=0.8, eps=1e-4)),
        ("relu", Relu()),
        ("pool", Pooling(2, 2, stride=1, pad=1)),
        ("avg", AvgPooling(2, 2, stride=2)),
        ("sig", Sigmoid()),
        ("fc1", Affine(rng.normal(0, 0.3, (36, 7)).astype(f32), np.zeros(7, f32))),
        ("bn1d", BatchNormalization(np.ones(7, f32), np.zeros(7, f32))),
        ("drop", Dropout(0.3, seed=4)),
        ("fc2", Affine(rng.normal(0, 0.3, (7, 3)).astype(f32), np.zeros(3, f32))),
    ]
    return Network(layers, input_dim=(1, 10, 10))


@pytest.mark.parametrize(
    "layer",
    [
        Convolution(np.ones((2, 3, 3, 1), np.float32), np.zeros(2, np.float32), stride=(2, 1), pad=(1, 0)),
        Affine(np.ones((5, 4), np.float32), np.zeros(4, np.float32)),
        BatchNormalization(np.ones(3), np.zeros(3), momentum=0.5, eps=1e-3),
        Dropout(0.25),
        Pooling(3, 2, stride=(1, 2), pad=1),
        AvgPooling(2, 2),
        Relu(),
        Sigmoid(),
        SoftmaxWithLoss(),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_every_layer_describes_itself_and_comes_back(layer):
    config = layer.config()
    assert json.loads(json.dumps(config)) == config  # JSON-able, no arrays
    cls = layer_class(config["type"])
    assert cls is type(layer)
    shapes = cls.state_shapes(config)
    assert shapes == {a: tuple(getattr(layer, a).shape) for a in (*layer.param_names, *layer.buffer_names)}
    rebuilt = cls.from_config(config)
    assert rebuilt.config() == config
    for attr, shape in shapes.items():
        assert tuple(getattr(rebuilt, attr).shape) == shape


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"type": "Convolution", "shape": [2, 3, 3]}, "shape expected a list of 4"),
        ({"type": "Convolution", "shape": [2, 3, 3, 0]}, r"shape\[3\]"),
        ({"type": "Convolution", "shape": [2, 3, 3, 3], "stride": 0}, "stride"),
        ({"type": "Convolution", "shape": [2, 3, 3, 3], "dilation": 2}, r"unknown settings \['dilation'\]"),
        ({"type": "Affine"}, r"missing settings \['shape'\]"),
        ({"type": "Affine", "shape": [4, "5"]}, r"shape\[1\]"),
        ({"type": "BatchNormalization", "num_features": 3, "momentum": 2}, "momentum"),
        ({"type": "Dropout", "dropout_ratio": 1.0}, "dropout_ratio"),
        ({"type": "Pooling", "pool_h": 2, "pool_w": 2, "pad": 5}, "pad"),
        ({"type": "Relu", "inplace": True}, "unknown settings"),
    ],
)
def test_bad_layer_configs_name_the_setting(config, message):
    with pytest.raises((ValueError, TypeError), match=message):
        layer_class(config["type"]).state_shapes(config)


def test_any_network_round_trips_through_its_spec_and_a_file(tmp_path):
    net = every_layer_network()
    x = np.random.default_rng(1).random((6, 1, 10, 10), dtype=np.float32)
    t = np.arange(6) % 3
    for _ in range(3):  # moves BatchNorm's running statistics and the dropout generator
        net.gradient(x, t)
    spec = net.spec()
    assert [entry["type"] for entry in spec["layers"]][:3] == ["Convolution", "BatchNormalization", "Relu"]
    path = tmp_path / "net.safetensors"
    net.save_params(path)
    rebuilt = load_checkpoint(path).build_model()
    assert type(rebuilt) is Network and rebuilt.spec() == spec and rebuilt.input_dim == (1, 10, 10)
    for key, value in net.state_dict().items():
        np.testing.assert_array_equal(rebuilt.state_dict()[key], value)
    np.testing.assert_array_equal(rebuilt.predict(x, train_flg=False), net.predict(x, train_flg=False))
    # the dropout masks continue the same stream: random state is part of what a file keeps
    np.testing.assert_array_equal(rebuilt.predict(x, train_flg=True), net.predict(x, train_flg=True))


@pytest.mark.parametrize("cls", [SimpleConvNet, DeepConvNet])
def test_book_networks_describe_themselves_the_same_way(cls, tmp_path):
    net = cls(input_dim=(1, 12, 12), output_size=4, seed=3)
    spec = net.spec()
    assert spec["name"] == cls.__name__ and spec["kwargs"]["output_size"] == 4
    _, shapes = check_spec(json.loads(json.dumps(spec)))
    assert shapes == {k: tuple(v.shape) for k, v in net.state_dict().items()}
    rebuilt = build_model(spec)
    assert type(rebuilt) is cls and rebuilt.spec() == spec


def test_a_spec_that_contradicts_the_book_kwargs_is_refused():
    spec = SimpleConvNet(input_dim=(1, 12, 12)).spec()
    spec["layers"][3]["shape"] = [9999, 100]
    with pytest.raises(ValueError, match=r"not those of SimpleConvNet"):
        check_spec(spec)


def test_check_spec_allocates_nothing_whatever_it_claims():
    import tracemalloc

    spec = SimpleConvNet(input_dim=(1, 12, 12)).spec()
    spec["kwargs"]["hidden_size"] = 1_000_000
    del spec["layers"]
    tracemalloc.start()
    _, shapes = check_spec(spec)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert shapes["W2"] == (30 * 4 * 4, 1_000_000)  # 1.9 GB of float32, if it were built
    assert peak < 1_000_000


def test_user_layers_are_registered_and_rebuilt(tmp_path):
    class Scale(Layer):
        """y = x * factor, with a setting and no arrays."""

        def __init__(self, factor: float = 2.0) -> None:
            super().__init__()
            self.factor = factor

        def config(self):
            return {"type": "Scale", "factor": self.factor}

        @classmethod
        def state_shapes(cls, config):
            from cnn_xp.layers.base import settings

            settings(cls, config, {"factor": 2.0})
            return {}

        @classmethod
        def from_config(cls, config, dtype="float32"):
            return cls(config.get("factor", 2.0))

        def forward(self, x):
            return x * self.factor

        def backward(self, dout):
            return dout * self.factor

    fc = Affine(np.ones((4, 2), np.float32), np.zeros(2, np.float32))
    net = Network([("scale", Scale(3.0)), ("fc", fc)], input_dim=(4,))
    with pytest.raises(ValueError, match=r"not registered.*@cnn_xp.register_layer"):
        net.save_params(tmp_path / "no.safetensors")
    assert not (tmp_path / "no.safetensors").exists()
    try:
        assert cnn_xp.register_layer(Scale) is Scale
        net.save_params(tmp_path / "yes.safetensors")
        rebuilt = load_checkpoint(tmp_path / "yes.safetensors").build_model()
        assert isinstance(rebuilt.layers["scale"], Scale) and rebuilt.layers["scale"].factor == 3.0
        x = np.ones((2, 4), np.float32)
        np.testing.assert_array_equal(rebuilt.predict(x), net.predict(x))
        with pytest.raises(ValueError, match="already registered"):
            cnn_xp.register_layer(type("Scale", (Layer,), {}))
    finally:
        LAYER_TYPES.remove("Scale")
    with pytest.raises(UnregisteredLayerError, match=r"layer type 'Scale' is not registered"):
        load_checkpoint(tmp_path / "yes.safetensors")


def test_register_layer_as_decorator_with_a_name_and_bad_arguments():
    try:

        @cnn_xp.register_layer(name="Identity2")
        class Identity(Layer):
            def forward(self, x):
                return x

        assert layer_class("Identity2") is Identity and Identity().config() == {"type": "Identity2"}
        assert type(Identity.from_config({"type": "Identity2"})) is Identity
    finally:
        LAYER_TYPES.remove("Identity2")
    with pytest.raises(TypeError, match=r"subclass of cnn_xp\.layers\.Layer"):
        cnn_xp.register_layer(dict)
    with pytest.raises(ValueError, match="identifier"):
        cnn_xp.register_layer(name="not a name")(type("X", (Layer,), {}))


def test_files_of_the_previous_format_still_load():
    """Written by cnn_xp before specs (format version 1): a SimpleConvNet training checkpoint
    with Adam's state, and a DeepConvNet save_params file."""
    ck = load_checkpoint(FIXTURES / "format1_simple.safetensors")
    net = ck.build_model()
    expected = np.load(FIXTURES / "format1_simple_expected.npz")
    assert type(net) is SimpleConvNet and net.input_dim == (1, 8, 8)
    np.testing.assert_array_equal(net.predict(expected["x"], train_flg=False), expected["scores"])
    opt = ck.build_optimizer()
    assert opt.iter == 2 and set(opt.state["m"]) == set(net.params)
    deep = load_checkpoint(FIXTURES / "format1_deep_params.safetensors").build_model()
    expected = np.load(FIXTURES / "format1_deep_expected.npz")
    assert type(deep) is DeepConvNet
    with cnn_xp.no_grad(), direct_convolution():  # the path inference took when the file was written
        np.testing.assert_array_equal(deep.predict(expected["x"], train_flg=False), expected["scores"])
    # with and without grad its 3x3 convolutions now take Winograd: equal up to float32 rounding
    with cnn_xp.no_grad():
        np.testing.assert_allclose(
            deep.predict(expected["x"], train_flg=False), expected["scores"], rtol=1e-4, atol=1e-6
        )
    np.testing.assert_allclose(deep.predict(expected["x"], train_flg=False), expected["scores"], rtol=1e-4, atol=1e-6)
    same = DeepConvNet(
        input_dim=(1, 8, 8), **{f"conv_param_{i}": {"filter_num": 2} for i in range(1, 7)}, hidden_size=5, output_size=3
    )
    same.load_params(FIXTURES / "format1_deep_params.safetensors")
    with cnn_xp.no_grad(), direct_convolution():
        np.testing.assert_array_equal(same.predict(expected["x"], train_flg=False), expected["scores"])


def test_network_forward_returns_loss_and_scores_and_grads():
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3}, hidden_size=4, seed=0)
    x = np.random.default_rng(0).random((3, 1, 8, 8), dtype=np.float32)
    t = np.array([1, 2, 3])
    loss, scores = net.forward(x, t)
    assert scores.shape == (3, 10) and float(loss) == pytest.approx(float(net.loss(x, t)))
    grads = net.backward()
    assert grads.keys() == net.params.keys() and all(grads[k] is g for k, g in net.grads().items())
    assert [name for name, _, _ in net.backward_order()] == list(reversed(net.layers))


def test_accuracy_checks_its_targets_as_loss_does():
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3}, hidden_size=4, seed=0)
    x = np.zeros((4, 1, 8, 8), np.float32)
    for t, message in (
        (np.zeros((4, 2, 5), np.int64), "labels"),
        (np.array([0, 1, 10, 2]), r"labels must be in \[0, 10\)"),
        (np.array([0, -1, 1, 2]), r"labels must be in \[0, 10\)"),
        (np.zeros(4, np.float32), "integer dtype"),
        (np.zeros((4, 7), np.float32), r"one-hot targets must have shape \(N, K\)=\(4, 10\)"),
    ):
        with pytest.raises((ValueError, TypeError), match=message):
            net.accuracy(x, t)
        with pytest.raises((ValueError, TypeError), match=message):
            net.loss(x, t)
    assert 0.0 <= net.accuracy(x, np.array([0, 1, 2, 3]), batch_size=3) <= 1.0


def test_save_params_warns_about_a_pickle_name(tmp_path):
    net = SimpleConvNet(input_dim=(1, 8, 8), conv_param={"filter_num": 2, "filter_size": 3}, hidden_size=4, seed=0)
    with pytest.warns(UserWarning, match="safetensors, not pickle"):
        net.save_params(tmp_path / "params.pkl")
    assert (tmp_path / "params.pkl").read_bytes()[8:9] == b"{"
