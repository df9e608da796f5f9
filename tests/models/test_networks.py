"""SimpleConvNet and DeepConvNet: book API, gradients, devices, state, files, modes."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from cnn_xp import DeepConvNet, Dropout, SimpleConvNet
from cnn_xp.models import build_model

from ..helpers import GRAD_RTOL, numeric_grad, rel_error

SMALL_SIMPLE = dict(
    input_dim=(2, 8, 8),
    conv_param={"filter_num": 3, "filter_size": 3, "pad": 1, "stride": 1},
    hidden_size=6,
    output_size=4,
)
SMALL_DEEP = dict(input_dim=(1, 12, 12), hidden_size=8, output_size=3)


def small_simple(**kw):
    return SimpleConvNet(**SMALL_SIMPLE, weight_init_std=kw.pop("weight_init_std", 0.3), **kw)


def test_book_defaults_and_param_keys():
    net = SimpleConvNet()
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    assert net.params["W1"].shape == (30, 1, 5, 5) and net.params["W2"].shape == (30 * 12 * 12, 100)
    assert net.dtype == np.float32
    deep = DeepConvNet()
    assert list(deep.params) == [f"{k}{i}" for i in range(1, 9) for k in ("W", "b")]
    assert deep.params["W7"].shape == (64 * 4 * 4, 50) and deep.params["W8"].shape == (50, 10)
    assert deep.params["W4"].shape == (32, 32, 3, 3)
    # He initialisation: std sqrt(2 / fan_in)
    assert abs(float(np.std(deep.params["W7"])) - np.sqrt(2 / 1024)) < 0.002


def test_seed_makes_identical_networks_and_init_schemes_scale():
    a, b = SimpleConvNet(seed=3), SimpleConvNet(seed=3)
    np.testing.assert_array_equal(a.params["W2"], b.params["W2"])
    he = SimpleConvNet(weight_init_std="he", seed=0)
    xavier = SimpleConvNet(weight_init_std="xavier", seed=0)
    assert abs(np.std(he.params["W2"]) / np.std(xavier.params["W2"]) - np.sqrt(2)) < 0.01


def _check_network_gradient(net, x, t, coords=12):
    """Finite differences on a random subset of ``coords`` positions of every parameter."""
    dropouts = [layer for layer in net.layers.values() if isinstance(layer, Dropout)]
    states = [d.rng.get_state() for d in dropouts]

    def loss():
        for d, s in zip(dropouts, states, strict=True):
            d.rng.set_state(s)  # the same dropout masks at every evaluation
        return float(net.loss(x, t))

    loss()
    grads = net.backward()
    rng = np.random.default_rng(0)
    for key, p in net.params.items():
        idx = rng.choice(p.size, size=min(coords, p.size), replace=False)
        err = rel_error(grads[key], numeric_grad(loss, p, indices=idx))
        assert err < GRAD_RTOL, f"{key}: relative error {err:.2e}"


def test_simple_convnet_gradient_float64():
    net = small_simple(dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    _check_network_gradient(net, rng.standard_normal((3, 2, 8, 8)), rng.integers(0, 4, 3))


@pytest.mark.slow
def test_deep_convnet_gradient_float64_with_dropout():
    net = DeepConvNet(**SMALL_DEEP, dtype="float64", seed=1)
    rng = np.random.default_rng(3)
    _check_network_gradient(net, rng.standard_normal((2, 1, 12, 12)), rng.integers(0, 3, 2))


def test_gradient_matches_book_numerical_gradient_full():
    """Every coordinate (not a subset) for the small SimpleConvNet."""
    net = small_simple(dtype="float64", seed=4)
    rng = np.random.default_rng(5)
    x, t = rng.standard_normal((2, 2, 8, 8)), rng.integers(0, 4, 2)
    grads = net.gradient(x, t)
    for key, p in net.params.items():
        assert rel_error(grads[key], numeric_grad(lambda: float(net.loss(x, t)), p)) < GRAD_RTOL


def test_params_and_layers_never_go_out_of_sync():
    net = small_simple(dtype="float64", seed=0)
    new = np.full_like(net.params["W1"], 0.5)
    net.params["W1"] = new
    assert net.layers["Conv1"].W is new
    net.params["W2"] -= 1.0  # in place, as the book's optimizers do
    assert net.layers["Affine1"].W is net.params["W2"]
    with pytest.raises(ValueError, match=r"params\['W1'\]: expected an array of shape \(3, 2, 3, 3\)"):
        net.params["W1"] = np.zeros((3, 3))
    with pytest.raises(KeyError, match="unknown parameter 'W9'"):
        net.params["W9"] = new
    assert net.layers["Conv1"].W is new


def test_accuracy_counts_the_tail_batch():
    net = small_simple(dtype="float64", seed=0)
    x = np.random.default_rng(1).standard_normal((7, 2, 8, 8))
    pred = np.argmax(net.predict(x, train_flg=False), axis=1)
    t = pred.copy()
    t[-1] = (t[-1] + 1) % 4  # the only wrong answer sits in the last, partial batch
    assert net.accuracy(x, t, batch_size=3) == 6 / 7
    assert net.accuracy(x, np.eye(4)[t], batch_size=5) == 6 / 7


def test_train_and_eval_modes():
    """As in the book, predict(x) is inference; loss and gradient train unless eval() was called."""
    net = DeepConvNet(**SMALL_DEEP, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 1, 12, 12)).astype(np.float32)
    t = np.array([0, 1, 2, 0])
    assert net.training
    np.testing.assert_array_equal(net.predict(x), net.predict(x))  # the book's predict(x): no dropout
    np.testing.assert_array_equal(net.predict(x), net.predict(x, train_flg=False))
    assert not np.array_equal(net.predict(x, train_flg=True), net.predict(x, train_flg=True))
    assert float(net.loss(x, t)) != float(net.loss(x, t))  # training mode: new dropout masks
    net.eval()
    assert not net.training and not net.layers["Dropout1"].training
    assert float(net.loss(x, t)) == float(net.loss(x, t))
    net.train()
    assert net.training


def test_layers_by_name_and_by_position_as_in_the_book():
    net = DeepConvNet(**SMALL_DEEP, seed=0)
    assert net.layers[15] is net.layers["Affine1"] and net.layers[-1] is net.layers["Dropout2"]
    assert [net.layers[i] for i in (0, 2, 5, 7, 10, 12, 15, 18)] == [
        net.layers[k] for k in ("Conv1", "Conv2", "Conv3", "Conv4", "Conv5", "Conv6", "Affine1", "Affine2")
    ]
    with pytest.raises(IndexError, match=r"layers\[20\]: this network has 20 layers"):
        net.layers[20]
    with pytest.raises(KeyError):
        net.layers["Conv9"]


def test_integer_inputs_from_arange():
    net = small_simple(seed=0)
    x = np.arange(2 * 2 * 8 * 8).reshape(2, 2, 8, 8) % 7
    assert net.predict(x).dtype == np.float32
    assert np.isfinite(float(net.loss(x, np.array([1, 2]))))


def test_networks_on_backend_agree_with_numpy(backend, float_dtype):
    for make, shape, classes in (
        (small_simple, (3, 2, 8, 8), 4),
        (lambda **kw: DeepConvNet(**SMALL_DEEP, **kw), (3, 1, 12, 12), 3),
    ):
        ref = make(dtype=float_dtype, seed=7)
        dev = make(dtype=float_dtype, seed=7).to_device(backend.device)
        rng = np.random.default_rng(8)
        x = rng.standard_normal(shape).astype(float_dtype)
        t = rng.integers(0, classes, shape[0])
        ref.eval(), dev.eval()  # dropout masks come from different generators on a GPU
        backend.assert_matches(dev.loss(backend.asarray(x), backend.asarray(t)), ref.loss(x, t), float_dtype)
        g_ref, g_dev = ref.backward(), dev.backward()
        for key in ref.params:
            backend.assert_matches(g_dev[key], g_ref[key], float_dtype)
        assert dev.accuracy(backend.asarray(x), backend.asarray(t)) == ref.accuracy(x, t)


def test_dropout_training_agrees_on_host_backends(backend):
    if backend.name == "cupy":
        pytest.skip("CuPy draws dropout masks from its own generator; covered in eval mode above")
    ref = DeepConvNet(**SMALL_DEEP, dtype="float64", seed=7)
    dev = DeepConvNet(**SMALL_DEEP, dtype="float64", seed=7).to_device(backend.device)
    x = np.random.default_rng(9).standard_normal((3, 1, 12, 12))
    t = np.array([0, 1, 2])
    backend.assert_matches(dev.loss(backend.asarray(x), backend.asarray(t)), ref.loss(x, t))


# ------------------------------------------------------------------ state and files


def test_state_dict_round_trip_and_dtype_change():
    a, b = small_simple(seed=1), small_simple(seed=2)
    b.astype("float64")
    b.load_state_dict(a.state_dict())
    assert b.dtype == np.float64
    np.testing.assert_array_equal(b.params["W1"], a.params["W1"].astype(np.float64))
    assert b.config["kwargs"]["dtype"] == "float64"


def test_load_state_dict_of_another_architecture_changes_nothing():
    a = small_simple(seed=1)
    before = {k: v.copy() for k, v in a.state_dict().items()}
    other = SimpleConvNet(seed=0).state_dict()
    with pytest.raises(ValueError, match="another architecture"):
        a.load_state_dict(other)
    with pytest.raises(ValueError, match=r"missing keys \['W8'"):
        DeepConvNet(**SMALL_DEEP).load_state_dict(
            {k: v for k, v in DeepConvNet(**SMALL_DEEP).state_dict().items() if k != "W8"}
        )
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_save_and_load_params_safetensors(tmp_path):
    a, b = small_simple(seed=1), small_simple(seed=2)
    path = tmp_path / "params.safetensors"
    a.save_params(path)
    assert path.read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then JSON
    b.load_params(path)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    rebuilt = build_model(
        __import__("json").loads(__import__("safetensors").safe_open(str(path), "numpy").metadata()["model"])
    )
    assert rebuilt.params["W1"].shape == a.params["W1"].shape


def test_load_params_refuses_pickles_and_truncated_files(tmp_path):
    net = small_simple(seed=1)
    before = net.params["W1"].copy()
    evil = tmp_path / "params.pkl"
    evil.write_bytes(pickle.dumps({"W1": before}))
    with pytest.raises(ValueError, match="pickle"):
        net.load_params(evil)
    good = tmp_path / "good.safetensors"
    net.save_params(good)
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"torn\.safetensors: not a valid safetensors file"):
        net.load_params(torn)
    with pytest.raises(ValueError, match="another architecture"):
        SimpleConvNet().load_params(good)
    with pytest.raises(FileNotFoundError, match=r"missing\.safetensors"):
        net.load_params(tmp_path / "missing.safetensors")
    np.testing.assert_array_equal(net.params["W1"], before)


def test_to_device_moves_everything_and_back(backend):
    net = small_simple(dtype="float64", seed=3)
    ref = small_simple(dtype="float64", seed=3)
    net.to_device(backend.device)
    for v in net.state_dict().values():
        assert backend.numpy(v).dtype == np.float64
    net.to_device("cpu")
    for k, v in net.state_dict().items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, ref.state_dict()[k])


def test_constructor_bad_input():
    with pytest.raises(ValueError, match=r"input_dim: expected \(C, H, W\)"):
        SimpleConvNet(input_dim=(28, 28))
    with pytest.raises(ValueError, match=r"conv_param\['filter_num'\]: expected an int >= 1, got 0"):
        SimpleConvNet(conv_param={"filter_num": 0, "filter_size": 5, "pad": 0, "stride": 1})
    with pytest.raises(ValueError, match="conv_param: unknown keys"):
        SimpleConvNet(conv_param={"filters": 3})
    with pytest.raises(ValueError, match="does not fit"):
        SimpleConvNet(input_dim=(1, 4, 4))
    with pytest.raises(ValueError, match="dtype: expected 'float32' or 'float64'"):
        SimpleConvNet(dtype="int32")
    with pytest.raises(ValueError, match="weight_init_std: unknown scheme"):
        SimpleConvNet(weight_init_std="kaiming_uniform")
    with pytest.raises(ValueError, match="device: unknown device 'tpu'"):
        SimpleConvNet(device="tpu")
