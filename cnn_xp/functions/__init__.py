"""Pure array functions (no state): im2col/col2im, softmax, shape helpers.

Every function takes its array namespace from its inputs and runs on NumPy, CuPy or any
array-API library.
"""

from .conv_utils import get_conv_outsize
from .im2col import col2im, fold, im2col, pad2d, unfold
from .numerical_gradient import numerical_gradient
from .softmax import log_softmax, softmax

__all__ = [
    "col2im",
    "fold",
    "get_conv_outsize",
    "im2col",
    "log_softmax",
    "numerical_gradient",
    "pad2d",
    "softmax",
    "unfold",
]
