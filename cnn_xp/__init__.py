"""cnn_xp: a small, fast, array-agnostic CNN framework — one code path for NumPy and CuPy.

The layers, networks and optimizers take their array module from their inputs
(``get_array_module(x)``), so the same code trains on the CPU (NumPy) or a CUDA GPU (CuPy).
"""

from ._version import __version__
from .backend import (
    Device,
    GPUUnavailableError,
    from_dlpack,
    get_array_module,
    gpu_available,
    parse_device,
    to_device,
    to_numpy,
)
from .datasets import register_dataset
from .export import export_onnx
from .functions import col2im, get_conv_outsize, im2col
from .init import he_normal, xavier_normal
from .layers import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    Dropout,
    GlobalAvgPooling,
    Layer,
    Pooling,
    Relu,
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxWithLoss,
    no_grad,
    register_layer,
)
from .models import DeepConvNet, Network, ResNet, SimpleConvNet, register_model
from .optim import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, register_optimizer

__all__ = [
    "SGD",
    "AdaGrad",
    "Adam",
    "Affine",
    "AvgPooling",
    "BatchNormalization",
    "Convolution",
    "DeepConvNet",
    "Device",
    "Dropout",
    "GPUUnavailableError",
    "GlobalAvgPooling",
    "Layer",
    "Momentum",
    "Nesterov",
    "Network",
    "Pooling",
    "RMSprop",
    "Relu",
    "ResNet",
    "Residual",
    "Sequential",
    "Sigmoid",
    "SimpleConvNet",
    "SoftmaxWithLoss",
    "__version__",
    "col2im",
    "export_onnx",
    "from_dlpack",
    "get_array_module",
    "get_conv_outsize",
    "gpu_available",
    "he_normal",
    "im2col",
    "no_grad",
    "parse_device",
    "register_dataset",
    "register_layer",
    "register_model",
    "register_optimizer",
    "to_device",
    "to_numpy",
    "xavier_normal",
]
