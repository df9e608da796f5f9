"""Layers with ``forward``/``backward`` pairs, as in "Deep Learning from Scratch".

Each layer takes its array namespace from its inputs and parameters, so the same code runs
on NumPy, CuPy or any array-API library.
"""

from .activation import Relu, Sigmoid
from .affine import Affine
from .base import Layer
from .batch_normalization import BatchNormalization
from .composite import Composite, Residual, Sequential
from .convolution import Convolution
from .dropout import Dropout
from .grad_mode import grad_enabled, no_grad
from .pooling import AvgPooling, GlobalAvgPooling, Pooling
from .registry import LAYER_TYPES, register_layer
from .softmax_with_loss import SoftmaxWithLoss

for _cls in (
    Affine, AvgPooling, BatchNormalization, Convolution, Dropout, GlobalAvgPooling, Pooling, Relu, Residual, Sequential,
    Sigmoid, SoftmaxWithLoss,
):  # fmt: skip
    register_layer(_cls)

__all__ = [
    "LAYER_TYPES",
    "Affine",
    "AvgPooling",
    "BatchNormalization",
    "Composite",
    "Convolution",
    "Dropout",
    "GlobalAvgPooling",
    "Layer",
    "Pooling",
    "Relu",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SoftmaxWithLoss",
    "grad_enabled",
    "no_grad",
    "register_layer",
]
