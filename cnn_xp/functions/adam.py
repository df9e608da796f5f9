"""Adam's update of one parameter, in place: the compiled kernel where it may run, else the
array passes (the same operations in the same order, so the same bits)."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module, gpu_elementwise
from . import native

Array = Any

# The same operations in the same order as the array passes below, as one GPU kernel.
_KERNEL = (
    "cnn_xp_adam",
    "T g, T a1, T a2, T lr, T eps",
    "T p, T m, T v",
    "m += a1 * (g - m); v += a2 * (g * g - v); p -= lr * m / (sqrt(v) + eps);",
)


def adam_update(p: Array, g: Array, m: Array, v: Array, a1: float, a2: float, lr: float, eps: float) -> None:
    """``m += a1 (g - m); v += a2 (g g - v); p -= lr m / (sqrt(v) + eps)``, in place.

    The kernel runs only on arrays it can safely write: NumPy arrays of one float dtype and size,
    contiguous, writeable, none overlapping another (a gradient that is a view of its parameter,
    say).  Anything else takes the array passes, which read ``g`` before ``p`` is written, and
    which raise as NumPy does for a read-only parameter.  On a GPU the four arrays of one dtype
    and shape, the gradient apart from the parameter, take one fused kernel instead of twelve
    launches."""
    if native.accepts(p):
        try:  # (its checks run before the kernel: a refused call has written nothing)
            native.adam(p, g, m, v, a1, a2, lr, eps)
            return
        except native.KernelArgumentError:
            pass
    xp = get_array_module(p, g)
    kernel = gpu_elementwise(p, *_KERNEL)
    if (
        kernel is not None
        and p.dtype == g.dtype == m.dtype == v.dtype
        and p.shape == g.shape == m.shape == v.shape
        and not xp.may_share_memory(p, g)
    ):
        kernel(g, a1, a2, lr, eps, p, m, v)
        return
    m += a1 * (g - m)
    v += a2 * (g * g - v)
    p -= lr * m / (xp.sqrt(v) + eps)
