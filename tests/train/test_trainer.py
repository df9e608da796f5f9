"""Trainer: history, determinism, exact resume, divergence, interruption."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

from cnn_xp import Adam
from cnn_xp.optim import cosine
from cnn_xp.train import NonFiniteLossError, Trainer, TrainingInterrupted, load_checkpoint

from .conftest import loaders, small_net


def weights(trainer):
    return {k: np.array(v) for k, v in trainer.model.params.items()}


def test_history_and_files(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path)
    history = trainer.fit(2)
    assert [h["epoch"] for h in history] == [1, 2] and history[-1]["step"] == 16
    for h in history:
        assert set(h) == {"epoch", "step", "loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s"}
        assert 0 <= h["train_acc"] <= 1 and 0 <= h["test_acc"] <= 1 and h["images_per_s"] > 0
    assert history[1]["loss"] < history[0]["loss"]
    assert {"last.safetensors", "best.safetensors", "metrics.csv"} <= {p.name for p in tmp_path.iterdir()}
    assert len((tmp_path / "metrics.csv").read_text().strip().splitlines()) == 3
    assert load_checkpoint(tmp_path / "last.safetensors").trainer["epoch"] == 2


def test_same_seed_bit_identical(make_trainer):
    a, b = make_trainer(), make_trainer()
    a.fit(2)
    b.fit(2)
    for k, v in weights(a).items():
        np.testing.assert_array_equal(v, weights(b)[k])


def _resumed(mnist_small, path, epochs, schedule_total):
    ck = load_checkpoint(path)
    train, test = loaders(mnist_small)
    t = Trainer(
        ck.build_model(), ck.build_optimizer(), train, test, quiet=True, lr_schedule=cosine(0.01, schedule_total)
    )
    t.load_state(ck.trainer, ck.rng)
    t.fit(epochs)
    return t


def test_resume_at_an_epoch_boundary_is_bit_exact(mnist_small, tmp_path):
    train, test = loaders(mnist_small)
    straight = Trainer(small_net(), Adam(lr=0.01), train, test, quiet=True, lr_schedule=cosine(0.01, 24))
    straight.fit(3)
    train, test = loaders(mnist_small)
    first = Trainer(small_net(), Adam(lr=0.01), train, test, out_dir=tmp_path, quiet=True, lr_schedule=cosine(0.01, 24))
    first.fit(1)
    resumed = _resumed(mnist_small, tmp_path / "last.safetensors", 3, 24)
    for k, v in weights(straight).items():
        np.testing.assert_array_equal(weights(resumed)[k], v)
    assert [h["test_acc"] for h in resumed.history] == [h["test_acc"] for h in straight.history]


class Stop(Exception):  # noqa: N818 - a test signal, not an error
    """Raised by a test to end a training run where a crash or a kill would."""


def _stopped_then_resumed(mnist_small, tmp_path, save_every, patch, counters):
    """Train 2 epochs straight; train again with checkpoints every ``save_every`` steps, with
    ``patch(trainer)`` making the run raise Stop somewhere; check the checkpoint's (epoch, step,
    step_in_epoch) against ``counters``, resume from it to 2 epochs and check it equals the straight run."""
    train, test = loaders(mnist_small)
    straight = Trainer(small_net(), Adam(lr=0.01), train, test, quiet=True)
    straight.fit(2)
    train, test = loaders(mnist_small)
    first = Trainer(small_net(), Adam(lr=0.01), train, test, out_dir=tmp_path, quiet=True, save_every=save_every)
    patch(first)
    with pytest.raises(Stop):
        first.fit(2)
    ck = load_checkpoint(tmp_path / "last.safetensors")
    assert (ck.trainer["epoch"], ck.trainer["step"], ck.trainer["step_in_epoch"]) == counters
    train, test = loaders(mnist_small)
    resumed = Trainer(ck.build_model(), ck.build_optimizer(), train, test, quiet=True)
    resumed.load_state(ck.trainer, ck.rng)
    resumed.fit(2)
    for k, v in weights(straight).items():
        np.testing.assert_array_equal(weights(resumed)[k], v)
    assert [h["step"] for h in resumed.history] == [8, 16]
    assert resumed.history[-1]["loss"] == straight.history[-1]["loss"]
    assert resumed.history[-1]["test_acc"] == straight.history[-1]["test_acc"]


def test_resume_mid_epoch_is_bit_exact(mnist_small, tmp_path):
    def stop_after_saving_step_10(trainer):
        original = trainer.save_checkpoint

        def save_then_stop(path):
            out = original(path)
            if trainer.step == 10:  # epoch 2, step 2 of 8
                raise Stop
            return out

        trainer.save_checkpoint = save_then_stop

    _stopped_then_resumed(mnist_small, tmp_path, 5, stop_after_saving_step_10, (1, 10, 2))


def test_killed_after_an_epochs_last_step_before_its_end_resumes_bit_exact(mnist_small, tmp_path):
    """A periodic checkpoint on an epoch's last step, then a kill before the epoch's end is
    recorded: step_in_epoch == steps per epoch.  It loads and resumes (found by the SIGKILL test)."""

    def kill_before_the_end_of_epoch_2(trainer):
        end_epoch = trainer._end_epoch

        def killed(epochs):
            if trainer.epoch == 1:  # the periodic save at step 8 of 8 of epoch 2 happened; its end did not
                raise Stop
            end_epoch(epochs)

        trainer._end_epoch = killed

    _stopped_then_resumed(mnist_small, tmp_path, 4, kill_before_the_end_of_epoch_2, (1, 16, 8))


@pytest.mark.filterwarnings(
    "ignore:overflow encountered:RuntimeWarning", "ignore:invalid value encountered:RuntimeWarning"
)
def test_non_finite_loss_stops_and_keeps_last_checkpoint(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path, lr=0.01)
    trainer.fit(1)
    before = (tmp_path / "last.safetensors").read_bytes()
    trainer.optimizer.lr = 1e30  # diverge
    trainer.lr_schedule = None
    with pytest.raises(
        NonFiniteLossError,
        match=r"non-finite loss .* at epoch 2, step \d+ \(global step \d+\).*last good checkpoint is .*last\.safetensors",
    ):
        trainer.fit(2)
    assert (tmp_path / "last.safetensors").read_bytes() == before


def test_sigint_finishes_the_step_saves_and_stops(make_trainer, tmp_path):
    trainer = make_trainer(out=tmp_path)
    real_update = trainer.optimizer.update
    calls = []

    def update(params, grads):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of a step
        real_update(params, grads)

    trainer.optimizer.update = update
    before = signal.getsignal(signal.SIGINT)  # the default handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted) as info:
        trainer.fit(2)
    assert info.value.checkpoint == tmp_path / "last.safetensors"
    ck = load_checkpoint(info.value.checkpoint)
    assert ck.trainer["step"] == 3 and ck.optimizer["iter"] == 3  # the interrupted step completed
    assert signal.getsignal(signal.SIGINT) is before  # the handler that was there is back


def test_loader_on_another_device_is_refused(mnist_small):
    train, test = loaders(mnist_small)
    xps = pytest.importorskip("array_api_strict")
    del xps
    train.device = type(train.device)("gpu", 0)
    with pytest.raises(ValueError, match="train_loader: delivers batches on gpu:0 but the trainer's device is cpu"):
        Trainer(small_net(), Adam(), train, test, device="cpu")


def test_progress_bar_shows_loss_and_throughput(mnist_small):
    import io

    train, test = loaders(mnist_small)
    stream = io.StringIO()
    Trainer(small_net(), Adam(lr=0.01), train, test, progress=True, stream=stream, sync_every=2).fit(1)
    text = stream.getvalue()
    assert "epoch 1/1" in text and "loss=" in text and "img_s=" in text  # tqdm's bar and postfix
    assert "test " in text  # the per-epoch line


def test_plain_lines_when_not_a_terminal_and_quiet_silences(mnist_small):
    import io

    train, test = loaders(mnist_small)
    stream = io.StringIO()
    Trainer(small_net(), Adam(lr=0.01), train, test, stream=stream, sync_every=2).fit(1)
    lines = stream.getvalue().splitlines()
    assert any(line.startswith("epoch 1 step ") and "img/s" in line for line in lines)
    assert "\r" not in stream.getvalue()  # no progress-bar redraws
    train, test = loaders(mnist_small)
    quiet = io.StringIO()
    Trainer(small_net(), Adam(lr=0.01), train, test, stream=quiet, quiet=True).fit(1)
    assert quiet.getvalue() == ""


def test_labels_outside_the_models_classes_are_refused_before_anything_moves(mnist_small):
    (x, t), test = mnist_small
    bad = t.copy()
    bad[7] = 10  # the network has 10 classes: 0..9
    train, test_loader = loaders(((x, bad), test))
    net = small_net()
    before = {k: np.array(v, copy=True) for k, v in net.params.items()}
    with pytest.raises(ValueError, match=r"train_loader: labels must be integers in \[0, 10\).*\[0, 10\]"):
        Trainer(net, Adam(), train, test_loader, device="cpu")
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, before[k])
