"""cnn_xp.book's modules against the book's own code (its ``common/`` in the fixtures), and the
device boundary of the book's networks, proved on array_api_strict's second device (which, as
a GPU does, refuses to be mixed with host arrays or read as NumPy implicitly)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_xp import to_numpy
from cnn_xp.book import common, get_device, set_device
from cnn_xp.book.common import functions, gradient, layers, optimizer, util
from cnn_xp.book.common.trainer import Trainer
from cnn_xp.book.dataset.mnist import load_mnist
from cnn_xp.book.deep_convnet import DeepConvNet
from cnn_xp.book.simple_convnet import SimpleConvNet
from cnn_xp.cli.book import main as book_main

BOOK = Path(__file__).parent.parent / "fixtures" / "book"


def books_own(module: str):
    """The book's own ``common/<module>.py``, loaded under a private name (it imports ``common.*``)."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "common" or k.startswith("common.")}
    sys.path.insert(0, str(BOOK))
    try:
        spec = importlib.util.spec_from_file_location(f"books_own_{module}", BOOK / "common" / f"{module}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(BOOK))
        for k in [k for k in sys.modules if k == "common" or k.startswith("common.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def test_functions_give_the_books_numbers():
    own = books_own("functions")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 10))
    t = rng.integers(0, 10, 4)
    onehot = np.eye(10)[t]
    for name in ("identity_function", "sigmoid", "sigmoid_grad", "relu", "relu_grad", "softmax"):
        np.testing.assert_allclose(getattr(functions, name)(x), getattr(own, name)(x), rtol=1e-12, err_msg=name)
    np.testing.assert_array_equal(functions.step_function(x), own.step_function(x))
    y = own.softmax(x)
    for target in (t, onehot):
        assert float(functions.cross_entropy_error(y, target)) == pytest.approx(own.cross_entropy_error(y, target))
        assert float(functions.softmax_loss(x, target)) == pytest.approx(own.softmax_loss(x, target))
    assert float(functions.cross_entropy_error(y[0], onehot[0])) == pytest.approx(
        own.cross_entropy_error(y[0], onehot[0])
    )
    assert float(functions.sum_squared_error(y, onehot)) == pytest.approx(own.sum_squared_error(y, onehot))


def test_util_and_gradient_give_the_books_numbers():
    own_util, own_grad = books_own("util"), books_own("gradient")
    curve = list(np.random.default_rng(1).random(40))
    np.testing.assert_allclose(util.smooth_curve(curve), own_util.smooth_curve(np.array(curve)))
    assert util.conv_output_size(28, 5) == own_util.conv_output_size(28, 5) == 24.0
    x = np.random.default_rng(2).standard_normal((2, 3, 7, 7))
    np.testing.assert_array_equal(util.im2col(x, 3, 3, 2, 1), own_util.im2col(x, 3, 3, 2, 1))
    col = own_util.im2col(x, 3, 3, 2, 1)
    np.testing.assert_allclose(util.col2im(col, x.shape, 3, 3, 2, 1), own_util.col2im(col, x.shape, 3, 3, 2, 1))
    w = np.random.default_rng(3).standard_normal((3, 4))
    f = lambda a: float(np.sum(a**3))  # noqa: E731 - as the book writes it
    np.testing.assert_allclose(gradient.numerical_gradient(f, w), own_grad.numerical_gradient(f, w.copy()), rtol=1e-9)
    xs, ts = util.shuffle_dataset(np.arange(10).reshape(5, 2), np.arange(5))
    np.testing.assert_array_equal(xs[:, 0] // 2, ts)  # one order for both


def test_layers_batch_norm_is_the_books():
    own_layers = books_own("layers")
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 6))  # one sample, as ch06/batch_norm_gradient_check.py trains
    ours = layers.BatchNormalization(np.ones(6), np.zeros(6))
    theirs = own_layers.BatchNormalization(np.ones(6), np.zeros(6))
    for batch in (x, rng.standard_normal((5, 6))):
        np.testing.assert_allclose(ours.forward(batch, True), theirs.forward(batch, True), atol=1e-12)
        dout = rng.standard_normal(batch.shape)
        np.testing.assert_allclose(ours.backward(dout), theirs.backward(dout), atol=1e-9)
    np.testing.assert_allclose(ours.running_var, theirs.running_var, rtol=1e-12)
    star: dict = {}
    exec("from cnn_xp.book.common.layers import *", star)  # as the book's scripts import
    assert star["np"] is np and "Convolution" in star and "softmax" in star and "im2col" in star


def test_optimizers_update_numbers_as_the_books_do():
    own = books_own("optimizer")
    for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
        ours, theirs = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
        a, b = getattr(optimizer, name)(lr=0.1), getattr(own, name)(lr=0.1)
        for _ in range(5):
            a.update(ours, {"x": ours["x"] / 10.0, "y": 2.0 * ours["y"]})
            b.update(theirs, {"x": theirs["x"] / 10.0, "y": 2.0 * theirs["y"]})
        assert isinstance(ours["x"], float)
        assert ours == pytest.approx(theirs, rel=1e-6), name  # the book's Adam has no eps; cnn_xp's is 1e-7


def test_mnist_has_the_books_defaults():
    (x, t), _ = load_mnist()
    assert x.shape == (60000, 784) and x.dtype == np.float32 and float(x.max()) == 1.0 and t.dtype == np.uint8
    (x, t), _ = load_mnist(normalize=False, flatten=False, one_hot_label=True)
    assert x.shape == (60000, 1, 28, 28) and x.dtype == np.uint8 and t.shape == (60000, 10)


def test_trainer_runs_the_books_loop(capsys):
    np.random.seed(0)
    (x, t), (xt, tt) = load_mnist(flatten=False)
    net = SimpleConvNet(
        input_dim=(1, 28, 28), conv_param={"filter_num": 4, "filter_size": 5}, hidden_size=20, weight_init_std="he"
    )
    trainer = Trainer(
        net,
        x[:200],
        t[:200],
        xt[:50],
        tt[:50],
        epochs=2,
        mini_batch_size=50,
        optimizer="Adam",
        optimizer_param={"lr": 0.01},
        evaluate_sample_num_per_epoch=50,
    )
    trainer.train()
    out = capsys.readouterr().out
    assert out.count("train loss:") == 8 and "=== epoch:2, train acc:" in out and "test acc:" in out
    assert len(trainer.train_loss_list) == 8 and all(isinstance(v, float) for v in trainer.train_loss_list)
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]
    with pytest.raises(ValueError, match="optimizer: expected one of"):
        Trainer(net, x, t, xt, tt, optimizer="Lion")


def test_book_networks_take_and_give_what_the_book_does(tmp_path):
    net = DeepConvNet()
    assert net.dtype == np.float64 and net.layers[15] is net.layers["Affine1"]
    x = load_mnist(flatten=False)[1][0][:3]
    y = net.predict(x)
    assert isinstance(y, np.ndarray) and y.shape == (3, 10)
    np.testing.assert_array_equal(y, net.predict(x, train_flg=False))
    assert isinstance(net.loss(x, np.array([1, 2, 3])), float)
    net.save_params(tmp_path / "deep_convnet_params.pkl")  # the book's name, safetensors inside, no warning
    other = DeepConvNet()
    other.load_params(tmp_path / "deep_convnet_params.pkl")
    np.testing.assert_array_equal(other.predict(x), y)


@pytest.fixture
def strict_device():
    strict = pytest.importorskip("array_api_strict", reason="array_api_strict (a test dependency) is missing")
    before = get_device()
    device = set_device(strict.Device("device1"))
    yield device
    set_device(before)


def test_book_networks_on_another_device_take_host_arrays(strict_device):
    """On a device that refuses host arrays (as CuPy does), the book's calls still work: inputs
    are moved at the boundary, predict comes back as NumPy, gradients stay on the device where
    the optimizer updates the parameters."""
    (x, t), _ = load_mnist(flatten=False)
    x, t = x[:20], t[:20]
    net = SimpleConvNet(conv_param={"filter_num": 3, "filter_size": 5}, hidden_size=8, weight_init_std="he")
    W1 = net.params["W1"]
    assert type(W1).__module__.startswith("array_api_strict") and W1.device == strict_device
    grads = net.gradient(x, t)
    assert all(g.device == strict_device for g in grads.values())
    optimizer.Adam(lr=0.01).update(net.params, grads)
    assert isinstance(net.predict(x), np.ndarray) and isinstance(net.loss(x, t), float)
    assert 0.0 <= net.accuracy(x, t) <= 1.0
    tiny = SimpleConvNet(
        input_dim=(1, 6, 6), conv_param={"filter_num": 2, "filter_size": 3}, hidden_size=3, weight_init_std=0.5
    )
    xs = np.random.default_rng(0).random((2, 1, 6, 6))
    numeric, exact = tiny.numerical_gradient(xs, np.array([1, 2])), tiny.gradient(xs, np.array([1, 2]))
    assert numeric["b3"].device == strict_device
    for key in exact:
        np.testing.assert_allclose(to_numpy(numeric[key]), to_numpy(exact[key]), atol=1e-6, err_msg=key)


def test_the_runner_resolves_the_books_names_and_refuses_a_missing_script(tmp_path, capsys, monkeypatch):
    script = tmp_path / "ch07" / "probe.py"
    script.parent.mkdir()
    script.write_text(
        "import sys, common.layers, dataset.mnist, simple_convnet, deep_convnet\n"
        "print(common.layers.__name__, dataset.mnist.__name__, simple_convnet.__name__, deep_convnet.__name__)\n"
        "print(sys.argv[1:], __name__)\n"
    )
    (tmp_path / "ch07" / "simple_convnet.py").write_text("raise SystemExit('the book folder copy must not be used')\n")
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    saved = {
        k: sys.modules.get(k)
        for k in ("common", "common.layers", "dataset", "dataset.mnist", "simple_convnet", "deep_convnet")
    }
    try:
        assert book_main([str(script), "--flag", "1"]) == 0
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "cnn_xp.book.common.layers cnn_xp.book.dataset.mnist cnn_xp.book.simple_convnet cnn_xp.book.deep_convnet",
        "['--flag', '1'] __main__",
    ]
    assert book_main([str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err
    assert (
        "SCRIPT.py: no such file" in err
        and "git clone https://github.com/oreilly-japan/deep-learning-from-scratch" in err
    )
    with pytest.raises(SystemExit):
        book_main(["--help"])
    help_text = capsys.readouterr().out  # where to get the scripts, and how long the training ones take
    assert "git clone https://github.com/oreilly-japan/deep-learning-from-scratch" in help_text
    assert "train_convnet.py (20 epochs of SimpleConvNet) takes about" in help_text and "minutes" in help_text
    assert common.__name__ == "cnn_xp.book.common"
