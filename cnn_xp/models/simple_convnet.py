"""SimpleConvNet of "Deep Learning from Scratch" ch. 7: conv - relu - pool - affine - relu - affine - softmax."""

from __future__ import annotations

from typing import Any

from ..backend import Device
from ..checks import check_int
from ..init import InitSpec
from .builders import (
    BookNetwork,
    LayerConfigs,
    LayerFactory,
    check_init,
    check_input_dim,
    constructor_arguments,
    conv_config,
    conv_settings,
    pool_config,
)

DEFAULT_CONV_PARAM = {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}


class SimpleConvNet(BookNetwork):
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
        kwargs, configs = SimpleConvNet.layer_configs(**constructor_arguments(locals()))
        layers = LayerFactory(weight_init_std, dtype, device, seed).build(configs)
        super().__init__(
            layers, config={"name": "SimpleConvNet", "kwargs": kwargs}, input_dim=tuple(kwargs["input_dim"])
        )

    @staticmethod
    def describe(args: dict[str, Any]) -> tuple[dict[str, Any], LayerConfigs]:
        c, h, w = check_input_dim(args["input_dim"])
        conv_param, weight_init_std = args["conv_param"], args["weight_init_std"]
        conv_param = conv_settings("conv_param", conv_param if conv_param is not None else {}, DEFAULT_CONV_PARAM)
        hidden_size = check_int("hidden_size", args["hidden_size"], 1)
        output_size = check_int("output_size", args["output_size"], 1)
        dtype_name = check_init(weight_init_std, args["dtype"])
        conv, hw = conv_config(c, (h, w), conv_param)
        pool, (ph, pw) = pool_config(hw)
        configs: LayerConfigs = [
            ("Conv1", conv),
            ("Relu1", {"type": "Relu"}),
            ("Pool1", pool),
            ("Affine1", {"type": "Affine", "shape": [conv_param["filter_num"] * ph * pw, hidden_size]}),
            ("Relu2", {"type": "Relu"}),
            ("Affine2", {"type": "Affine", "shape": [hidden_size, output_size]}),
        ]
        kwargs = {
            "input_dim": [c, h, w],
            "conv_param": conv_param,
            "hidden_size": hidden_size,
            "output_size": output_size,
            "weight_init_std": weight_init_std,
            "dtype": dtype_name,
        }
        return kwargs, configs
