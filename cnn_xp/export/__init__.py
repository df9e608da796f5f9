"""Leaving cnn_xp: ONNX export (``export_onnx``; ``python -m cnn_xp.export CHECKPOINT OUT.onnx``).

The ``onnx`` package is imported only when a model is exported (``pip install 'cnn_xp[onnx]'``).
"""

from .onnx import OPSET, GraphBuilder, OnnxUnavailableError, export_onnx, register_onnx_converter, to_onnx

__all__ = ["OPSET", "GraphBuilder", "OnnxUnavailableError", "export_onnx", "register_onnx_converter", "to_onnx"]
