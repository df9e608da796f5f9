"""A catalogue of bad inputs across the public API, the datasets, the files and the CLI.

For each: the exception type, a message naming the offending argument and what was expected,
and *no state changed*: network parameters and buffers, optimizer state, and every file in the
working directory are compared byte for byte before and after.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cnn_xp import (
    Adam,
    Affine,
    BatchNormalization,
    Convolution,
    DeepConvNet,
    Dropout,
    Pooling,
    Relu,
    SimpleConvNet,
    parse_device,
)
from cnn_xp.cli.train import main as train_main
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_cifar10, load_dataset, load_idx_directory
from cnn_xp.serialization import save_arrays
from cnn_xp.train import load_checkpoint, save_checkpoint

from .datasets.test_datasets import make_idx_dir, write_cifar


class World:
    """The state that a bad input must leave alone."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.net = SimpleConvNet(
            conv_param={"filter_num": 3, "filter_size": 5, "pad": 0, "stride": 1},
            hidden_size=8,
            dtype="float64",
            seed=0,
        )
        self.opt = Adam()
        rng = np.random.default_rng(0)
        self.x, self.t = rng.random((4, 1, 28, 28)), rng.integers(0, 10, 4)
        self.opt.update(self.net.params, self.net.gradient(self.x, self.t))
        self.ckpt = save_checkpoint(root / "good.safetensors", self.net, self.opt)
        good = self.ckpt.read_bytes()
        (root / "torn.safetensors").write_bytes(good[: len(good) // 3])
        (root / "evil.safetensors").write_bytes(pickle.dumps({"W1": np.zeros(3)}))
        save_arrays(
            root / "future.safetensors",
            {"model/W1": np.zeros(1)},
            {"format": "cnn_xp.checkpoint", "format_version": "7", "model": "{}"},
        )
        save_checkpoint(root / "deep.safetensors", DeepConvNet(seed=0))
        (root / "idx").mkdir()
        make_idx_dir(root / "idx", gz=False)
        img = root / "idx" / "train-images-idx3-ubyte"
        img.write_bytes(img.read_bytes()[:-5])
        (root / "badmagic").mkdir()
        make_idx_dir(root / "badmagic", gz=False)
        lab = root / "badmagic" / "t10k-labels-idx1-ubyte"
        lab.write_bytes(b"\x07\x07" + lab.read_bytes()[2:])
        (root / "cifar").mkdir()
        write_cifar(root / "cifar" / "data_batch_1.bin", 2, 0)
        write_cifar(root / "cifar" / "test_batch.bin", 2, 1)
        batch = root / "cifar" / "data_batch_1.bin"
        batch.write_bytes(batch.read_bytes()[:-1])

    def snapshot(self) -> dict:
        arrays = {f"net/{k}": np.array(v).tobytes() for k, v in self.net.state_dict().items()}
        arrays.update({f"opt/{n}/{k}": np.array(v).tobytes() for n, s in self.opt.state.items() for k, v in s.items()})
        files = {
            str(p.relative_to(self.root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(self.root.rglob("*"))
            if p.is_file()
        }
        return {"arrays": arrays, "iter": self.opt.iter, "lr": self.opt.lr, "files": files, "mode": self.net.training}


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[World], object]
    exc: type[BaseException]
    words: tuple[str, ...]


def _strict(a):
    xps = pytest.importorskip("array_api_strict")
    return xps.asarray(np.asarray(a), device=xps.Device("device1"))


CASES = [
    # ---- layers and networks: shapes and values
    Case(
        "wrong rank",
        lambda w: w.net.predict(np.zeros((1, 28, 28))),
        ValueError,
        ("x", "4-D", "(N, C, H, W)", "(1, 28, 28)"),
    ),
    Case(
        "channel mismatch",
        lambda w: w.net.predict(np.zeros((2, 3, 28, 28))),
        ValueError,
        ("x", "1 input channels", "(2, 3, 28, 28)"),
    ),
    Case(
        "impossible window",
        lambda w: w.net.predict(np.zeros((1, 1, 4, 4))),
        ValueError,
        ("x", "larger than the padded input", "(4, 4)"),
    ),
    Case(
        "features mismatch",
        lambda w: Affine(np.zeros((6, 2)), np.zeros(2)).forward(np.zeros((3, 5))),
        ValueError,
        ("x", "6 features", "(3, 5)"),
    ),
    Case(
        "stride zero",
        lambda w: Convolution(np.zeros((2, 1, 3, 3)), np.zeros(2), stride=0),
        ValueError,
        ("stride", ">= 1", "0"),
    ),
    Case("negative pad", lambda w: Pooling(2, 2, pad=-1), ValueError, ("pad", ">= 0", "-1")),
    Case("non-positive pool size", lambda w: Pooling(0, 2), ValueError, ("pool_h", ">= 1", "0")),
    Case(
        "bias of the wrong size",
        lambda w: Convolution(np.zeros((4, 1, 3, 3)), np.zeros(3)),
        ValueError,
        ("b", "(4,)", "(3,)"),
    ),
    Case(
        "labels out of range",
        lambda w: w.net.loss(w.x, np.array([0, 1, 2, 10])),
        ValueError,
        ("t", "[0, 10)", "[0, 10]"),
    ),
    Case("negative labels", lambda w: w.net.gradient(w.x, np.array([0, -2, 1, 1])), ValueError, ("t", "[0, 10)", "-2")),
    Case(
        "labels of the wrong batch size",
        lambda w: w.net.gradient(w.x, np.array([1, 2, 3])),
        ValueError,
        ("t", "4 labels", "(3,)"),
    ),
    Case(
        "float labels",
        lambda w: w.net.loss(w.x, np.array([0.0, 1.0, 2.0, 3.0])),
        TypeError,
        ("t", "integer dtype", "float64"),
    ),
    Case(
        "empty batch loss",
        lambda w: w.net.loss(np.zeros((0, 1, 28, 28)), np.zeros(0, dtype=int)),
        ValueError,
        ("x", "empty batch", "N=0"),
    ),
    Case(
        "empty batch accuracy",
        lambda w: w.net.accuracy(np.zeros((0, 1, 28, 28)), np.zeros(0, dtype=int)),
        ValueError,
        ("x, t", "non-empty batch", "(0, 1, 28, 28)"),
    ),
    Case(
        "NaN in inputs",
        lambda w: DataLoader(np.full((3, 1, 2, 2), np.nan), np.zeros(3, dtype=np.uint8)),
        ValueError,
        ("x", "non-finite", "sample 0"),
    ),
    Case(
        "inf in targets",
        lambda w: DataLoader(np.zeros((2, 1, 2, 2)), np.array([[np.inf, 0.0], [0.0, 1.0]])),
        ValueError,
        ("t", "non-finite", "finite targets"),
    ),
    Case("dropout ratio 1", lambda w: Dropout(1.0), ValueError, ("dropout_ratio", "[0, 1)", "1.0")),
    Case(
        "BatchNorm per element",
        lambda w: BatchNormalization(np.ones(8), np.zeros(8)).forward(np.zeros((2, 2, 2, 2))),
        ValueError,
        ("x", "8 channels", "per channel"),
    ),
    Case(
        "bad input_dim", lambda w: SimpleConvNet(input_dim=(1, 28)), ValueError, ("input_dim", "(C, H, W)", "(1, 28)")
    ),
    Case("bad dtype", lambda w: w.net.astype("int8"), ValueError, ("dtype", "'float32' or 'float64'", "int8")),
    Case(
        "unknown init scheme",
        lambda w: SimpleConvNet(weight_init_std="orthogonal"),
        ValueError,
        ("weight_init_std", "'he'", "orthogonal"),
    ),
    Case(
        "params of the wrong shape",
        lambda w: w.net.params.__setitem__("W1", np.zeros((3, 3))),
        ValueError,
        ("params['W1']", "(3, 1, 5, 5)", "(3, 3)"),
    ),
    Case("unknown parameter", lambda w: w.net.params.__setitem__("W9", np.zeros(1)), KeyError, ("W9", "W1")),
    Case(
        "backward before forward",
        lambda w: Relu().backward(np.ones(3)),
        RuntimeError,
        ("Relu.backward()", "before forward()"),
    ),
    # ---- devices
    Case(
        "mismatched devices",
        lambda w: w.net.predict(_strict(np.zeros((1, 1, 28, 28)))),
        ValueError,
        ("x", "cannot be mixed", "to_device"),
    ),
    Case("unknown device string", lambda w: parse_device("gpu:x"), ValueError, ("device", "'gpu:x'", "'gpu:N'")),
    Case(
        "unknown device for a network", lambda w: w.net.to_device("tpu:0"), ValueError, ("device", "'tpu:0'", "'cpu'")
    ),
    # ---- optimizers
    Case(
        "missing gradient",
        lambda w: w.opt.update(w.net.params, {"W1": np.zeros((3, 1, 5, 5))}),
        ValueError,
        ("grads", "'b1'", "no gradient"),
    ),
    Case(
        "gradient of the wrong shape",
        lambda w: w.opt.update(w.net.params, {**w.net.gradient(w.x, w.t), "W3": np.zeros((2, 2))}),
        ValueError,
        ("grads['W3']", "(8, 10)", "(2, 2)"),
    ),
    Case(
        "gradient on another device",
        lambda w: w.opt.update(w.net.params, {k: _strict(v) for k, v in w.net.gradient(w.x, w.t).items()}),
        ValueError,
        ("grads['W1']", "cannot be mixed"),
    ),
    Case("non-positive learning rate", lambda w: Adam(lr=0), ValueError, ("lr", "(0.0, inf)", "0")),
    Case(
        "loader batch size 0",
        lambda w: DataLoader(np.zeros((3, 1, 2, 2)), np.zeros(3, np.uint8), batch_size=0),
        ValueError,
        ("batch_size", ">= 1", "0"),
    ),
    Case(
        "loader x/t mismatch",
        lambda w: DataLoader(np.zeros((3, 1, 2, 2)), np.zeros(4, np.uint8)),
        ValueError,
        ("t", "3 targets", "(4,)"),
    ),
    # ---- datasets
    Case("unknown dataset name", lambda w: load_dataset("imagenet"), ValueError, ("dataset", "'imagenet'", "'mnist'")),
    Case(
        "truncated IDX file",
        lambda w: load_idx_directory(w.root / "idx"),
        ValueError,
        ("train-images-idx3-ubyte", "truncated", "(12, 28, 28)"),
    ),
    Case(
        "corrupt IDX file",
        lambda w: load_idx_directory(w.root / "badmagic"),
        ValueError,
        ("t10k-labels-idx1-ubyte", "not an IDX file", "magic"),
    ),
    Case(
        "truncated CIFAR-10 batch",
        lambda w: load_cifar10(w.root / "cifar"),
        ValueError,
        ("data_batch_1.bin", "3073-byte", "truncated"),
    ),
    Case(
        "missing dataset directory",
        lambda w: load_idx_directory(w.root / "nowhere"),
        FileNotFoundError,
        ("nowhere", "IDX dataset directory"),
    ),
    # ---- checkpoints
    Case(
        "truncated checkpoint",
        lambda w: w.net.load_params(w.root / "torn.safetensors"),
        ValueError,
        ("torn.safetensors", "not a valid safetensors file", "truncated"),
    ),
    Case(
        "checkpoint of another architecture",
        lambda w: w.net.load_params(w.root / "deep.safetensors"),
        ValueError,
        ("deep.safetensors", "another architecture", "SimpleConvNet"),
    ),
    Case(
        "checkpoint of a future format",
        lambda w: load_checkpoint(w.root / "future.safetensors"),
        ValueError,
        ("future.safetensors", "format version 7", "up to 2"),
    ),
    Case(
        "pickle in disguise",
        lambda w: w.net.load_params(w.root / "evil.safetensors"),
        ValueError,
        ("evil.safetensors", "pickle", "nothing was executed"),
    ),
    Case(
        "state of the wrong shape",
        lambda w: w.net.load_state_dict({**w.net.state_dict(), "W2": np.zeros((2, 2))}),
        ValueError,
        ("W2", "expected (432, 8)", "(2, 2)"),
    ),
]


def test_the_catalogue_is_large_and_distinct():
    names = [c.name for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, tmp_path):
    world = World(tmp_path)
    before = world.snapshot()
    with pytest.raises(case.exc) as info:
        case.call(world)
    message = str(info.value)
    for word in case.words:
        assert word in message, f"{word!r} not in {message!r}"
    assert world.snapshot() == before, "state changed"


CLI_CASES = [
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "-5"], "--batch-size"),
    (["--train-size", "0"], "--train-size"),
    (["--lr", "-1"], "--lr"),
    (["--dataset", "nope"], "unknown dataset 'nope'"),
    (["--device", "tpu"], "--device"),
    (["--resume", "{root}/missing.safetensors"], "no such checkpoint file"),
    (["--resume", "{root}/evil.safetensors"], "pickle"),
    (["--resume", "{root}/torn.safetensors"], "not a valid safetensors file"),
    (["--resume", "{root}/future.safetensors"], "format version 7"),
    (["--dataset", "{root}/idx"], "truncated"),
]


@pytest.mark.parametrize(("args", "words"), CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_bad_input_one_line_exit_2_nothing_written(args, words, tmp_path, capsys):
    world = World(tmp_path)
    before = world.snapshot()
    out = tmp_path / "out"
    code = train_main(["--device", "cpu", "--quiet", "--out", str(out), *(a.format(root=tmp_path) for a in args)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("python -m cnn_xp.train: error: ") and words in err[0]
    assert not out.exists()
    assert world.snapshot() == before
