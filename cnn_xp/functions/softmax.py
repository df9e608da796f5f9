"""Numerically stable softmax and log-softmax over the last axis."""

from __future__ import annotations

from typing import Any

from ..backend import follows_input_device, get_array_module


@follows_input_device
def log_softmax(x: Any) -> Any:
    """``log(softmax(x))`` over the last axis, computed as ``x - max - log(sum(exp(x - max)))``."""
    xp = get_array_module(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


@follows_input_device
def softmax(x: Any) -> Any:
    """Softmax over the last axis; rows sum to 1."""
    xp = get_array_module(x)
    return xp.exp(log_softmax(x))
