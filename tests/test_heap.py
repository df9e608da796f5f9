"""cnn_xp.heap: the programs keep freed heap memory between steps (glibc's M_TOP_PAD and
M_MMAP_THRESHOLD)."""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import pytest

from cnn_xp.heap import keep_freed_memory


def glibc() -> bool:
    try:
        ctypes.CDLL(None).gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return False
    return True


STEPS = """
import json, resource, sys
import numpy as np
from cnn_xp import Adam, DeepConvNet, SimpleConvNet
from cnn_xp.heap import keep_freed_memory
from cnn_xp.threads import set_num_threads
kept = keep_freed_memory() if sys.argv[1] == "keep" else None
set_num_threads(2)
net, opt = (SimpleConvNet if sys.argv[2] == "simple" else DeepConvNet)(seed=0), Adam()
rng = np.random.default_rng(0)
x, t = rng.random((100, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 100)
for i in range(13):
    if i == 3:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    opt.update(net.params, net.gradient(x, t))
print(json.dumps({"kept": kept, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10}))
"""


def steps(mode: str, model: str) -> dict:
    env = {"PATH": "/usr/bin:/bin"}  # no MALLOC_TOP_PAD_ from the caller
    out = subprocess.run(
        [sys.executable, "-c", STEPS, mode, model], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


@pytest.mark.skipif(not glibc(), reason="M_TOP_PAD is glibc's: elsewhere keep_freed_memory() does nothing")
@pytest.mark.parametrize("model", ["simple", "deep"])
def test_training_steps_stop_faulting_pages_in(model):
    """DeepConvNet's Winograd step allocates many arrays of 0.5-3 MiB: with M_TOP_PAD alone (which
    freezes the mmap threshold at 128 KiB) each was a fresh mmap, 6400-7100 faults per step."""
    plain, kept = steps("plain", model), steps("keep", model)
    assert kept["kept"] is True
    if plain["faults"] < 200:
        pytest.skip(f"this machine's malloc faulted only {plain['faults']:.0f} pages per step without it")
    assert kept["faults"] < plain["faults"] / 10, (plain, kept)
    assert kept["faults"] < 100, kept


def test_an_explicit_malloc_setting_wins(monkeypatch):
    monkeypatch.setenv("MALLOC_TOP_PAD_", "0")
    assert keep_freed_memory() is False
