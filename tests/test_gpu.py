"""The GPU path on a real GPU: what the CPU tests cannot prove.  Every test is marked ``gpu`` and
skipped, saying why, without CuPy and a usable GPU (``pytest -m gpu`` runs only these; on a
machine with CuPy and a GPU the plain ``pytest`` runs them too).

Tolerances are :data:`cnn_xp.backend.AGREEMENT`'s, loosened where training steps compound
round-off (said at each place)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_xp import Adam, DeepConvNet, SimpleConvNet, to_device, to_numpy
from cnn_xp.backend import gpu_available
from cnn_xp.cli import evaluate as evaluate_cli
from cnn_xp.cli import predict as predict_cli
from cnn_xp.functions import conv2d
from cnn_xp.layers import Dropout
from cnn_xp.train import Trainer, load_checkpoint

from .helpers import gpu_skip_reason, loaders, mnist_subset, small_net

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_gpu():
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)


TRAINED = 1e-6  # float64 after 16 Adam steps: round-off of another BLAS, compounded (measured ~1e-12)


def _trainer(device, out=None, **kw):
    train, test = loaders(mnist_subset(), dtype="float64", device=device)
    return Trainer(
        small_net("float64").to_device(train.device), Adam(lr=0.01), train, test, quiet=True, out_dir=out, **kw
    )


def _assert_same_weights(a, b, rtol=TRAINED):
    for k, v in a.model.params.items():
        np.testing.assert_allclose(to_numpy(v), to_numpy(b.model.params[k]), rtol=rtol, atol=rtol)


def test_trainer_fit_with_prefetch_on_the_gpu_equals_the_cpu():
    gpu, cpu = _trainer("gpu", sync_every=3), _trainer("cpu", sync_every=3)
    gpu.fit(2)
    cpu.fit(2)
    _assert_same_weights(gpu, cpu)
    assert [h["test_acc"] for h in gpu.history] == [h["test_acc"] for h in cpu.history]


def test_training_steps_never_synchronise():
    import cupyx

    net, opt = SimpleConvNet(seed=0, device="gpu"), Adam()
    rng = np.random.default_rng(0)
    x = to_device(rng.random((100, 1, 28, 28), dtype=np.float32), "gpu")
    t = to_device(rng.integers(0, 10, 100), "gpu")
    for _ in range(3):
        with cupyx.allow_synchronize(False):  # any device-to-host read raises inside
            net.forward(x, t)
            opt.update(net.params, net.backward())
    assert np.isfinite(float(net.loss(x, t)))


def test_multi_chunk_convolution_equals_one_chunk(monkeypatch):
    from cnn_xp import backend

    rng = np.random.default_rng(1)
    x = rng.standard_normal((37, 3, 12, 12))
    w, b = rng.standard_normal((5, 3, 3, 3)), rng.standard_normal(5)
    dy = rng.standard_normal((37, 5, 12, 12))

    def run():
        xd, wd, bd = (to_device(a, "gpu") for a in (x, w, b))
        y, state = conv2d.conv2d_forward(xd, wd, bd, (1, 1), (1, 1), keep_cols=False)
        dx, dw, db = conv2d.conv2d_backward(to_device(dy, "gpu"), wd, state)
        return state.chunk, [to_numpy(a) for a in (y, dx, dw, db)]

    whole, expected = run()
    monkeypatch.setattr(backend, "_scratch", {i: 64 * 1024 for i in range(8)})  # 64 KiB of columns per chunk
    chunk, got = run()
    assert whole == 37 and chunk < 37
    for a, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12)


def test_checkpoint_written_on_the_gpu_loads_on_the_cpu_and_resumes_on_the_gpu(tmp_path):
    straight = _trainer("gpu")
    straight.fit(3)
    first = _trainer("gpu", out=tmp_path)
    first.fit(1)
    ck = load_checkpoint(tmp_path / "last.safetensors")
    on_cpu = ck.build_model(device="cpu")
    for k, v in first.model.params.items():
        np.testing.assert_array_equal(to_numpy(on_cpu.params[k]), to_numpy(v))  # exact: a copy
    train, test = loaders(mnist_subset(), dtype="float64", device="gpu")
    resumed = Trainer(ck.build_model(device="gpu"), ck.build_optimizer(device="gpu"), train, test, quiet=True)
    resumed.load_state(ck.trainer, ck.rng)
    resumed.fit(3)
    _assert_same_weights(resumed, straight, rtol=1e-10)  # the same device and kernels: round-off at most


def test_evaluate_and_predict_on_the_gpu_print_what_the_cpu_prints(tmp_path):
    from PIL import Image

    _trainer("cpu", out=tmp_path).fit(1)
    Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / "digit.png")
    texts = {}
    for device in ("cpu", "gpu"):
        for name, program, argv in (
            ("evaluate", evaluate_cli.main, [str(tmp_path / "last.safetensors"), "--test-size", "500"]),
            ("predict", predict_cli.main, [str(tmp_path / "last.safetensors"), str(tmp_path / "digit.png")]),
        ):
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                assert program([*argv, "--device", device]) == 0
            texts[device, name] = re.sub(r"device: \S+", "device: X", out.getvalue())
    assert texts["gpu", "evaluate"] == texts["cpu", "evaluate"]
    assert texts["gpu", "predict"].split("p=")[0] == texts["cpu", "predict"].split("p=")[0]


def test_dropout_in_training_mode_on_the_gpu():
    layer = Dropout(0.3, seed=0)
    x = to_device(np.ones((200, 500)), "gpu")
    y = to_numpy(layer.forward(x, train_flg=True))
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01  # 100,000 draws: 0.7 +- 0.0015 (1 sigma)
    np.testing.assert_allclose(y[kept], 1 / 0.7)  # kept units scaled by 1 / (1 - p)
    dx = to_numpy(layer.backward(to_device(np.full((200, 500), 2.0), "gpu")))
    np.testing.assert_array_equal(dx != 0, kept)  # the same mask backward
    again = to_numpy(Dropout(0.3, seed=0).forward(x, train_flg=True))
    np.testing.assert_array_equal(again, y)  # a seed gives the same masks
    net = DeepConvNet(seed=0, device="gpu")
    xb = to_device(np.random.default_rng(0).random((10, 1, 28, 28), dtype=np.float32), "gpu")
    assert not np.array_equal(to_numpy(net.predict(xb, train_flg=True)), to_numpy(net.predict(xb, train_flg=True)))


def test_gpu_1_when_two_gpus_exist():
    if not gpu_available(1):
        pytest.skip("this machine has one GPU: gpu:1 needs two")
    gpu1, cpu = _trainer("gpu:1"), _trainer("cpu")
    gpu1.fit(1)
    cpu.fit(1)
    for v in (*gpu1.model.params.values(), *(a for s in gpu1.optimizer.state.values() for a in s.values())):
        assert v.device.id == 1
    _assert_same_weights(gpu1, cpu)


def test_nccl_with_two_processes(tmp_path):
    if not gpu_available(1):
        pytest.skip("NCCL between two processes needs two GPUs")
    pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'cnn_xp[mpi]' mpich")
    mpirun = shutil.which("mpirun") or shutil.which("mpiexec")
    if mpirun is None:
        pytest.skip("no mpirun on PATH (pip install mpich)")
    try:
        from cupy.cuda import nccl  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"CuPy has no NCCL here ({exc})")
    common = ["--epochs", "1", "--train-size", "2000", "--test-size", "500", "--dtype", "float64", "--quiet"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    two = subprocess.run(
        [mpirun, "-n", "2", sys.executable, "-m", "cnn_xp.train", "--distributed", "--device", "gpu",
         *common, "--out", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "cnn_xp.train", "--device", "gpu", *common, "--out", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=600, env=env,
    )  # fmt: skip
    assert one.returncode == 0, one.stderr[-3000:]
    a = load_checkpoint(next(Path(tmp_path / "two").rglob("last.safetensors"))).build_model(device="cpu")
    b = load_checkpoint(next(Path(tmp_path / "one").rglob("last.safetensors"))).build_model(device="cpu")
    for k, v in b.params.items():
        np.testing.assert_allclose(a.params[k], v, rtol=1e-8, atol=1e-10)  # two half-batch sums vs one
