"""Output-side failures and bounds on what users ask for: one line and a non-zero exit, never a
traceback, checked before the work where possible; nothing half-written left behind."""

from __future__ import annotations

import errno
import importlib.util
import time

import numpy as np
import pytest

from cnn_xp.cli import bench as bench_cli
from cnn_xp.cli import train as train_cli
from cnn_xp.data import DataLoader
from cnn_xp.train import Trainer

QUICK = [
    "--device",
    "cpu",
    "--train-size",
    "300",
    "--test-size",
    "100",
    "--batch-size",
    "50",
    "--epochs",
    "1",
    "--quiet",
]


def one_line(capsys, prog="python -m cnn_xp.train"):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return err


def test_out_that_cannot_be_a_folder(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = [
        (a_file, "is a file, not a folder"),
        (a_file / "sub", "lies under"),
        (tmp_path / ("x" * 300), "longer than the 255 bytes"),
        (tmp_path.joinpath(*["y" * 200] * 30), "File name too long"),
        ("/proc/cnn_xp_run", "cannot create or write"),  # a file system that takes no new folder
    ]
    for out, words in cases:
        assert train_cli.main([*QUICK, "--out", str(out)]) == 2, out
        assert words in one_line(capsys), out
    assert a_file.read_text() == "x"


def test_a_full_disk_while_writing_plots_is_one_line_and_leaves_no_empty_file(tmp_path, monkeypatch, capsys):
    from cnn_xp.train import plots

    def full(path, blob):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(plots, "write_atomically", full)
    assert train_cli.main([*QUICK, "--out", str(tmp_path)]) == 1
    err = one_line(capsys)
    assert "could not write the plots or summary.json" in err and "No space left on device" in err
    assert not (tmp_path / "curves.png").exists()  # no 0-byte figure
    assert (tmp_path / "last.safetensors").is_file() and (tmp_path / "metrics.csv").is_file()


def test_planted_symlinks_are_replaced_not_followed(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("curves.png", "summary.json", "metrics.csv", "last.safetensors"):
        (out / name).symlink_to(target)
    assert train_cli.main([*QUICK, "--out", str(out)]) == 0
    assert target.read_text() == "keep me"
    assert not any((out / name).is_symlink() for name in ("curves.png", "summary.json", "metrics.csv"))


def test_bench_json_that_cannot_be_written_is_refused_before_measuring(tmp_path, capsys):
    start = time.perf_counter()
    assert bench_cli.main(["--json", str(tmp_path / "no" / "bench.json")]) == 2
    assert "--json: folder" in one_line(capsys, "python -m cnn_xp.bench")
    assert bench_cli.main(["--json", str(tmp_path)]) == 2
    assert "is a folder, not a file" in one_line(capsys, "python -m cnn_xp.bench")
    assert time.perf_counter() - start < 5  # refused before any measurement ran


def test_shift_larger_than_half_the_image(capsys):
    assert train_cli.main([*QUICK, "--shift", "20"]) == 2
    assert "--shift: expected at most half the image, 14 px for 28x28 images, got 20" in one_line(capsys)
    with pytest.raises(ValueError, match=r"shift: expected at most half the image, 2 px for 4x5 images, got 3"):
        DataLoader(np.zeros((2, 1, 4, 5)), np.zeros(2, np.int64), 1, shift=3)


def test_memory_error_anywhere_in_training_says_what_to_lower(tmp_path, monkeypatch, capsys):
    def fit(self, epochs):
        raise MemoryError

    monkeypatch.setattr(Trainer, "fit", fit)
    assert train_cli.main([*QUICK, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [
        "python -m cnn_xp.train: error: out of memory with --batch-size 50 on cpu; try a smaller --batch-size "
        "(or a smaller --model, or --dtype float32)"
    ]


def test_lr_decay_that_drives_the_rate_to_zero_warns(tmp_path, capsys):
    args = [*QUICK, "--epochs", "4", "--lr-schedule", "exp", "--lr-decay", "0.01", "--out", str(tmp_path)]
    assert train_cli.main(args) == 0
    err = capsys.readouterr().err
    assert "warning: --lr-decay 0.01 takes the learning rate from 0.003 to 3e-09 by epoch 4" in err


def test_a_batch_that_cannot_fit_in_memory_is_refused_at_once(capsys):
    start = time.perf_counter()
    assert train_cli.main(["--device", "cpu", "--model", "deep", "--batch-size", "60000", "--quiet"]) == 2
    err = one_line(capsys)
    assert "--batch-size: one training step of 60000 needs about" in err and "try --batch-size" in err
    assert time.perf_counter() - start < 30  # refused before training, not after minutes


def test_a_full_disk_while_writing_metrics_is_one_line(tmp_path, monkeypatch, capsys):
    def full(self, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Trainer, "write_metrics", full)
    assert train_cli.main([*QUICK, "--out", str(tmp_path)]) == 1
    err = one_line(capsys)
    assert "could not write" in err and "metrics.csv: No space left on device; the checkpoints are intact" in err


def test_outputs_with_names_too_long_or_that_are_inputs_are_one_line(tmp_path, capsys):
    """(export to a 300-character name once gave a traceback; export X X replaced the checkpoint.)"""
    from cnn_xp import SimpleConvNet
    from cnn_xp.cli.export import main as export_main

    ckpt = tmp_path / "p.safetensors"
    SimpleConvNet(seed=0).save_params(ckpt)
    before = ckpt.read_bytes()
    for out, words in [(tmp_path / ("x" * 300 + ".onnx"), "File name too long"), (ckpt, "is the input")]:
        assert export_main([str(ckpt), str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0], err
    assert ckpt.read_bytes() == before
    long_but_valid = tmp_path / ("y" * 240 + ".onnx")  # fits the file system: written, temporaries and all
    if importlib.util.find_spec("onnx") is not None:
        assert export_main([str(ckpt), str(long_but_valid)]) == 0 and long_but_valid.is_file()
