"""What computes ``evaluate``'s and ``predict``'s scores: cnn_xp itself, or ONNX Runtime running
cnn_xp's own ONNX export of the checkpoint's network (``--engine onnxruntime``, for those who
have it installed; the same outputs to rounding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy

from ..backend import to_device, to_numpy
from ..layers import no_grad
from .common import UsageError

ENGINES = ("cnn_xp", "onnxruntime")

Scores = Callable[[numpy.ndarray], numpy.ndarray]


def add_engine_argument(parser: Any) -> None:
    parser.add_argument(
        "--engine",
        choices=ENGINES,
        default="cnn_xp",
        help="what computes the scores: cnn_xp (default), or ONNX Runtime on the CPU running the network's ONNX "
        "export (pip install 'cnn_xp[onnx]')",
    )


def check_engine(engine: str, device_given: str) -> None:
    """Refuse, before any work, a device the engine does not run on."""
    if engine == "onnxruntime" and device_given.strip().lower() not in ("auto", "cpu"):
        raise UsageError(f"--engine onnxruntime runs on the CPU; got --device {device_given}")


def scorer(model: Any, engine: str, device_given: str) -> tuple[Scores, str]:
    """(scores of a host float batch (N, C, H, W) -> host (N, K), where it runs) for ``engine``."""
    if engine == "cnn_xp":

        def scores(x: numpy.ndarray) -> numpy.ndarray:
            with no_grad():
                return to_numpy(model.predict(to_device(x, model.device)))

        return scores, str(model.device)
    check_engine(engine, device_given)
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("--engine onnxruntime: ONNX Runtime is not installed (pip install 'cnn_xp[onnx]')") from None
    from ..export import to_onnx

    graph = to_onnx(model.to_device("cpu").astype("float32").eval(), tuple(model.input_dim))
    session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])

    def run(x: numpy.ndarray) -> numpy.ndarray:
        return session.run(None, {"input": numpy.ascontiguousarray(x, dtype=numpy.float32)})[0]

    return run, f"cpu (ONNX Runtime {onnxruntime.__version__})"
