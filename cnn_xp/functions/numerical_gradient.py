"""Gradients by central differences: the independent check of every backward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..backend import follows_input_device, get_array_module


@follows_input_device
def numerical_gradient(f: Callable[[Any], Any], x: Any, h: float = 1e-4) -> Any:
    """``(f(x + h e_i) - f(x - h e_i)) / 2h`` for every element i of ``x``, shaped like ``x``
    (the book's ``numerical_gradient(f, x)``). ``x`` is changed in place one element at a
    time and restored, so ``f`` may read it through any reference (a layer's weight, say).
    Two calls of ``f`` per element: for small arrays, in float64 (error about ``h**2``)."""
    xp = get_array_module(x)
    try:
        flat = xp.reshape(x, (-1,), copy=False)  # a view: writing it writes x
    except (ValueError, AttributeError, TypeError):
        raise ValueError("x: must be a contiguous array whose elements can be changed in place") from None
    grad = xp.zeros_like(flat)
    for i in range(flat.shape[0]):
        old = xp.asarray(flat[i], copy=True)  # torch indexing gives a view that the next line would change
        flat[i] = old + h
        up = f(x)
        flat[i] = old - h
        down = f(x)
        flat[i] = old
        grad[i] = (up - down) / (2 * h)
    return xp.reshape(grad, x.shape)
