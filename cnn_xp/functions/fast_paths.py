"""The kernel policy: which of the computations' equivalent paths run.

Every fast path computes what the generic path computes (the tests compare them); the switches
exist so that the comparison, and a benchmark of the difference, can be made:

* ``fast_paths`` -- the convolution's fast paths (flat rows, Winograd); off: the generic
  reference paths only (``CNN_XP_FAST_PATHS=0``, :func:`generic_paths`);
* ``winograd`` -- Winograd for the CPU's 3x3 stride-1 convolutions, which rounds differently
  (``CNN_XP_WINOGRAD=0``, :func:`direct_convolution`); ``max_tile`` 2 keeps to F(2x2, 3x3),
  whose float32 results are closer to the direct path's than F(4x4, 3x3)'s
  (``CNN_XP_WINOGRAD=2``, :func:`small_winograd_tiles`);
* ``native`` -- the compiled CPU kernels of :mod:`cnn_xp.functions.native` where they were built
  (``CNN_XP_NATIVE=0``, :func:`numpy_kernels`: their NumPy passes, the same results);
* ``flush_denormals`` -- subnormal floats flushed to zero in the threads that compute a
  network's passes and an optimizer's update (``CNN_XP_FLUSH_DENORMALS=0``,
  :func:`ieee_denormals`: IEEE behaviour; see :mod:`cnn_xp.functions.denormals`).

The policy is a :class:`contextvars.ContextVar`, seeded once from the environment: a ``with``
block changes it for the thread (or asyncio task) that enters it and for the threads that split
a batch inside it, never for other threads -- as :func:`cnn_xp.no_grad` does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class KernelPolicy:
    fast_paths: bool = True
    winograd: bool = True
    max_tile: int = 4
    native: bool = True
    flush_denormals: bool = True

    @classmethod
    def from_environment(cls, env: Any = None) -> KernelPolicy:
        env = os.environ if env is None else env

        def on(name: str) -> bool:
            return str(env.get(name, "1")).strip() != "0"

        return cls(
            fast_paths=on("CNN_XP_FAST_PATHS"),
            winograd=on("CNN_XP_WINOGRAD"),
            max_tile=2 if str(env.get("CNN_XP_WINOGRAD", "1")).strip() == "2" else 4,
            native=on("CNN_XP_NATIVE"),
            flush_denormals=on("CNN_XP_FLUSH_DENORMALS"),
        )


_SEEDED = KernelPolicy.from_environment()  # read once, at import
_policy: ContextVar[KernelPolicy] = ContextVar("cnn_xp_kernel_policy", default=_SEEDED)


def policy() -> KernelPolicy:
    """The policy in force in this context."""
    return _policy.get()


@contextmanager
def using(**changes: Any) -> Iterator[KernelPolicy]:
    """``with using(winograd=False): ...``: the current policy with ``changes``, inside the block."""
    token = _policy.set(dataclasses.replace(_policy.get(), **changes))
    try:
        yield _policy.get()
    finally:
        _policy.reset(token)


def fast_paths_enabled() -> bool:
    """True unless fast paths were turned off (``CNN_XP_FAST_PATHS=0`` or :func:`generic_paths`)."""
    return policy().fast_paths


def winograd_enabled() -> bool:
    """True unless Winograd was turned off (``CNN_XP_WINOGRAD=0`` or :func:`direct_convolution`)
    or all fast paths were."""
    p = policy()
    return p.winograd and p.fast_paths


def winograd_max_tile() -> int:
    """The largest Winograd output tile: 4 (F(4x4, 3x3) where it pays), or 2 (F(2x2, 3x3) only)."""
    return policy().max_tile


def native_enabled() -> bool:
    """True unless the compiled CPU kernels were turned off (``CNN_XP_NATIVE=0`` or
    :func:`numpy_kernels`).  Whether they were built is :func:`cnn_xp.functions.native.available`."""
    return policy().native


def flush_denormals_enabled() -> bool:
    """True unless subnormal floats keep IEEE behaviour (``CNN_XP_FLUSH_DENORMALS=0`` or
    :func:`ieee_denormals`)."""
    return policy().flush_denormals


@contextmanager
def generic_paths() -> Iterator[None]:
    """``with generic_paths(): ...`` runs only the generic reference code paths inside the block."""
    with using(fast_paths=False):
        yield


@contextmanager
def direct_convolution() -> Iterator[None]:
    """3x3 convolutions inside the block take the direct im2col path instead of Winograd."""
    with using(winograd=False):
        yield


@contextmanager
def small_winograd_tiles() -> Iterator[None]:
    """Winograd convolutions inside the block use F(2x2, 3x3) only."""
    with using(max_tile=2):
        yield


@contextmanager
def numpy_kernels() -> Iterator[None]:
    """Inside the block the compiled kernels' computations run as NumPy passes (the same results)."""
    with using(native=False):
        yield


@contextmanager
def ieee_denormals() -> Iterator[None]:
    """Inside the block subnormal floats keep IEEE behaviour (slower on some CPUs; see
    :mod:`cnn_xp.functions.denormals`)."""
    with using(flush_denormals=False):
        yield
