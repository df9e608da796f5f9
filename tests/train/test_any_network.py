"""A network of the user's own (conv + BatchNorm + Dropout + pooling + affine) goes the whole
way: trained for an epoch as the command line trains, then resumed by ``--resume``, evaluated
by ``cnn_xp.evaluate`` and used by ``cnn_xp.predict`` from its checkpoint, each giving what the
in-memory model gives."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from cnn_xp import Adam, Affine, BatchNormalization, Convolution, Dropout, Network, Pooling, Relu
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.predict import load_image
from cnn_xp.cli.predict import main as predict_main
from cnn_xp.cli.train import main as train_main
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist
from cnn_xp.optim import constant
from cnn_xp.train import Trainer, load_checkpoint

TRAIN, TEST, BATCH, LR = 200, 100, 50, 0.002
# the settings the command line records for a run: what --resume continues
RUN = {
    "dataset": "mnist",
    "batch_size": BATCH,
    "optimizer": "adam",
    "lr": LR,
    "lr_schedule": "constant",
    "lr_decay": 0.75,
    "shift": 0,
    "seed": 0,
    "dtype": "float32",
    "train_size": TRAIN,
    "test_size": TEST,
    "epochs": 1,
    "num_classes": 10,
}


def custom_network(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    return Network(
        [
            ("conv", Convolution(rng.normal(0, 0.2, (6, 1, 5, 5)).astype(f32), np.zeros(6, f32), pad=2)),
            ("bn", BatchNormalization(np.ones(6, f32), np.zeros(6, f32))),
            ("relu", Relu()),
            ("pool", Pooling(2, 2, stride=2)),
            ("fc1", Affine(rng.normal(0, 0.05, (6 * 14 * 14, 32)).astype(f32), np.zeros(32, f32))),
            ("relu2", Relu()),
            ("drop", Dropout(0.3, seed=seed + 1)),
            ("fc2", Affine(rng.normal(0, 0.1, (32, 10)).astype(f32), np.zeros(10, f32))),
        ]
    )


def loaders():
    """As ``python -m cnn_xp.train`` builds them: uint8 images scaled on the way."""
    (x, t), (xt, tt) = load_mnist(normalize=False)
    kw = {"device": "cpu", "dtype": "float32", "scale": 1.0 / 255.0}
    train = DataLoader(x[:TRAIN], t[:TRAIN], BATCH, shuffle=True, seed=0, shift=0, **kw)
    return train, DataLoader(xt[:TEST], tt[:TEST], 1000, shuffle=False, **kw)


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    out = tmp_path_factory.mktemp("custom")
    train, test = loaders()
    trainer = Trainer(
        custom_network(), Adam(lr=LR), train, test, out_dir=out, run=RUN, lr_schedule=constant(LR), quiet=True
    )
    trainer.fit(1)
    return out, trainer


def test_resume_from_the_command_line_continues_as_the_in_memory_run(one_epoch, tmp_path, capsys):
    out, _ = one_epoch
    shutil.copy(out / "last.safetensors", tmp_path / "last.safetensors")
    code = train_main(["--resume", str(tmp_path / "last.safetensors"), "--epochs", "2", "--device", "cpu", "--quiet"])
    assert code == 0, capsys.readouterr().err
    # the same two epochs in memory, never through a file
    train, test = loaders()
    memory = Trainer(custom_network(), Adam(lr=LR), train, test, run=RUN, lr_schedule=constant(LR), quiet=True)
    memory.fit(1)
    memory.fit(2)
    resumed = load_checkpoint(tmp_path / "last.safetensors")
    assert resumed.trainer["epoch"] == 2 and type(resumed.build_model()) is Network
    for key, value in memory.model.state_dict().items():  # BatchNorm statistics included
        np.testing.assert_allclose(resumed.model_state[key], value, rtol=1e-5, atol=1e-6, err_msg=key)
    assert resumed.rng == memory.model.extra_state()  # Dropout drew the same masks
    assert resumed.trainer["history"][1]["test_acc"] == pytest.approx(memory.history[1]["test_acc"])


def test_evaluate_gives_the_in_memory_accuracy(one_epoch, capsys):
    out, trainer = one_epoch
    assert evaluate_main([str(out / "last.safetensors"), "--device", "cpu", "--test-size", str(TEST)]) == 0
    text = capsys.readouterr().out
    hits = int(re.search(r"test accuracy: [\d.]+% \((\d+)/100\)", text).group(1))
    _, (xt, tt) = load_mnist(normalize=True)
    assert hits == round(trainer.model.accuracy(xt[:TEST], tt[:TEST]) * TEST)
    assert "dataset: mnist (the bundled dataset the checkpoint was trained on)" in text


def test_predict_gives_the_in_memory_classes(one_epoch, tmp_path, capsys):
    from PIL import Image

    out, trainer = one_epoch
    _, (xt, _) = load_mnist(normalize=False)
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(xt[i, 0]).save(paths[-1])
    assert predict_main([str(out / "best.safetensors"), *map(str, paths), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.splitlines()
    model = load_checkpoint(out / "best.safetensors").build_model().eval()
    x = np.stack([load_image(p, (1, 28, 28), invert=False) for p in paths]).astype(np.float32) * np.float32(1 / 255)
    scores = trainer.model.predict(x, train_flg=False)
    np.testing.assert_allclose(model.predict(x), scores, rtol=1e-6, atol=1e-6)
    for line, row in zip(lines, scores, strict=True):
        assert f"(class {int(np.argmax(row))})" in line


def test_an_unregistered_layer_is_refused_before_training(tmp_path):
    from cnn_xp.layers import Layer

    class Twice(Layer):
        def forward(self, x):
            return 2 * x

        def backward(self, dout):
            return 2 * dout

    net = custom_network()
    net = Network([*net.layers.items(), ("twice", Twice())])
    train, test = loaders()
    with pytest.raises(ValueError, match=r"\['twice'\].*not registered.*@cnn_xp\.register_layer"):
        Trainer(net, Adam(), train, test, out_dir=tmp_path / "run", quiet=True)
    assert not (tmp_path / "run" / "last.safetensors").exists()
