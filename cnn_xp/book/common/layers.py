"""``from common.layers import *``: the book's layers are cnn_xp's (same constructors, same
``forward``/``backward``, gradients in ``dW``/``db``/``dgamma``/``dbeta``).

As the book's module does, a star import also brings ``np`` and the names of
``common.functions`` and ``im2col``/``col2im`` (book scripts rely on it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...backend import get_array_module
from ...layers import Affine, Convolution, Dropout, Pooling, Relu, Sigmoid, SoftmaxWithLoss
from ...layers import BatchNormalization as _BatchNormalization
from .functions import *  # noqa: F403 - the book's module re-exports them
from .functions import __all__ as _functions
from .util import col2im, im2col


class BatchNormalization(_BatchNormalization):
    """The book's batch normalisation numbers: ``eps`` 1e-6 (the book's ``10e-7``), running
    statistics that start at zero and follow the batch's own variance, so a batch of one sample
    trains as in the book. Per channel for 4-D input (the book normalised each element of a 4-D
    input on its own)."""

    def __init__(
        self, gamma: Any, beta: Any, momentum: float = 0.9, running_mean: Any = None, running_var: Any = None
    ) -> None:
        if running_var is None:
            running_var = get_array_module(gamma).zeros_like(gamma)
        super().__init__(gamma, beta, momentum, running_mean, running_var, eps=10e-7, unbiased=False)


__all__ = [
    "Affine",
    "BatchNormalization",
    "Convolution",
    "Dropout",
    "Pooling",
    "Relu",
    "Sigmoid",
    "SoftmaxWithLoss",
    "col2im",
    "im2col",
    "np",
    *_functions,
]
