"""Divergence never replaces a good checkpoint: nothing non-finite is ever written, a NaN test
loss stops the run like a NaN training loss, and the checkpoint named as the last good one is
finite and resumable."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp.cli.train import main as train_main
from cnn_xp.train import DivergedError, NonFiniteLossError, load_checkpoint

from .test_faults import check_resumable

BASE = ["--device", "cpu", "--test-size", "100", "--quiet"]


def test_lr_1e308_writes_nothing_and_exits_1(tmp_path, capsys):
    """The issue's first case: it used to exit 0 with all-NaN last and best checkpoints."""
    out = tmp_path / "run"
    assert train_main([*BASE, "--train-size", "100", "--epochs", "1", "--lr", "1e308", "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "non-finite" in err and "no checkpoint was written" in err
    assert not out.exists()


def test_save_every_step_never_writes_the_diverged_weights(tmp_path, capsys):
    """The issue's second case: it used to name an all-NaN 'last good checkpoint'."""
    out = tmp_path / "run"
    argv = [*BASE, "--train-size", "300", "--epochs", "2", "--save-every", "1", "--lr", "1e308", "--out", str(out)]
    assert train_main(argv) == 1
    err = capsys.readouterr().err
    assert "non-finite values in the model's W1 at epoch 1, step 1 (global step 1)" in err
    assert not (out / "last.safetensors").exists() and not (out / "best.safetensors").exists()


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_the_named_last_good_checkpoint_is_finite_and_resumable(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path, lr=0.01, save_every=2)
    trainer.fit(1)  # good: last and best written
    good_best = (tmp_path / "best.safetensors").read_bytes()
    real_update = trainer.optimizer.update

    def update(params, grads):  # the 3rd step of epoch 2 blows the weights up
        real_update(params, grads)
        if trainer.step_in_epoch == 2:
            params["W1"][...] = np.inf

    trainer.optimizer.update = update
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite loss .* at epoch 2, step 4 .*last good checkpoint is .*last\.safetensors"
    ):
        trainer.fit(2)  # the inf weights give a NaN loss at the next step, seen at the save of step 4
    check_resumable(tmp_path / "last.safetensors")
    ck = load_checkpoint(tmp_path / "last.safetensors")
    assert ck.trainer["epoch"] == 1 and ck.trainer["step_in_epoch"] == 2  # the save before the blow-up
    assert (tmp_path / "best.safetensors").read_bytes() == good_best


def test_a_non_finite_test_loss_stops_the_run(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path, lr=0.01)
    trainer.fit(1)
    before = (tmp_path / "last.safetensors").read_bytes()
    real_evaluate = trainer.evaluate
    trainer.evaluate = lambda loader: (float("nan"), real_evaluate(loader)[1])
    with pytest.raises(NonFiniteLossError, match=r"non-finite test loss \(nan\) after epoch 2; .*last good checkpoint"):
        trainer.fit(2)
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert len(trainer.history) == 1


def test_non_finite_optimizer_state_is_caught_too(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path, lr=0.01)
    trainer.fit(1)
    slot = next(iter(trainer.optimizer.state.values()))
    key = next(iter(slot))
    slot[key][...] = np.nan
    with pytest.raises(NonFiniteLossError, match=r"the optimizer's"):
        trainer.save_checkpoint(tmp_path / "last.safetensors")


@pytest.mark.parametrize(
    "argv",
    [
        ["--optimizer", "adam", "--lr", "1e4"],
        ["--optimizer", "sgd", "--lr", "1e3"],
        ["--optimizer", "momentum", "--lr", "50"],
    ],
)
def test_a_run_whose_weights_explode_but_stay_finite_says_so_and_exits_1(tmp_path, capsys, argv):
    """(Such runs once exited 0 with checkpoints that predict one class, saying only the final accuracy.)"""
    out = tmp_path / "run"
    args = ["--device", "cpu", "--train-size", "1000", "--test-size", "100", "--epochs", "2", "--quiet", *argv]
    assert train_main([*args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run diverged: training loss" in err[0] and "chance: 10.0%" in err[0]
    assert not (out / "last.safetensors").exists()  # nothing of it written


def test_the_last_good_checkpoint_survives_a_divergence(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path)
    trainer.fit(1)
    good = (tmp_path / "last.safetensors").read_bytes()
    trainer.optimizer.lr, trainer.lr_schedule = 1e4, None
    with pytest.raises(DivergedError, match=r"the last good checkpoint is .*last\.safetensors"):
        trainer.fit(2)
    assert (tmp_path / "last.safetensors").read_bytes() == good
