"""The command-line tools end to end: train, resume, evaluate, predict, and every bad argument."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnn_xp.backend import gpu_available
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.predict import main as predict_main
from cnn_xp.cli.train import build_parser
from cnn_xp.cli.train import main as train_main
from cnn_xp.train import load_checkpoint

QUICK = ["--train-size", "300", "--test-size", "200", "--batch-size", "50", "--quiet"]


def run_module(module, *args, timeout=120, **kw):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, **kw
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    result = run_module("cnn_xp.train", "--device", "cpu", "--epochs", "2", "--out", out, *QUICK[:-1])
    return out, result


def test_end_to_end_run_writes_everything(trained):
    out, result = trained
    assert result.returncode == 0, result.stderr
    assert {"last.safetensors", "best.safetensors", "metrics.csv", "curves.png", "filters.png", "summary.json"} <= {
        p.name for p in out.iterdir()
    }
    assert "device: cpu" in result.stderr
    assert "epoch 2/2" in result.stderr  # plain log lines: stderr is not a terminal here
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert (
        lines[0].startswith("final test accuracy: ") and lines[1].startswith("total time: ") and "images/s" in lines[1]
    )
    assert len((out / "metrics.csv").read_text().splitlines()) == 3
    for png in ("curves.png", "filters.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ck = load_checkpoint(out / "last.safetensors")
    assert ck.run["model"] == "simple" and ck.trainer["epoch"] == 2 and ck.model_config["name"] == "SimpleConvNet"


@pytest.mark.slow
def test_quiet_prints_only_the_summary(tmp_path):
    assert train_main(["--device", "cpu", "--epochs", "1", "--out", str(tmp_path), *QUICK]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["simple", "deep"])
def test_resume_gives_bit_identical_weights(tmp_path, model):
    """E epochs straight == E1 epochs, then --resume to E, with the default shifts and the exp
    schedule (it depends on the step only; the default cosine plans for --epochs, and its resume
    of an interrupted run is tests/train/test_trainer.py's)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = ["--device", "cpu", *QUICK, "--train-size", "200", "--model", model, "--lr-schedule", "exp"]
    assert train_main([*args, "--epochs", "2", "--out", str(straight)]) == 0
    assert train_main([*args, "--epochs", "1", "--out", str(split)]) == 0
    assert train_main(["--device", "cpu", "--quiet", "--epochs", "2", "--resume", str(split / "last.safetensors")]) == 0
    a = load_checkpoint(straight / "last.safetensors").model_state
    b = load_checkpoint(split / "last.safetensors").model_state
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.slow
def test_same_seed_same_weights_run_after_run(tmp_path):
    for name in ("a", "b"):
        assert (
            train_main(["--device", "cpu", "--epochs", "1", "--seed", "3", "--out", str(tmp_path / name), *QUICK]) == 0
        )
    a = load_checkpoint(tmp_path / "a" / "last.safetensors").model_state
    b = load_checkpoint(tmp_path / "b" / "last.safetensors").model_state
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_help_explains_every_flag():
    text = build_parser().format_help()
    for flag in (
        "--device",
        "--model",
        "--dataset",
        "--epochs",
        "--batch-size",
        "--optimizer",
        "--lr",
        "--seed",
        "--dtype",
        "--train-size",
        "--test-size",
        "--out",
        "--resume",
        "--save-every",
        "--quiet",
    ):
        assert flag in text
    assert run_module("cnn_xp.train", "--help").returncode == 0


BAD_ARGS = [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "-3"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "abc"], "--batch-size"),
    (["--train-size", "0"], "--train-size"),
    (["--test-size", "-1"], "--test-size"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--save-every", "-1"], "--save-every"),
    (["--lr-decay", "1.5"], "--lr-decay: expected a number in (0, 1], got 1.5"),
    (["--lr-decay", "0"], "--lr-decay"),
    (["--lr-decay", "0.5"], "--lr-decay: only --lr-schedule exp uses a decay factor; this run's schedule is cosine"),
    (["--lr-schedule", "step"], "--lr-schedule"),
    (["--seed", "-1"], "--seed"),
    (["--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["--dataset", "/definitely/not/here"], "unknown dataset"),
    (["--model", "resnet"], "--model"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--dtype", "float16"], "--dtype"),
    (["--device", "tpu"], "--device"),
    (["--resume", "/no/such/file.safetensors"], "--resume: no such checkpoint file"),
    (["--train-size", "10", "--batch-size", "50"], "--batch-size: 50 is larger than the 10 training samples"),
    (["--no-such-flag"], "unrecognized arguments"),
]


@pytest.mark.parametrize(("args", "words"), BAD_ARGS, ids=[" ".join(a) for a, _ in BAD_ARGS])
def test_bad_arguments_one_line_exit_2(args, words, capsys):
    assert train_main(["--device", "cpu", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m cnn_xp.train: error: ") and words in err[0]


def test_bad_argument_has_no_traceback_in_a_real_process():
    result = run_module("cnn_xp.train", "--epochs", "0")
    assert result.returncode == 2 and "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(gpu_available(), reason="this machine has a usable GPU")
def test_gpu_without_gpu_exits_2_saying_why():
    result = run_module("cnn_xp.train", "--device", "gpu")
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "not available" in line and "--device cpu" in line and "auto" in line


@pytest.mark.slow
def test_auto_device_says_which_it_chose(tmp_path):
    result = run_module("cnn_xp.train", "--device", "auto", "--epochs", "1", "--out", tmp_path, *QUICK[:-1])
    assert result.returncode == 0
    assert ("device: gpu:0" if gpu_available() else "device: cpu") in result.stderr


def test_resume_refuses_a_params_file(tmp_path, trained, capsys):
    from cnn_xp import SimpleConvNet

    p = tmp_path / "params.safetensors"
    SimpleConvNet().save_params(p)
    assert train_main(["--resume", str(p)]) == 2
    assert "parameters only" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_saves_and_exits_130(tmp_path):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cnn_xp.train",
            "--device",
            "cpu",
            "--epochs",
            "50",
            "--train-size",
            "2000",
            "--out",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.time() + 60
    while not (tmp_path / "metrics.csv").exists() and time.time() < deadline:
        time.sleep(0.2)  # wait until training is under way (one epoch done)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at epoch" in err and "checkpoint saved to" in err and "Traceback" not in err
    ck = load_checkpoint(tmp_path / "last.safetensors")
    assert ck.trainer["step"] >= 20


def test_evaluate_prints_accuracy_and_confusion_matrix(trained, capsys):
    out, _ = trained
    assert evaluate_main([str(out / "best.safetensors"), "--device", "cpu", "--test-size", "300"]) == 0
    text = capsys.readouterr().out
    assert "test accuracy: " in text and "rows: true class, columns: predicted class" in text
    rows = [
        line for line in text.splitlines() if line.strip() and line.strip()[0].isdigit() and len(line.split()) == 11
    ]
    assert len(rows) == 10 and sum(sum(int(v) for v in r.split()[1:]) for r in rows) == 300


def test_evaluate_and_predict_bad_input(tmp_path, capsys):
    evil = tmp_path / "model.safetensors"
    evil.write_bytes(b"\x80\x04\x95" + b"\x00" * 30)
    assert evaluate_main([str(evil)]) == 2
    assert "pickle" in capsys.readouterr().err
    assert evaluate_main([str(tmp_path / "missing.safetensors")]) == 2
    assert predict_main([str(tmp_path / "missing.safetensors"), "x.png"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_predict_images(trained, tmp_path, capsys):
    from PIL import Image

    from cnn_xp.datasets import load_mnist

    out, _ = trained
    _, (x, _t) = load_mnist(normalize=False)
    paths = []
    for i in range(3):
        # as a person would draw it: dark ink on white, larger than 28x28, as PNG and JPEG
        img = Image.fromarray(255 - x[i, 0]).resize((56, 56))
        path = tmp_path / f"digit{i}.{'png' if i < 2 else 'jpg'}"
        img.save(path)
        paths.append(path)
    assert predict_main([str(out / "best.safetensors"), *map(str, paths), "--device", "cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, paths, strict=True):
        assert line.startswith(f"{path}: ") and "(class " in line and " p=" in line
    not_image = tmp_path / "notes.png"
    not_image.write_text("hello")
    assert predict_main([str(out / "best.safetensors"), str(not_image)]) == 2
    assert "notes.png: not an image Pillow can read" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_on_fashion_mnist_directory(tmp_path):
    """--dataset PATH with an IDX directory (written here in the IDX format)."""
    from ..datasets.test_datasets import make_idx_dir

    data = tmp_path / "idx"
    data.mkdir()
    make_idx_dir(data, n_train=60, n_test=20)
    assert (
        train_main(
            [
                "--device",
                "cpu",
                "--dataset",
                str(data),
                "--epochs",
                "1",
                "--batch-size",
                "20",
                "--quiet",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert Path(tmp_path / "o" / "last.safetensors").is_file()


def test_runs_record_their_learning_rate_and_old_default_runs_resume_with_theirs(tmp_path, capsys):
    """The default learning rate changed (Adam: 0.002 -> 0.003); a run records the rate it used,
    and a checkpoint of a run that left it to the old default (``lr`` null) resumes with 0.002."""
    import json

    import safetensors.numpy

    from cnn_xp.train.checkpoint import load_checkpoint

    run = tmp_path / "run"
    assert train_main(["--device", "cpu", *QUICK, "--epochs", "1", "--out", str(run)]) == 0
    ck = load_checkpoint(run / "last.safetensors")
    assert ck.run["lr"] == 0.003 and ck.optimizer["hyper"]["lr"] < 0.003  # cosine: decayed within the run
    path = run / "last.safetensors"
    with open(path, "rb") as f:
        meta = json.loads(f.read(int.from_bytes(f.read(8), "little")))["__metadata__"]
    settings = json.loads(meta["run"])
    settings.update(lr=None, lr_schedule="exp")  # as the previous version wrote its default run
    meta["run"] = json.dumps(settings)
    safetensors.numpy.save_file(safetensors.numpy.load_file(str(path)), str(path), metadata=meta)
    assert train_main(["--device", "cpu", "--quiet", "--epochs", "2", "--resume", str(path)]) == 0
    resumed = load_checkpoint(path)
    assert resumed.run["lr"] == 0.002
    # exp: within epoch 2 the rate lies between 0.002 * 0.75 and 0.002 * 0.75**2 (0.003's: above)
    assert 0.002 * 0.75**2 < resumed.optimizer["hyper"]["lr"] < 0.002 * 0.75
