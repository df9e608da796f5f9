"""``--engine onnxruntime`` for evaluate and predict: ONNX Runtime runs the checkpoint's network
(cnn_xp's own export) and gives cnn_xp's outputs to 1e-5."""

from __future__ import annotations

import builtins
import re

import numpy as np
import pytest

from cnn_xp.cli import evaluate, predict
from cnn_xp.cli import train as train_cli


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    argv = ["--device", "cpu", "--train-size", "600", "--test-size", "200", "--epochs", "1", "--out", str(out)]
    assert train_cli.main([*argv, "--quiet"]) == 0
    return out / "best.safetensors"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from PIL import Image

    from cnn_xp.datasets import load_mnist

    (_, _), (x, _) = load_mnist(normalize=False)
    folder = tmp_path_factory.mktemp("digits")
    for i in range(12):
        Image.fromarray(x[i, 0]).save(folder / f"{i:02d}.png")
    return folder


def probabilities(text: str) -> dict[str, list[float]]:
    return {
        line.split(":")[0]: [float(p) for p in re.findall(r"p=([\d.]+)", line)]
        for line in text.splitlines()
        if "p=" in line
    }


def test_predict_gives_cnn_xps_probabilities_through_onnx_runtime(checkpoint, images, capsys):
    pytest.importorskip("onnxruntime")
    outputs = {}
    for engine in ("cnn_xp", "onnxruntime"):
        argv = [str(checkpoint), str(images), "--device", "cpu", "--top-k", "3", "--engine", engine]
        assert predict.main(argv) == 0
        outputs[engine] = capsys.readouterr().out
    ours, theirs = probabilities(outputs["cnn_xp"]), probabilities(outputs["onnxruntime"])
    assert len(ours) == 12 and ours.keys() == theirs.keys()
    for name in ours:
        np.testing.assert_allclose(theirs[name], ours[name], rtol=0, atol=1e-5)
    classes = [re.findall(r"\(class (\d+)\)", line) for line in outputs["cnn_xp"].splitlines()]
    assert classes == [re.findall(r"\(class (\d+)\)", line) for line in outputs["onnxruntime"].splitlines()]


def test_evaluate_gives_the_same_accuracy_and_confusion_matrix(checkpoint, capsys):
    pytest.importorskip("onnxruntime")
    reports = {}
    for engine in ("cnn_xp", "onnxruntime"):
        assert evaluate.main([str(checkpoint), "--device", "cpu", "--test-size", "500", "--engine", engine]) == 0
        reports[engine] = capsys.readouterr().out.splitlines()
    assert "ONNX Runtime" in reports["onnxruntime"][0]
    assert reports["cnn_xp"][1:] == reports["onnxruntime"][1:]  # accuracy line and matrix


def test_the_engine_refuses_what_it_cannot_do_in_one_line(checkpoint, images, capsys, monkeypatch):
    argv = [str(checkpoint), str(images), "--engine", "onnxruntime", "--device", "gpu"]
    assert predict.main(argv) == 2
    assert "--engine onnxruntime runs on the CPU; got --device gpu" in capsys.readouterr().err
    real = builtins.__import__

    def without(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without)
    assert evaluate.main([str(checkpoint), "--engine", "onnxruntime", "--test-size", "10"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ONNX Runtime is not installed (pip install 'cnn_xp[onnx]')" in err[0]
