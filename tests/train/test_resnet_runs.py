"""What works for SimpleConvNet works for a ResNet: the command line's train, resume, evaluate,
predict and export; bit-exact resumes; float64; PyTorch tensors as the array library; DLPack;
inference under no_grad."""

from __future__ import annotations

import numpy as np
import pytest

import cnn_xp
from cnn_xp import Adam, ResNet, no_grad, to_numpy
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.export import main as export_main
from cnn_xp.cli.predict import main as predict_main
from cnn_xp.cli.train import main as train_main
from cnn_xp.train import Trainer, load_checkpoint

from ..helpers import loaders, mnist_subset

QUICK = ["--device", "cpu", "--model", "resnet20", "--train-size", "200", "--test-size", "100", "--batch-size", "50"]


@pytest.fixture(scope="module")
def data():
    return mnist_subset(200, 100)


def resnet(dtype: str = "float32", seed: int = 0) -> ResNet:
    return ResNet(20, input_dim=(1, 28, 28), output_size=10, dtype=dtype, seed=seed)


@pytest.mark.slow
def test_the_command_line_trains_resumes_evaluates_predicts_and_exports_a_resnet(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*QUICK, "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    assert train_main(["--resume", str(out / "last.safetensors"), "--epochs", "2", "--quiet"]) == 0
    ck = load_checkpoint(out / "last.safetensors")
    assert ck.model_config["name"] == "ResNet" and ck.trainer["epoch"] == 2 and ck.run["model"] == "resnet20"
    capsys.readouterr()
    assert evaluate_main([str(out / "best.safetensors"), "--device", "cpu", "--test-size", "100"]) == 0
    assert "test accuracy:" in capsys.readouterr().out
    from PIL import Image

    (x, _), _ = mnist_subset(1, 1)
    Image.fromarray(x[0, 0]).save(tmp_path / "digit.png")
    assert predict_main([str(out / "best.safetensors"), str(tmp_path / "digit.png"), "--device", "cpu"]) == 0
    assert "digit.png" in capsys.readouterr().out
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'cnn_xp[onnx]')")
    assert export_main([str(out / "best.safetensors"), str(tmp_path / "m.onnx")]) == 0
    text = capsys.readouterr().out
    difference = float(text.split("max |difference| to cnn_xp's predict on 16 inputs: ")[1].split()[0])
    assert difference < 1e-4, text


@pytest.mark.slow
def test_a_resumed_resnet_run_equals_the_run_straight_through(data, tmp_path):
    """BatchNorm's running statistics and the batch split across threads included: bit for bit."""

    def fit(epochs, out=None, resume=None):
        train, test = loaders(data, batch=50)
        if resume is None:
            trainer = Trainer(resnet(), Adam(lr=0.003), train, test, out_dir=out, quiet=True)
        else:
            ck = load_checkpoint(resume)
            trainer = Trainer(ck.build_model(), ck.build_optimizer(), train, test, quiet=True)
            trainer.load_state(ck.trainer, ck.rng)
        trainer.fit(epochs)
        return trainer.model.state_dict()

    straight = fit(2)
    fit(1, out=tmp_path)
    resumed = fit(2, resume=tmp_path / "last.safetensors")
    for key, value in straight.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)


def test_a_resnet_on_pytorch_tensors_equals_numpy_in_float64(torch, data):
    (x, t), _ = data
    x, t = x[:6].astype(np.float64) / 255, t[:6].astype(np.int64)
    on_numpy = resnet("float64")
    on_torch = resnet("float64").to_device(torch.device("cpu"))
    assert all(isinstance(p, torch.Tensor) for p in on_torch.params.values())
    g_np = on_numpy.gradient(x, t)
    g_t = on_torch.gradient(torch.from_numpy(x), torch.from_numpy(t))
    for key in g_np:
        np.testing.assert_allclose(to_numpy(g_t[key]), g_np[key], rtol=1e-9, atol=1e-12, err_msg=key)


def test_inference_keeps_nothing_and_takes_dlpack_arrays(torch, data):
    (x, _), _ = data
    net = resnet().eval()
    batch = (x[:4] / 255).astype(np.float32)
    with no_grad():
        scores = net.predict(torch.from_numpy(batch))  # a PyTorch CPU tensor, read in place
    assert isinstance(scores, np.ndarray) and scores.shape == (4, 10)
    assert all(
        getattr(leaf, "_cache", None) is None and getattr(leaf, "_state", None) is None for leaf in net.leaves.values()
    )
    np.testing.assert_allclose(scores, net.predict(batch), rtol=1e-6, atol=1e-6)
    with pytest.raises(RuntimeError, match=r"backward\(\) called before forward\(\)"):
        net.backward()


def test_float64_training_steps_lower_the_loss(data):
    (x, t), _ = data
    net, opt = resnet("float64"), Adam(lr=0.003)
    x = (x[:50] / 255).astype(np.float64)
    first = float(net.loss(x, t[:50]))
    for _ in range(6):
        opt.update(net.params, net.gradient(x, t[:50]))
    assert float(net.loss(x, t[:50])) < first and net.dtype == np.float64
    assert isinstance(cnn_xp.models.build_model(net.spec()), ResNet)
