"""The output-size formula shared by every windowed operation, and the shape check built on it.

The formula lives here once (as in Chainer's ``get_conv_outsize``); every shape check calls it.
"""

from __future__ import annotations


def get_conv_outsize(size: int, k: int, s: int, p: int) -> int:
    """Output length of a window of length ``k``, stride ``s`` over ``size`` padded by ``p``
    on both sides: ``(size + 2p - k) // s + 1``."""
    return (size + 2 * p - k) // s + 1


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
