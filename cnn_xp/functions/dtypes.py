"""Casting inputs to a layer's floating dtype."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..checks import is_floating


def as_float(x: Any, like: Any = None) -> Any:
    """``x`` as floating point: cast to ``like.dtype`` when given (a layer's parameter),
    else integer/bool inputs become float32 and floating inputs are returned unchanged."""
    xp = get_array_module(x)
    if like is not None:
        return x if x.dtype == like.dtype else xp.astype(x, like.dtype)
    return x if is_floating(x) else xp.astype(x, xp.float32)
