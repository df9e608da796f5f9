"""Subnormal floats flushed to zero while a network or an optimizer computes on the CPU.

A trained network's arrays hold subnormal values (below 1.2e-38 in float32; Adam's moments of
rarely used weights decay into them), and on some CPUs -- Intel's especially -- every operation
on one costs tens of times a normal one: a training step from trained weights ran at 0.6x the
speed of one from random weights.  Inside :func:`flushing`, the calling thread's SSE/AVX
arithmetic (NumPy's, BLAS's when it runs in that thread, the compiled kernels') treats subnormal
inputs as zero and gives zero for subnormal results (the x86 MXCSR bits FTZ and DAZ); outside,
the thread's own setting is back.

What changes: results that would be subnormal become 0 (a relative change of at most 1.2e-38
in float32, 2.2e-308 in float64 of the array's scale, far below rounding), so a training run
equals an IEEE one to the last bit unless a value passes through the subnormal range.  The
policy (:func:`~cnn_xp.functions.fast_paths.ieee_denormals`, ``CNN_XP_FLUSH_DENORMALS=0``) keeps
IEEE behaviour.  :class:`cnn_xp.Network`'s passes, :meth:`cnn_xp.optim.Optimizer.update` and the
threads that split a batch flush; a multi-threaded BLAS's own worker threads (a batch too small
to split, on more than one thread) keep their setting.  Without the compiled kernels, or off
x86, nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from . import native
from .fast_paths import flush_denormals_enabled


@contextmanager
def flushing() -> Iterator[None]:
    """Within the block the calling thread flushes subnormal floats to zero if the policy says
    so, and keeps IEEE behaviour if it does not (a thread may have inherited either setting from
    the thread that started it); afterwards its own setting is back."""
    wanted = flush_denormals_enabled()
    previous = native.set_flush_denormals(wanted)
    try:
        yield
    finally:
        if previous in (0, 1) and previous != wanted:
            native.set_flush_denormals(bool(previous))


def flushes_now() -> bool:
    """Whether the calling thread flushes subnormal floats at this moment."""
    previous = native.set_flush_denormals(True)
    if previous == 0:
        native.set_flush_denormals(False)
    return previous == 1
