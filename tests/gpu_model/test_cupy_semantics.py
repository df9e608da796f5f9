"""The GPU path on a CuPy test double that models what makes CuPy differ from NumPy.

``fake/cupy`` (see its docstring) has two GPUs, a current device on which every new array lands
whatever ``device=`` says, refuses operations on arrays of another device and implicit conversion
to NumPy, counts kernel launches and device-to-host reads, and checks stream ordering.  cnn_xp runs
on its GPU 1 -- the ``--device gpu:1`` case, and every distributed rank >= 1 -- in a process of
its own (``scenarios.py``), and must give what NumPy gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..helpers import mnist_subset

HERE = Path(__file__).parent
FAKE = HERE / "fake"

# Kernel launches one training step at batch 100 may issue on a GPU (forward, backward, Adam).
LAUNCH_BUDGET = {"SimpleConvNet": 100, "DeepConvNet": 320, "ResNet20": 800}


ROOT = HERE.parents[1]  # the repository: scenarios.py imports tests.helpers


def run(name: str, where: Path, **kwargs) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env.pop("CNN_XP_DEVICE", None)
    argv = [sys.executable, str(HERE / "scenarios.py"), name, str(where)]
    proc = subprocess.run(
        [*argv, json.dumps(kwargs)] if kwargs else argv, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.splitlines()[-1])


def test_the_double_behaves_as_cupy_does(tmp_path):
    """What the other tests rely on: without these behaviours they could not fail."""
    code = """
import numpy as np, cupy, cupyx
from cnn_xp.backend import to_device, get_array_module, on_device, gpu_available
assert gpu_available(1) and not gpu_available(2)
x = to_device(np.arange(6.0), "gpu:1")
xp = get_array_module(x)
out = {}
try:
    x + 1                                  # GPU 0 is current: CuPy refuses (no peer access)
except ValueError as e:
    out["mixed"] = str(e)
with on_device(x):
    z = xp.zeros((3,), device=x.device)   # created on the *current* device
    y = x * 2
out["z_on"], out["y_on"] = z.device.id, y.device.id
z0 = xp.zeros((3,), device=x.device)      # device= is ignored: GPU 0, as array-api-compat's CuPy does
out["z0_on"] = z0.device.id
try:
    np.asarray(y)
except TypeError as e:
    out["implicit"] = str(e)
before = cupy.stats.host_reads
with on_device(x):
    float(xp.sum(y)); bool(y[0] > 0); int(y[1])
out["reads"] = cupy.stats.host_reads - before
try:
    with cupyx.allow_synchronize(False), on_device(x):
        float(xp.sum(y))
except cupyx.DeviceSynchronized as e:
    out["sync_refused"] = str(e)
import json; print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert "different from the current device" in out["mixed"]
    assert (out["z_on"], out["y_on"], out["z0_on"]) == (1, 1, 0)
    assert "Implicit conversion" in out["implicit"]
    assert out["reads"] == 3
    assert "allow_synchronize" in out["sync_refused"]


@pytest.mark.slow
def test_training_evaluation_checkpoints_on_gpu_1_equal_numpy(tmp_path):
    from PIL import Image

    for sub in ("gpu", "cpu"):
        (tmp_path / sub).mkdir()
        Image.fromarray(np.eye(28, dtype=np.uint8) * 255).save(tmp_path / sub / "digit.png")
    gpu = run("pipeline", tmp_path / "gpu")
    cpu = run("pipeline", tmp_path / "cpu", device="cpu")
    assert gpu["everything_on_gpu_1"]
    for key in ("weights", "resumed_weights"):
        for name, value in cpu[key].items():
            np.testing.assert_allclose(np.asarray(gpu[key][name]), np.asarray(value), rtol=1e-9, atol=1e-12)
    for key in ("history", "resumed_history"):
        assert [(h["epoch"], h["step"]) for h in gpu[key]] == [(h["epoch"], h["step"]) for h in cpu[key]]
        np.testing.assert_allclose([h["loss"] for h in gpu[key]], [h["loss"] for h in cpu[key]], rtol=1e-9)
        assert [h["test_acc"] for h in gpu[key]] == [h["test_acc"] for h in cpu[key]]
    assert gpu["texts"] == cpu["texts"]  # evaluate's and predict's output, the device's name aside
    assert gpu["texts"]["evaluate"][0] == 0 and "test accuracy" in gpu["texts"]["evaluate"][1]
    # host reads: none from one step to the next unless a sync (every 4 steps), a checkpoint
    # (every 5) or an epoch's end (evaluation) came between them
    reads, synced = gpu["reads_per_step"], set(gpu["synced_after"])
    quiet = [i for i in range(1, len(reads) + 1) if i not in synced]
    assert len(quiet) >= 6 and all(reads[i - 1] == 0 for i in quiet), (reads, sorted(synced))
    syncs_only = [reads[i - 1] for i in synced if i % 5 and i % 8 and i <= len(reads)]
    assert syncs_only and all(r <= 2 for r in syncs_only), reads  # a sync reads its pending sums at once


def test_launch_budget_and_no_reads_in_a_training_step(tmp_path):
    counts = run("launches", tmp_path)
    for name, budget in LAUNCH_BUDGET.items():
        got = counts[name]
        assert got["reads"] == 0
        assert 0 < got["launches"] <= budget, f"{name}: {got['launches']} launches per step, budget {budget}"


def test_adam_is_one_fused_kernel_per_parameter_on_a_gpu():
    """Adam's update on a GPU: one launch per parameter (CuPy's ElementwiseKernel, run by the double
    as NumPy passes), equal bit for bit to the CPU's update; a gradient that shares memory with its
    parameter, or of another dtype, takes the array passes. The double refuses what CuPy would."""
    code = """
import json, numpy as np, cupy
from cnn_xp.backend import to_device, on_device
from cnn_xp.optim import Adam
rng = np.random.default_rng(0)
shapes = {"W1": (8, 3, 3, 3), "b1": (8,), "W2": (10, 72)}
start = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
steps = [{k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()} for _ in range(3)]
cpu_p, gpu_p = {k: v.copy() for k, v in start.items()}, {k: to_device(v, "gpu:1") for k, v in start.items()}
cpu, gpu = Adam(lr=0.01), Adam(lr=0.01)
launches = []
for g in steps:
    cpu.update(cpu_p, g)
    dg = {k: to_device(v, "gpu:1") for k, v in g.items()}
    before = cupy.stats.launches
    cupy.stats.launch_log.clear()
    gpu.update(gpu_p, dg)
    launches.append((cupy.stats.launches - before, sorted(set(cupy.stats.launch_log))))
out = {"launches": launches, "equal": all(np.array_equal(cpu_p[k], cupy.asnumpy(gpu_p[k])) for k in shapes)}
alias = {"W": to_device(np.ones(4, np.float32), "gpu:1")}
opt = Adam()
opt.update(alias, {"W": alias["W"]})  # the state made first, then a step counted
before = cupy.stats.launches
opt.update(alias, {"W": alias["W"]})
out["aliased"] = cupy.stats.launches - before
wide = {"W": to_device(np.ones(4, np.float32), "gpu:1")}
opt = Adam()
opt.update(wide, {"W": to_device(np.ones(4), "gpu:1")})
before = cupy.stats.launches
opt.update(wide, {"W": to_device(np.ones(4), "gpu:1")})
out["float64_grad"] = cupy.stats.launches - before - 1  # less the gradient's copy to the GPU
k = cupy.ElementwiseKernel("T x, T a", "T y", "y += a * x;", "axpy")
x32 = to_device(np.ones(3, np.float32), "gpu:1")
refused = []
for args in ((x32, 2.0, to_device(np.ones(3), "gpu:1")), (x32, 2.0), (x32, 2.0, to_device(np.ones(3, np.float32), "gpu:0"))):
    try:
        with on_device(x32):
            k(*args)
    except (TypeError, ValueError) as e:
        refused.append(type(e).__name__)
y = to_device(np.ones(3, np.float32), "gpu:1")
with on_device(y):
    k(x32, 2.0, y)
out["refused"], out["axpy"] = refused, cupy.asnumpy(y).tolist()
print(json.dumps(out))
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["equal"]
    first, *later = out["launches"]
    assert first[0] == 3 + 2 * 3  # the first step also makes each parameter's two state arrays
    assert later == [[3, ["cnn_xp_adam"]]] * 2
    assert out["aliased"] == 12 and out["float64_grad"] == 12  # the twelve array passes
    assert out["refused"] == ["TypeError", "TypeError", "ValueError"]
    assert out["axpy"] == [3.0, 3.0, 3.0]


def test_prefetch_never_overwrites_a_buffer_still_being_read(tmp_path):
    ok = run("prefetch", tmp_path)
    assert ok["race"] is None and len(ok["sums"]) == 8
    assert ok["again"] == ok["sums"]  # two iterators over one loader, interleaved, each gets its own batches
    (x, _), _ = mnist_subset()
    order = np.random.default_rng([0, 0]).permutation(400)
    expected = [float((x[order[i : i + 50]].astype(np.float32) * np.float32(1 / 255)).sum()) for i in range(0, 400, 50)]
    np.testing.assert_allclose(ok["sums"], expected, rtol=1e-5)  # every batch is its own, not a later one's
    broken = run("prefetch", tmp_path, wait=False)
    assert broken["race"] and "without waiting" in broken["race"]
    rewritten = run("prefetch", tmp_path, host_wait=False)  # the staging buffer rewritten mid-copy
    assert rewritten["race"] and "pinned memory" in rewritten["race"]


STRICT = """
import json, numpy as np, cupy, cupyx
out = {}
with cupy.cuda.Device(1):
    # a block freed after another stream read it, handed back to its own stream's next allocation
    def reuse(wait_first):
        side = cupy.cuda.Stream(non_blocking=True)
        a = cupy.ones(1000)
        side.wait_event(cupy.cuda.get_current_stream().record())
        with side:
            b = a * 2                                   # read on the side stream
        if wait_first:
            cupy.cuda.get_current_stream().wait_event(side.record())
        del a
        c = cupy.empty(1000)                            # the same block, on the null stream
        try:
            c.fill(0.0)
        except cupy.StreamRace as e:
            return str(e)
        return None
    out["reuse_race"] = reuse(False)
    cupy.cuda.Device(1).synchronize()  # (the racing block is back in the pool: the host waits it out)
    out["reuse_waited"] = reuse(True)
    x = cupy.arange(12.0).reshape(3, 4)
    out["to_device"] = hasattr(x, "to_device")
    out["array_interface"] = hasattr(x, "__array_interface__")
    try:
        range(cupy.array(3))
        out["index"] = "allowed"
    except TypeError as e:
        out["index"] = str(e)
    before = cupy.stats.host_reads
    x[x > 3]; cupy.nonzero(x); x.nonzero(); cupy.where(x > 3); cupy.unique(x); cupy.argwhere(x)
    out["data_sized_reads"] = cupy.stats.host_reads - before
    before = cupy.stats.host_reads
    cupy.where(x > 3, x, 0.0); x[1:, ::2]; x[cupy.array([0, 2])]
    out["fixed_size_reads"] = cupy.stats.host_reads - before
    try:
        with cupyx.allow_synchronize(False):
            cupy.cuda.Device(1).synchronize()
    except cupyx.DeviceSynchronized as e:
        out["device_sync"] = str(e)
    before = cupy.stats.launches
    h = cupy.random.default_rng(0).random((5,), dtype=np.float16)
    out["half"] = [str(h.dtype), cupy.stats.launches - before]
    strided, rows = x[:, ::2], x[1:]
with cupy.cuda.Device(0):
    try:
        cupy.asarray(strided)
    except NotImplementedError as e:
        out["peer_strided"] = str(e)
    out["peer_contiguous"] = cupy.asarray(rows).device.id
print(json.dumps(out))
"""


def test_the_double_is_as_strict_as_cupy():
    """Each behaviour of CuPy that can hide a GPU bug, modelled: the probe of each bug is caught."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", STRICT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert out["reuse_race"] and "without waiting" in out["reuse_race"]
    assert out["reuse_waited"] is None
    assert out["to_device"] is False and out["array_interface"] is False
    assert "integer" in out["index"]
    assert out["data_sized_reads"] == 6 and out["fixed_size_reads"] == 0
    assert "allow_synchronize" in out["device_sync"]
    assert out["half"] == ["float16", 2]
    assert "non-contiguous" in out["peer_strided"] and out["peer_contiguous"] == 0


@pytest.mark.slow
def test_the_gpu_test_suite_runs_and_passes_on_the_double():
    """``pytest -m gpu`` -- the tests a GPU owner runs -- on the double's two GPUs with 256 MiB free
    each (so that the out-of-memory test runs out): none may fail, and they must not all skip."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")])}
    env["FAKE_CUPY_FREE_MIB"] = "256"
    env.pop("CNN_XP_DEVICE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-o", "addopts=", str(ROOT / "tests")],
        env=env, capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    summary = proc.stdout.strip().splitlines()[-1]
    assert proc.returncode == 0, proc.stdout[-4000:]
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 45 and "failed" not in summary, summary


@pytest.mark.slow
def test_the_books_own_scripts_run_unmodified_on_gpu_1(tmp_path):
    """``python -m cnn_xp.book --device gpu:1 SCRIPT`` with the book's scripts as they are (sizes
    cut as in tests/book): the book's code on the second GPU, its top-level array arithmetic included."""
    from ..book.test_book_scripts import cut_book

    root = cut_book(tmp_path / "book")
    env = {
        **os.environ,
        "MPLBACKEND": "Agg",
        "PYTHONPATH": os.pathsep.join([str(FAKE), os.environ.get("PYTHONPATH", "")]),
    }
    for chapter, script, expect in (
        ("ch07", "gradient_check.py", "W1 "),
        ("ch07", "train_convnet.py", "Saved Network Parameters!"),
        ("ch08", "misclassified_mnist.py", "test accuracy:"),
        ("ch06", "optimizer_compare_mnist.py", "Adam:"),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "cnn_xp.book", "--device", "gpu:1", script],
            cwd=root / chapter, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert proc.returncode == 0 and expect in proc.stdout, (script, proc.stderr[-3000:])
