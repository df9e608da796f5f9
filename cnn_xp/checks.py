"""Argument checks shared by every layer of the package: one place for the rules and wording.

Every check raises *before* any work is done and names the argument, what it got and what it
expected.  This module sits just above :mod:`cnn_xp.backend`, so functions, layers, optimizers
and the data pipeline all take their checks from here (none imports another's).
"""

from __future__ import annotations

from typing import Any

import numpy

from .backend import array_device, get_array_module

IntPair = int | tuple[int, int]
FLOAT_DTYPES = ("float32", "float64")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in [minimum, maximum]; else raise naming ``name``."""
    if not _is_int(value):
        # NumPy integer scalars are fine too (``int(np.int64(3))``).
        if hasattr(value, "__index__") and not isinstance(value, (bool, float)):
            value = value.__index__()
        else:
            raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f"in [{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
        raise ValueError(f"{name}: expected an int {bound}, got {value}")
    return int(value)


def check_number(name: str, value: Any, low: float, high: float | None = None, low_inclusive: bool = False) -> float:
    """Return ``value`` as float if it is a real number in (low, high] (``[low, high]`` with
    ``low_inclusive``); bools, NaN and strings are refused."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok:
        ok = (value >= low if low_inclusive else value > low) and (high is None or value <= high)
    if not ok:
        lo = "[" if low_inclusive else "("
        hi = f"{high}]" if high is not None else "inf)"
        raise ValueError(f"{name}: expected a number in {lo}{low}, {hi}, got {value!r}")
    return float(value)


def pair(name: str, value: IntPair, minimum: int) -> tuple[int, int]:
    """Normalise an int or an (h, w) pair, checking each against ``minimum``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (h, w), got {value!r}")
        return check_int(f"{name}[0]", value[0], minimum), check_int(f"{name}[1]", value[1], minimum)
    v = check_int(name, value, minimum)
    return v, v


def check_rank(name: str, x: Any, ndim: int, layout: str) -> None:
    """Raise ValueError unless ``x`` is an array of rank ``ndim`` (``layout`` names the axes)."""
    shape = getattr(x, "shape", None)
    if shape is None:
        raise TypeError(f"{name}: expected an array {layout}, got {type(x).__name__}")
    if len(shape) != ndim:
        raise ValueError(f"{name}: expected a {ndim}-D array {layout}, got shape {tuple(shape)}")


def float_dtype_name(dtype: Any, name: str = "dtype") -> str:
    """``'float32'``/``'float64'`` for any spelling of those dtypes (a string, a NumPy, CuPy or
    array-API dtype); anything else raises ValueError naming ``name``."""
    text = getattr(dtype, "name", None) or (dtype.__name__ if isinstance(dtype, type) else str(dtype))
    text = text.rsplit(".", 1)[-1]  # 'array_api_strict.float32', "torch.float32" -> 'float32'
    if text not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected 'float32' or 'float64', got {dtype!r}")
    return text


def resolve_float_dtype(dtype: Any, xp: Any = numpy) -> Any:
    """``'float32'``/``'float64'``/a NumPy or array-API float dtype -> that dtype in ``xp``."""
    return getattr(xp, float_dtype_name(dtype))


def is_floating(x: Any) -> bool:
    """True if ``x`` has a real floating dtype."""
    return bool(get_array_module(x).isdtype(x.dtype, "real floating"))


def check_same_place(name: str, x: Any, like: Any) -> None:
    """Raise ValueError if ``x`` lives in another array library or on another device than ``like``."""
    try:
        get_array_module(x, like)
    except TypeError:
        raise ValueError(
            f"{name}: array of type {type(x).__name__} cannot be mixed with the layer's parameters of type "
            f"{type(like).__name__}; move it with cnn_xp.to_device(x, ...) first"
        ) from None
    dx, dl = array_device(x), array_device(like)
    if dx != dl:
        raise ValueError(
            f"{name}: is on device {dx!r} but the layer's parameters are on {dl!r}; "
            "move it with cnn_xp.to_device(x, ...) first"
        )
