"""The open registries: a user's optimizer, dataset and model, registered the way cnn_xp's own
are, run train -> resume -> evaluate through the library and the command line."""

from __future__ import annotations

import numpy as np
import pytest

import cnn_xp
from cnn_xp import Affine, Convolution, Network, Relu
from cnn_xp.backend import get_array_module
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.train import main as train_main
from cnn_xp.datasets import DATASETS
from cnn_xp.models import MODELS
from cnn_xp.optim import OPTIMIZERS, Optimizer
from cnn_xp.registry import Registry, UnknownNameError
from cnn_xp.train import load_checkpoint
from cnn_xp.train.config import ConfigError, RunConfig
from cnn_xp.train.run import Run


class Lion(Optimizer):
    """Sign of an interpolated momentum (Chen et al., 2023): a hyperparameter cnn_xp never heard of."""

    state_names = ("m",)
    hyper_names = ("lr", "beta_lion")

    def __init__(self, lr: float = 1e-3, beta_lion: float = 0.9) -> None:
        super().__init__(lr)
        self.beta_lion = float(beta_lion)

    def _update_one(self, key, params, grad):
        xp = get_array_module(grad)
        m = self._slot("m", key, params[key])
        params[key] -= self.lr * xp.sign(self.beta_lion * m + (1 - self.beta_lion) * grad)
        m *= self.beta_lion
        m += (1 - self.beta_lion) * grad


def tiny(input_dim, output_size, *, dtype="float32", device=None, seed=None):
    rng = np.random.default_rng(seed)
    c, h, w = input_dim
    conv = Convolution(0.3 * rng.standard_normal((4, c, 3, 3)).astype(dtype), np.zeros(4, dtype), pad=1)
    fc = Affine(0.05 * rng.standard_normal((4 * h * w, output_size)).astype(dtype), np.zeros(output_size, dtype))
    net = Network([("conv", conv), ("relu", Relu()), ("fc", fc)], input_dim=tuple(input_dim))
    return net.to_device(device or "cpu")


def stripes(where, split, options):
    """Two classes of 8x8 images: horizontal or vertical stripes, with noise (trained without
    --shift: a one-pixel shift swaps the stripes' phase)."""
    n = 200 if split == "train" else 60
    rng = np.random.default_rng(0 if split == "train" else 1)
    t = rng.integers(0, 2, n)
    x = rng.integers(0, 60, (n, 1, 8, 8))
    x[t == 0, :, ::2, :] += 180
    x[t == 1, :, :, ::2] += 180
    return x.astype(np.uint8), t.astype(np.int64)


@pytest.fixture
def registered():
    cnn_xp.register_optimizer(Lion)
    cnn_xp.register_model("tiny", tiny, summary="one convolution")
    cnn_xp.register_dataset("stripes", stripes, class_names=lambda where, options: ["horizontal", "vertical"])
    yield
    OPTIMIZERS.remove("lion")
    MODELS.remove("tiny")
    DATASETS.remove("stripes")


def test_a_users_optimizer_dataset_and_model_train_resume_and_evaluate(registered, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--model",
        "TINY",
        "--optimizer",
        "Lion",
        "--dataset",
        "stripes",
        "--lr",
        "0.003",
        "--shift",
        "0",
        "--device",
        "cpu",
    ]
    assert train_main([*argv, "--batch-size", "20", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    ck = load_checkpoint(out / "last.safetensors")
    assert ck.optimizer["name"] == "Lion" and set(ck.optimizer["hyper"]) == {"lr", "beta_lion"}
    assert ck.optimizer["hyper"]["beta_lion"] == 0.9
    assert ck.run["model"] == "tiny" and ck.run["optimizer"] == "lion" and ck.run["dataset"] == "stripes"
    assert train_main(["--resume", str(out / "last.safetensors"), "--epochs", "4", "--quiet"]) == 0
    ck = load_checkpoint(out / "last.safetensors")
    assert ck.trainer["epoch"] == 4 and ck.optimizer["iter"] == 40
    capsys.readouterr()
    assert evaluate_main([str(out / "best.safetensors"), "--dataset", "stripes", "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    accuracy = float(report.split("test accuracy: ")[1].split("%")[0])
    assert accuracy > 90, report  # the stripes are learnt
    assert "horizontal" in report and "vertical" in report  # the dataset's class names


def test_the_library_runs_the_same_plan_without_the_command_line(registered, tmp_path):
    config = RunConfig(model="tiny", optimizer="lion", dataset="stripes", lr=0.003, batch_size=20, epochs=2, shift=0,
                       lr_schedule="constant", device="cpu", out=str(tmp_path), quiet=True)  # fmt: skip
    summary = Run(config).fit()
    assert summary["run"]["model"] == "tiny" and summary["run"]["epochs"] == 2
    resumed = Run.resume(tmp_path / "last.safetensors", epochs=4, quiet=True)
    assert resumed.config.optimizer == "lion" and resumed.config.lr == 0.003 and resumed.trainer.epoch == 2
    summary = resumed.fit()
    assert summary["run"]["epochs"] == 4 and summary["final_test_acc"] > 0.9, summary


def test_a_file_naming_an_optimizer_not_registered_is_refused_naming_it(registered, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--model", "tiny", "--optimizer", "lion", "--dataset", "stripes", "--device", "cpu", "--batch-size", "20"]
    assert train_main([*argv, "--lr", "0.01", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    OPTIMIZERS.remove("lion")
    capsys.readouterr()
    assert train_main(["--resume", str(out / "last.safetensors"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "unknown optimizer 'Lion'" in err and "'adam'" in err


def test_a_resume_refuses_a_changed_plan_and_takes_a_new_session(tmp_path):
    stored = RunConfig(batch_size=50, lr=0.01).stored(num_classes=10)
    with pytest.raises(ConfigError, match=r"lr: a resumed run keeps the settings it started with \(lr 0.01, not 0.1\)"):
        RunConfig.resumed(stored, {"lr": 0.1})
    config = RunConfig.resumed(stored, {"lr": 0.01, "epochs": 9, "device": "cpu", "save_every": 5})
    assert (config.batch_size, config.lr, config.epochs, config.device, config.save_every) == (50, 0.01, 9, "cpu", 5)


def test_every_setting_is_checked_by_name():
    for bad, words in [
        ({"batch_size": 0}, "batch_size: expected an integer"),
        ({"model": "alexnet"}, "model: unknown model 'alexnet'"),
        ({"optimizer": "lbfgs"}, "optimizer: unknown optimizer 'lbfgs'"),
        ({"lr": -1.0}, "lr: expected a number in (0, inf)"),
        ({"lr_decay": 0.5}, "lr_decay: only --lr-schedule exp uses a decay factor"),
        ({"threads": 0}, "threads: expected a thread count"),
    ]:
        with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(")", r"\)")):
            RunConfig(**bad)


def test_the_registry_refuses_a_second_entry_under_a_taken_name_and_lists_names():
    registry: Registry[int] = Registry("thing", key=str.lower)
    registry.add("One", 1)
    registry.add("one", 1)  # the same again: no-op
    with pytest.raises(ValueError, match="thing 'ONE' is already registered"):
        registry.add("ONE", 2)
    with pytest.raises(UnknownNameError, match=r"unknown thing 'two'; expected one of \['one'\]"):
        registry["two"]
    with pytest.raises(TypeError, match=r"expected a subclass of cnn_xp\.optim\.Optimizer"):
        cnn_xp.register_optimizer(int)
