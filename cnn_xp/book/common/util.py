"""``from common.util import *``: the book's helpers. ``im2col``/``col2im`` are cnn_xp's (the
book's column order, any array library); the others are the book's host-side tools."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import array_device, get_array_module
from ...functions import col2im, im2col

__all__ = ["col2im", "conv_output_size", "im2col", "np", "shuffle_dataset", "smooth_curve"]


def smooth_curve(x: Any) -> np.ndarray:
    """A loss curve smoothed by an 11-point Kaiser window, for plotting (the book's helper)."""
    x = np.asarray(x, dtype=float)
    window_len = 11
    s = np.r_[x[window_len - 1 : 0 : -1], x, x[-1:-window_len:-1]]
    w = np.kaiser(window_len, 2)
    y = np.convolve(w / w.sum(), s, mode="valid")
    return y[5 : len(y) - 5]


def shuffle_dataset(x: Any, t: Any) -> tuple[Any, Any]:
    """``x`` and ``t`` in one random order (NumPy's global generator, as in the book)."""
    permutation = np.random.permutation(x.shape[0])
    xp = get_array_module(x, t)
    index = xp.asarray(permutation, device=array_device(x))
    return x[index, ...], t[index, ...]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> float:
    """The book's formula, ``(input_size + 2*pad - filter_size) / stride + 1`` — a float, as in
    the book (:func:`cnn_xp.get_conv_outsize` is the integer one)."""
    return (input_size + 2 * pad - filter_size) / stride + 1
