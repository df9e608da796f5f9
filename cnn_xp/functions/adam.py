"""Adam's update of one parameter, in place: the compiled kernel where it may run, else the
array passes (the same operations in the same order, so the same bits)."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from . import native

Array = Any


def adam_update(p: Array, g: Array, m: Array, v: Array, a1: float, a2: float, lr: float, eps: float) -> None:
    """``m += a1 (g - m); v += a2 (g g - v); p -= lr m / (sqrt(v) + eps)``, in place.

    The kernel runs only on arrays it can safely write: NumPy arrays of one float dtype and size,
    contiguous, writeable, none overlapping another (a gradient that is a view of its parameter,
    say).  Anything else takes the array passes, which read ``g`` before ``p`` is written, and
    which raise as NumPy does for a read-only parameter."""
    if native.accepts(p) and native.fits(*native.adam_arguments(p, g, m, v)):
        native.adam(p, g, m, v, a1, a2, lr, eps)
        return
    xp = get_array_module(p, g)
    m += a1 * (g - m)
    v += a2 * (g * g - v)
    p -= lr * m / (xp.sqrt(v) + eps)
