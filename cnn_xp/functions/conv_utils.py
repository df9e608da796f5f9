"""Argument checks and the output-size formula shared by every windowed operation.

The formula lives here once (as in Chainer's ``get_conv_outsize``); every shape check calls it.
"""

from __future__ import annotations

from typing import Any

IntPair = int | tuple[int, int]


def get_conv_outsize(size: int, k: int, s: int, p: int) -> int:
    """Output length of a window of length ``k``, stride ``s`` over ``size`` padded by ``p``
    on both sides: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * p - k) // s + 1


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an int >= ``minimum``; else raise naming ``name``."""
    if not _is_int(value):
        # NumPy integer scalars are fine too (``int(np.int64(3))``).
        if hasattr(value, "__index__") and not isinstance(value, bool):
            value = value.__index__()
        else:
            raise TypeError(f"{name}: expected an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value}")
    return int(value)


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


def window_output_shape(
    x_shape: tuple[int, ...], kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, name: str = "input"
) -> tuple[int, int]:
    """(OH, OW) for a (kh, kw) window over ``x_shape`` = (N, C, H, W); raise if it does not fit."""
    h, w = x_shape[2], x_shape[3]
    if kh > h + 2 * ph or kw > w + 2 * pw:
        raise ValueError(
            f"{name}: window (filter_h, filter_w)=({kh}, {kw}) is larger than the padded input "
            f"(H + 2*pad_h, W + 2*pad_w)=({h + 2 * ph}, {w + 2 * pw}) for input shape {tuple(x_shape)}"
        )
    return get_conv_outsize(h, kh, sh, ph), get_conv_outsize(w, kw, sw, pw)
