"""Scenarios run on GPU 1 of the CuPy test double (``fake/cupy``), in a process of their own.

``python tests/gpu_model/scenarios.py NAME DIR`` with ``fake/`` first on ``PYTHONPATH``; prints one
JSON object that ``test_cupy_semantics.py`` compares with the same work done on NumPy.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import sys
from pathlib import Path

import cupy
import cupyx
import numpy as np

import cnn_xp
from cnn_xp import Adam, DeepConvNet, ResNet, SimpleConvNet, to_device, to_numpy
from cnn_xp.backend import HostToDevice, is_gpu_array
from cnn_xp.cli import evaluate, predict
from cnn_xp.threads import set_num_threads
from cnn_xp.train import Trainer, load_checkpoint
from tests.helpers import (  # the repository's root is on sys.path (see test_cupy_semantics)
    loaders,
    mnist_subset,
    small_net,
)

DEVICE = "gpu:1"


def all_on(arrays: dict, index: int) -> bool:
    return all(is_gpu_array(a) and a.device.id == index for a in arrays.values())


def pipeline(out: Path, device: str = DEVICE) -> dict:
    """Train 2 epochs (sync every 4 steps, checkpoint every 5), resume a third from the
    checkpoint, evaluate and predict through the command-line programs; count host reads per step."""
    if device == "cpu":  # the reference: a GPU runs each batch whole, so the CPU must not split it
        set_num_threads(1)
    # float64: the CPU takes other convolution paths than a GPU for some layers, so float32
    # rounding would differ after a few hundred updates; float64 keeps the comparison tight.
    train, test = loaders(mnist_subset(), device=device, dtype="float64")
    trainer = Trainer(
        small_net("float64").to_device(device),
        Adam(lr=0.01),
        train,
        test,
        out_dir=out / "run",
        quiet=True,
        sync_every=4,
        save_every=5,
    )
    reads: list[int] = []
    step = trainer._local_step

    def counted(xb, tb):  # the host reads since the previous step's start, recorded at each step
        reads.append(cupy.stats.host_reads)
        return step(xb, tb)

    trainer._local_step = counted
    synced: set[int] = set()  # steps after which a sync, a checkpoint or an epoch's end came

    def noting(method):
        def run(*args, **kwargs):
            synced.add(trainer.step)
            return method(*args, **kwargs)

        return run

    trainer._sync = noting(trainer._sync)
    trainer.save_checkpoint = noting(trainer.save_checkpoint)
    trainer._end_epoch = noting(trainer._end_epoch)
    trainer.fit(2)
    per_step = [b - a for a, b in itertools.pairwise(reads)]  # [i - 1]: from step i to i + 1
    ck = load_checkpoint(out / "run" / "last.safetensors")
    train, test = loaders(mnist_subset(), device=device, dtype="float64")
    resumed = Trainer(ck.build_model(device=device), ck.build_optimizer(device=device), train, test, quiet=True)
    resumed.load_state(ck.trainer, ck.rng)
    resumed.fit(3)
    texts = {}
    for name, program, argv in (
        ("evaluate", evaluate.main, [str(out / "run" / "last.safetensors"), "--device", device, "--test-size", "300"]),
        ("predict", predict.main, [str(out / "run" / "last.safetensors"), str(out / "digit.png"), "--device", device]),
    ):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = program(argv)
        texts[name] = (code, buffer.getvalue().replace(str(out), "OUT").replace(f"device: {device}", "device: DEVICE"))
    return {
        "reads_per_step": per_step,
        "synced_after": sorted(synced),
        "history": trainer.history,
        "weights": {k: to_numpy(v).tolist() for k, v in trainer.model.params.items()},
        "resumed_history": resumed.history,
        "resumed_weights": {k: to_numpy(v).tolist() for k, v in resumed.model.params.items()},
        "everything_on_gpu_1": all_on(trainer.model.params, 1)
        and all(all_on(s, 1) for s in trainer.optimizer.state.values())
        and all_on(resumed.model.params, 1),
        "texts": texts,
    }


def launches(out: Path) -> dict:
    """Array operations (kernel launches) and host reads of one training step at batch 100, after
    one warm-up step, for both book networks and ResNet-20 (CIFAR-shaped input); the step runs
    under allow_synchronize(False)."""
    rng = np.random.default_rng(0)
    counts = {}
    networks = {
        "SimpleConvNet": (lambda: SimpleConvNet(seed=0, device=DEVICE), (1, 28, 28)),
        "DeepConvNet": (lambda: DeepConvNet(seed=0, device=DEVICE), (1, 28, 28)),
        "ResNet20": (lambda: ResNet(20, seed=0, device=DEVICE), (3, 32, 32)),
    }
    for name, (make, shape) in networks.items():
        net, opt = make(), Adam()
        x = to_device(rng.random((100, *shape), dtype=np.float32), DEVICE)
        t = to_device(rng.integers(0, 10, 100), DEVICE)
        for _ in range(2):
            before, reads = cupy.stats.launches, cupy.stats.host_reads
            cupy.stats.launch_log.clear()
            with cupyx.allow_synchronize(False):
                net.forward(x, t)
                opt.update(net.params, net.backward())
        counts[name] = {
            "launches": cupy.stats.launches - before,
            "reads": cupy.stats.host_reads - reads,
            "log": cupy.stats.launch_log[:],
        }
    return counts


def prefetch(out: Path, wait: bool = True, host_wait: bool = True) -> dict:
    """Batches through the prefetching DataLoader, each read by a kernel on the compute stream,
    two iterators over the same loader interleaved; with ``wait=False`` the streams' waits on
    each other's events are removed (the race the ring of buffers prevents), with
    ``host_wait=False`` the host's wait for a slot's last copy before it rewrites the slot's
    pinned staging buffer: the double must catch both."""
    loader, _ = loaders(mnist_subset(), device=DEVICE)
    if not wait:
        cupy.cuda.Stream.wait_event = lambda self, event: None
    if not host_wait:
        cupy.cuda.Event.synchronize = lambda self: None
    try:
        with cupy.cuda.Device(1):  # no host read until the end, as in a training loop
            first, second = loader.batches(0), loader.batches(0)
            sums, again = [], []
            for (xa, _), (xb, _) in zip(first, second, strict=True):
                sums.append(cupy.sum(xa))
                again.append(cupy.sum(xb))
            sums, again = [float(s) for s in sums], [float(s) for s in again]
    except cupy.StreamRace as exc:
        return {"race": str(exc)}
    return {"race": None, "sums": sums, "again": again, "slots": HostToDevice.slots}


if __name__ == "__main__":
    name, where = sys.argv[1], Path(sys.argv[2])
    kwargs = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    assert cnn_xp.gpu_available(1), "the CuPy test double is not on PYTHONPATH"
    print(json.dumps({"pipeline": pipeline, "launches": launches, "prefetch": prefetch}[name](where, **kwargs)))
