"""Checkpoints: round trips, atomic writes, portability across devices and dtypes, refusals."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from cnn_xp import Adam, DeepConvNet, serialization
from cnn_xp.train import load_checkpoint, save_checkpoint

from .conftest import small_net


def trained_pair():
    net, opt = small_net(), Adam(lr=0.01)
    rng = np.random.default_rng(0)
    x, t = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    for _ in range(2):
        opt.update(net.params, net.gradient(x, t))
    return net, opt


def test_round_trip_everything(tmp_path):
    net, opt = trained_pair()
    path = save_checkpoint(
        tmp_path / "c.safetensors",
        net,
        opt,
        trainer={"epoch": 0, "step": 2, "step_in_epoch": 2},
        run={"dataset": "mnist"},
    )
    ck = load_checkpoint(path)
    assert (
        ck.trainer == {"epoch": 0, "step": 2, "step_in_epoch": 2}
        and ck.run == {"dataset": "mnist"}
        and ck.rng == net.extra_state()
    )
    net2, opt2 = ck.build_model(), ck.build_optimizer()
    for k in net.params:
        np.testing.assert_array_equal(net2.params[k], net.params[k])
    assert opt2.iter == 2 and opt2.lr == 0.01
    for name in ("m", "v"):
        for k in net.params:
            np.testing.assert_array_equal(opt2.state[name][k], opt.state[name][k])
    meta = __import__("safetensors").safe_open(str(path), "numpy").metadata()
    assert meta["format"] == "cnn_xp.checkpoint" and json.loads(meta["model"])["name"] == "SimpleConvNet"


def test_dtype_can_change_on_load(tmp_path):
    net, opt = trained_pair()
    ck = load_checkpoint(save_checkpoint(tmp_path / "c.safetensors", net, opt))
    net64 = ck.build_model(dtype="float64")
    assert net64.dtype == np.float64
    np.testing.assert_array_equal(net64.params["W2"], net.params["W2"].astype(np.float64))


def test_device_portability_through_the_strict_fake_device(tmp_path):
    """A checkpoint written from arrays on another device loads on the CPU, and back."""
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    net, opt = trained_pair()
    ref = {k: v.copy() for k, v in net.state_dict().items()}
    net.to_device(dev)
    opt.to_device(dev)
    assert net.params["W1"].device == dev
    path = save_checkpoint(tmp_path / "from_device.safetensors", net, opt)
    ck = load_checkpoint(path)
    cpu = ck.build_model(device="cpu")
    for k, v in cpu.state_dict().items():
        assert isinstance(v, np.ndarray)
        np.testing.assert_array_equal(v, ref[k])
    back = small_net(seed=5).to_device(dev)
    back.load_params(path)  # a CPU file onto the device
    assert back.params["W1"].device == dev
    np.testing.assert_array_equal(np.asarray(back.params["W1"].to_device(xps.Device("CPU_DEVICE"))), ref["W1"])


def test_write_is_atomic_when_interrupted(tmp_path, monkeypatch):
    net, opt = trained_pair()
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, net, opt)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(serialization.os, "replace", boom)
    net.params["W1"] += 1.0
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, net, opt)
    assert path.read_bytes() == before  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]  # no temporary file left


def test_file_permissions_follow_umask(tmp_path):
    net, opt = trained_pair()
    path = save_checkpoint(tmp_path / "c.safetensors", net, opt)
    mask = os.umask(0)
    os.umask(mask)
    assert (path.stat().st_mode & 0o777) == (0o666 & ~mask)


def test_refusals(tmp_path):
    net, opt = trained_pair()
    good = save_checkpoint(tmp_path / "good.safetensors", net, opt)
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(os.system))  # executing this would call os.system
    with pytest.raises(ValueError, match="pickle"):
        load_checkpoint(evil)
    torn = tmp_path / "torn.safetensors"
    torn.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"torn\.safetensors: not a valid safetensors file"):
        load_checkpoint(torn)
    with pytest.raises(ValueError, match=r"of another architecture than this DeepConvNet"):
        DeepConvNet().load_params(good)
    future = tmp_path / "future.safetensors"
    serialization.save_arrays(
        future, {"model/W1": np.zeros(1)}, {"format": "cnn_xp.checkpoint", "format_version": "99", "model": "{}"}
    )
    with pytest.raises(ValueError, match=r"format version 99.*upgrade cnn_xp"):
        load_checkpoint(future)
    bad_meta = tmp_path / "badmeta.safetensors"
    serialization.save_arrays(
        bad_meta,
        {"model/W1": np.zeros(1)},
        {"format": "cnn_xp.checkpoint", "format_version": "1", "model": "__import__('os')"},
    )
    with pytest.raises(ValueError, match="'model' is not valid JSON"):
        load_checkpoint(bad_meta)
    other = tmp_path / "other.safetensors"
    serialization.save_arrays(other, {"x": np.zeros(1)}, {"format": "something-else"})
    with pytest.raises(ValueError, match="not a cnn_xp checkpoint"):
        load_checkpoint(other)
