"""``from common.functions import *``: the book's activation and loss functions, on any array
library (each takes its namespace from its input)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import array_device, get_array_module
from ...functions.softmax import softmax

__all__ = [
    "cross_entropy_error",
    "identity_function",
    "np",  # as the book's module, whose star import brings numpy as np
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "softmax",
    "softmax_loss",
    "step_function",
    "sum_squared_error",
]


def identity_function(x: Any) -> Any:
    return x


def step_function(x: Any) -> Any:
    xp = get_array_module(x)
    return xp.astype(x > 0, xp.int64)


def sigmoid(x: Any) -> Any:
    xp = get_array_module(x)
    return 1 / (1 + xp.exp(-x))


def sigmoid_grad(x: Any) -> Any:
    return (1.0 - sigmoid(x)) * sigmoid(x)


def relu(x: Any) -> Any:
    return get_array_module(x).maximum(x, 0)


def relu_grad(x: Any) -> Any:
    """1 where x >= 0, else 0 (the book's convention at 0)."""
    xp = get_array_module(x)
    return xp.astype(x >= 0, x.dtype)


def sum_squared_error(y: Any, t: Any) -> Any:
    xp = get_array_module(y, t)
    return 0.5 * xp.sum((y - t) ** 2)


def cross_entropy_error(y: Any, t: Any) -> Any:
    """Mean of ``-log(y[label] + 1e-7)`` over the batch; ``t`` is labels or one-hot rows, ``y``
    one row or a batch of probability rows (the book's definition, its 1e-7 included)."""
    xp = get_array_module(y, t)
    if y.ndim == 1:
        t = xp.reshape(t, (1, -1))
        y = xp.reshape(y, (1, -1))
    if t.size == y.size:  # one-hot rows -> labels
        t = xp.argmax(t, axis=1)
    t = xp.reshape(xp.astype(t, xp.int64), (-1,))
    batch_size = y.shape[0]
    rows = xp.arange(batch_size, device=array_device(y))
    picked = y[rows, t]
    return -xp.sum(xp.log(picked + 1e-7)) / batch_size


def softmax_loss(X: Any, t: Any) -> Any:
    return cross_entropy_error(softmax(X), t)
