"""Faults: SIGKILL and SIGINT while checkpoints are written, full and read-only disks, GPU OOM."""

from __future__ import annotations

import errno
import math
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cnn_xp import Adam, serialization
from cnn_xp.cli.train import main as train_main
from cnn_xp.train import CheckpointWriteError, Trainer, load_checkpoint

from ..helpers import gpu_skip_reason
from .conftest import loaders, small_net

RUN = ["--device", "cpu", "--train-size", "1000", "--test-size", "100", "--batch-size", "50", "--quiet"]


def start(out, *extra):
    cmd = [
        sys.executable,
        "-m",
        "cnn_xp.train",
        *RUN,
        "--epochs",
        "1000",
        "--save-every",
        "1",
        "--out",
        str(out),
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def mtime(path):
    return path.stat().st_mtime_ns if path.exists() else None


def wait_for(path, proc, timeout=60.0, old=None):
    """Until ``path`` is (re)written by ``proc``: its mtime differs from ``old``."""
    deadline = time.time() + timeout
    while mtime(path) in (None, old):
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def check_resumable(path):
    """The checkpoint loads and rebuilds a network, an optimizer and a trainer's state."""
    ck = load_checkpoint(path)
    model, opt = ck.build_model(), ck.build_optimizer()
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
    assert opt.iter == ck.trainer["step"] > 0
    return ck.trainer["step"]


@pytest.mark.slow
def test_sigkill_twenty_times_never_tears_a_checkpoint(tmp_path):
    """Each run resumes from what the previous, killed one left behind: every file must load."""
    rng = random.Random(0)
    last = tmp_path / "last.safetensors"
    steps = []
    for i in range(20):
        old = mtime(last)
        proc = start(tmp_path) if i == 0 else start(tmp_path, "--resume", str(last))
        wait_for(last, proc, old=old)  # this run is training and writing checkpoints
        time.sleep(rng.uniform(0.05, 0.8))  # somewhere in the stream of per-step checkpoint writes
        proc.kill()  # SIGKILL: no handler runs
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        steps.append(check_resumable(last))
    assert steps == sorted(steps) and steps[-1] > steps[0]  # every run resumed and made progress
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    old = mtime(last)
    proc = start(tmp_path, "--resume", str(last))  # a new run sweeps temp files of killed writers
    wait_for(last, proc, old=old)
    time.sleep(0.5)
    proc.kill()
    proc.wait(timeout=30)
    check_resumable(last)
    assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) <= 1, leftovers


@pytest.mark.slow
def test_sigint_saves_and_exits_130_every_time(tmp_path):
    rng = random.Random(1)
    for i in range(5):
        out = tmp_path / f"run{i}"
        proc = start(out)
        wait_for(out / "last.safetensors", proc)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "checkpoint saved to" in err and "Traceback" not in err
        check_resumable(out / "last.safetensors")


def test_ctrl_c_while_loading_data_exits_130_in_one_line(tmp_path, monkeypatch, capsys):
    """Ctrl-C before the training loop (here: while the dataset loads) is one line and 130."""
    from cnn_xp.train import run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "load_split", interrupted)
    assert train_main([*RUN, "--out", str(tmp_path / "o")]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m cnn_xp.train: interrupted"]
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("where", "error"),
    [
        ("fsync", OSError(errno.ENOSPC, "No space left on device")),
        ("mkstemp", OSError(errno.EROFS, "Read-only file system")),
    ],
    ids=["disk full", "read-only"],
)
def test_unwritable_disk_keeps_the_previous_checkpoint(mnist_small, tmp_path, monkeypatch, where, error):
    train, test = loaders(mnist_small)
    trainer = Trainer(small_net(), Adam(lr=0.01), train, test, out_dir=tmp_path, quiet=True)
    trainer.fit(1)
    before = (tmp_path / "last.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise error

    target = serialization.os if where == "fsync" else serialization.tempfile
    monkeypatch.setattr(target, where, fail)
    with pytest.raises(
        CheckpointWriteError,
        match=rf"could not write checkpoint .*last\.safetensors: {error.strerror}; the previous last\.safetensors is intact",
    ):
        trainer.fit(2)
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_cli_reports_a_full_disk_in_one_line(tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(serialization.os, "fsync", fail)
    assert train_main([*RUN, "--train-size", "100", "--epochs", "1", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "No space left on device" in err[0] and "no last.safetensors was written" in err[0]


def _write_idx(path, array):
    """An uncompressed IDX file (uint8 data): magic 0x08 0x<ndim>, big-endian int32 sizes."""
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    with open(path, "wb") as f:
        f.write(header)
        array.tofile(f)


@pytest.mark.gpu
def test_gpu_out_of_memory_is_a_clear_message(tmp_path, capsys):
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    import cupy

    pool = cupy.get_default_memory_pool()
    used_before = pool.used_bytes()
    free, _ = cupy.cuda.runtime.memGetInfo()
    # Sized from this GPU's memory: 2000 square images whose first convolution's output alone
    # (30 maps of (side - 4)^2 float32 per image) needs 4x the free memory -- on any GPU.
    n = 2000
    side = math.ceil(math.sqrt(4 * free / (n * 30 * 4))) + 4
    data = tmp_path / "big"
    data.mkdir()
    for split, count in (("train", n), ("t10k", 10)):
        _write_idx(data / f"{split}-images-idx3-ubyte", np.zeros((count, side, side), dtype=np.uint8))
        _write_idx(data / f"{split}-labels-idx1-ubyte", np.arange(count, dtype=np.uint8) % 10)
    start_t = time.time()
    code = train_main(
        [
            "--device",
            "gpu",
            "--dataset",
            str(data),
            "--batch-size",
            str(n),
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(tmp_path / "run"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and "out of GPU memory" in err and "smaller --batch-size" in err, err
    assert time.time() - start_t < 300  # no hang
    # Nothing of the failed run stays on the GPU once it has returned: a caller (a notebook, a
    # sweep) can go on with a smaller batch in the same process.
    assert pool.used_bytes() <= used_before, (used_before, pool.used_bytes())
