"""What a run may use of the machine: CPU threads and memory, decided before training starts.

* Threads: by default one BLAS thread per core, shared among the MPI ranks of a node -- a figure
  of the machine alone, so the same command gives bit-identical weights run after run (a
  matrix product's rounding can change with the thread count).  ``threads='auto'`` also leaves
  out the cores other running work keeps busy now (faster on a busy machine).
* Memory: a batch size whose training step cannot fit in the memory available is refused at
  once, from one sample's measured activations, instead of failing minutes later.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy

from ..layers import no_grad
from ..models import Network
from .config import ConfigError

STEP_MEMORY_FACTOR = 4  # a step keeps each activation, its gradient and im2col columns: ~4 copies


def busy_cores(samples: int = 5, interval: float = 0.05) -> float:
    """How many cores other work keeps busy now: on Linux the median over ``samples`` readings of
    the running-task count in /proc/loadavg, less this process; elsewhere the 1-minute load average."""
    readings = []
    for i in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            break
        readings.append(max(running - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    if readings:
        return float(sorted(readings)[len(readings) // 2])
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return 0.0


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(ranks_on_node: int = 1) -> int:
    """The default BLAS threads of one process: the cores it may use, shared among the
    ``ranks_on_node`` processes of a distributed run."""
    return max(1, usable_cores() // max(ranks_on_node, 1))


def auto_threads(ranks_on_node: int = 1, busy: float | None = None) -> int:
    """``threads='auto'``: :func:`default_threads` less the cores other work keeps busy now
    (:func:`busy_cores`); at least one."""
    busy = busy_cores() if busy is None else busy
    return max(1, min(default_threads(ranks_on_node), usable_cores() - round(busy)))


def thread_count(threads: int | str | None, ranks_on_node: int = 1) -> int:
    """The BLAS thread count a run uses for its ``threads`` setting."""
    if isinstance(threads, int):
        return threads
    return auto_threads(ranks_on_node) if threads == "auto" else default_threads(ranks_on_node)


def probe_network(model: Network, input_dim: tuple[int, ...], dtype: str) -> tuple[int, int]:
    """(bytes of one sample's activations, number of outputs) of ``model``, from a forward pass
    of one zero sample in inference mode; ConfigError naming the dataset if its samples do not
    fit the network."""
    from ..backend import to_device

    x: Any = to_device(numpy.zeros((1, *input_dim), dtype=dtype), model.device)
    per_sample = 0
    try:
        with no_grad():
            for layer in model.layers.values():
                x = layer.forward(x, train_flg=False) if layer.uses_mode else layer.forward(x)
                per_sample += int(x.nbytes)
    except (ValueError, TypeError) as exc:
        raise ConfigError("dataset", f"samples of shape {input_dim} do not fit this network: {exc}") from None
    return per_sample, int(x.shape[-1])


def memory_available() -> int | None:
    """Bytes of memory available now (/proc/meminfo's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return None


def check_step_fits(batch_size: int, per_sample: int) -> None:
    """Refuse a batch size whose training step cannot fit in the memory available now: one
    sample's activations (see :func:`probe_network`) times the batch and :data:`STEP_MEMORY_FACTOR`."""
    available = memory_available()
    if available is None:
        return
    need = per_sample * batch_size * STEP_MEMORY_FACTOR
    if need > available:
        fits = max(1, available // (per_sample * STEP_MEMORY_FACTOR))
        raise ConfigError(
            "batch_size",
            f"one training step of {batch_size} needs about {need / 2**30:.1f} GiB, more than the "
            f"{available / 2**30:.1f} GiB of memory available; try --batch-size {min(fits, 1000)} or less",
        )
