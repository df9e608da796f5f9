"""What ``cnn_xp.evaluate`` reads: the dataset the user names, or a bundled one — never a path
that a checkpoint's metadata picks — and only its test split."""

from __future__ import annotations

import json
import os

import safetensors.numpy

from cnn_xp import SimpleConvNet
from cnn_xp.cli.evaluate import main as evaluate_main

KW = {"conv_param": {"filter_num": 2, "filter_size": 5}, "hidden_size": 8}


def with_run(path, run):
    arrays = safetensors.numpy.load_file(str(path))
    with safetensors.safe_open(str(path), "numpy") as f:
        meta = dict(f.metadata())
    meta["run"] = json.dumps(run)
    safetensors.numpy.save_file(arrays, str(path), metadata=meta)


def test_a_path_in_the_checkpoint_is_named_not_opened(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # opening it for reading would block forever
    path = tmp_path / "params.safetensors"
    SimpleConvNet(**KW, seed=0).save_params(path)
    with_run(path, {"dataset": str(fifo)})
    assert evaluate_main([str(path), "--device", "cpu", "--test-size", "50"]) == 0
    out = capsys.readouterr().out
    assert "dataset: mnist (the default; the checkpoint was trained on" in out and str(fifo) in out


def test_a_bundled_dataset_in_the_checkpoint_is_used_and_said(tmp_path, capsys):
    path = tmp_path / "params.safetensors"
    SimpleConvNet(**KW, seed=0).save_params(path)
    with_run(path, {"dataset": "MNIST"})
    assert evaluate_main([str(path), "--device", "cpu", "--test-size", "50"]) == 0
    assert "dataset: MNIST (the bundled dataset the checkpoint was trained on)" in capsys.readouterr().out


def test_labels_outside_the_networks_classes_are_one_line(tmp_path, capsys):
    path = tmp_path / "five.safetensors"
    SimpleConvNet(**KW, output_size=5, seed=0).save_params(path)
    assert evaluate_main([str(path), "--device", "cpu", "--test-size", "50"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "labels must be in [0, 5)" in err[0], err


def test_images_that_do_not_fit_the_network_are_one_line(tmp_path, capsys):
    path = tmp_path / "small.safetensors"
    SimpleConvNet(input_dim=(1, 12, 12), **KW, seed=0).save_params(path)
    assert evaluate_main([str(path), "--device", "cpu", "--test-size", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "(1, 28, 28)" in err[0] and "(1, 12, 12)" in err[0], err
