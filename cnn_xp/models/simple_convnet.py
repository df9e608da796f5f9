"""SimpleConvNet of "Deep Learning from Scratch" ch. 7: conv - relu - pool - affine - relu - affine - softmax."""

from __future__ import annotations

from typing import Any

from ..backend import Device
from ..checks import check_int
from ..init import InitSpec
from ..layers import Pooling, Relu
from .builders import LayerFactory, check_input_dim, conv_settings, pooled
from .network import Network

DEFAULT_CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


class SimpleConvNet(Network):
    """The book's SimpleConvNet, with ``params`` W1/b1 (conv), W2/b2, W3/b3 (affine).

    Input (N, C, H, W) = (N, *input_dim); output scores (N, output_size).
    ``weight_init_std``: a number (the book's 0.01), ``'he'`` or ``'xavier'``.
    ``dtype`` (float32 by default), ``device`` (``'cpu'``, ``'gpu'``, ...; None reads
    ``CNN_XP_DEVICE``, else CPU) and ``seed`` (initial weights) are keyword-only.
    """

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param: dict[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: InitSpec = 0.01,
        *,
        dtype: Any = "float32",
        device: str | Device | None = None,
        seed: int | None = None,
    ) -> None:
        c, h, w = check_input_dim(input_dim)
        conv_param = conv_settings("conv_param", conv_param if conv_param is not None else {}, DEFAULT_CONV_PARAM)
        hidden_size = check_int("hidden_size", hidden_size, 1)
        output_size = check_int("output_size", output_size, 1)
        make = LayerFactory(weight_init_std, dtype, device, seed)
        conv, hw = make.conv(c, (h, w), conv_param)
        ph, pw = pooled(hw)
        layers = [
            ("Conv1", conv),
            ("Relu1", Relu()),
            ("Pool1", Pooling(pool_h=2, pool_w=2, stride=2)),
            ("Affine1", make.affine(conv_param["filter_num"] * ph * pw, hidden_size)),
            ("Relu2", Relu()),
            ("Affine2", make.affine(hidden_size, output_size)),
        ]
        config = {
            "name": "SimpleConvNet",
            "kwargs": {
                "input_dim": [c, h, w],
                "conv_param": conv_param,
                "hidden_size": hidden_size,
                "output_size": output_size,
                "weight_init_std": weight_init_std,
                "dtype": make.dtype.name,
            },
        }
        super().__init__(layers, config=config)
