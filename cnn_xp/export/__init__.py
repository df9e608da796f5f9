"""Leaving cnn_xp: ONNX export (``export_onnx``; ``python -m cnn_xp.export CHECKPOINT OUT.onnx``), and
the same network as a PyTorch module (``to_torch``).

The ``onnx`` package is imported only when a model is exported (``pip install 'cnn_xp[onnx]'``).
"""

from .onnx import OPSET, GraphBuilder, OnnxUnavailableError, export_onnx, register_onnx_converter, to_onnx
from .torch_module import to_torch

__all__ = [
    "OPSET",
    "GraphBuilder",
    "OnnxUnavailableError",
    "export_onnx",
    "register_onnx_converter",
    "to_onnx",
    "to_torch",
]
