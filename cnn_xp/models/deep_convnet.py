"""DeepConvNet of "Deep Learning from Scratch" ch. 8 (99.38 % on MNIST in the book).

conv-relu-conv-relu-pool-conv-relu-conv-relu-pool-conv-relu-conv-relu-pool-
affine-relu-dropout-affine-dropout-softmax, 3x3 filters, He initialisation.
"""

from __future__ import annotations

from typing import Any

from ..backend import RNG, Device
from ..checks import check_int
from ..init import InitSpec
from ..layers import Dropout
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

DEFAULT_CONV_PARAMS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(BookNetwork):
    """The book's DeepConvNet: ``params`` W1..W6 (conv), W7, W8 (affine) and b1..b8.

    Input (N, *input_dim); output (N, output_size).  Dropout (``dropout_ratio``, 0.5 as in the
    book) is active in training mode only; ``seed`` fixes the initial weights and the dropout
    masks.  ``dtype``, ``device`` as for :class:`SimpleConvNet`.
    """

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param_1: dict[str, int] | None = None,
        conv_param_2: dict[str, int] | None = None,
        conv_param_3: dict[str, int] | None = None,
        conv_param_4: dict[str, int] | None = None,
        conv_param_5: dict[str, int] | None = None,
        conv_param_6: dict[str, int] | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
        *,
        weight_init_std: InitSpec = "he",
        dropout_ratio: float = 0.5,
        dtype: Any = "float32",
        device: str | Device | None = None,
        seed: int | None = None,
    ) -> None:
        kwargs, configs = DeepConvNet.layer_configs(**constructor_arguments(locals()))
        make = LayerFactory(weight_init_std, dtype, device, seed)
        first_affine = next(i for i, (name, _) in enumerate(configs) if name == "Affine1")
        layers = make.build(configs[:first_affine])
        dropout_seed = int(make.rng.integers(2**31))  # drawn between the conv and affine weights
        layers += make.build(configs[first_affine:])
        dropouts = [layer for _, layer in layers if isinstance(layer, Dropout)]
        for k, dropout in enumerate(dropouts):
            dropout.rng = RNG(dropout_seed + k)
        super().__init__(layers, config={"name": "DeepConvNet", "kwargs": kwargs}, input_dim=tuple(kwargs["input_dim"]))

    @staticmethod
    def describe(args: dict[str, Any]) -> tuple[dict[str, Any], LayerConfigs]:
        c, h, w = check_input_dim(args["input_dim"])
        hidden_size, output_size = args["hidden_size"], args["output_size"]
        weight_init_std, dropout_ratio = args["weight_init_std"], args["dropout_ratio"]
        given = [args[f"conv_param_{i}"] for i in range(1, 7)]
        convs = [
            conv_settings(f"conv_param_{i + 1}", p or {}, d)
            for i, (p, d) in enumerate(zip(given, DEFAULT_CONV_PARAMS, strict=True))
        ]
        hidden_size = check_int("hidden_size", hidden_size, 1)
        output_size = check_int("output_size", output_size, 1)
        dtype_name = check_init(weight_init_std, args["dtype"])
        Dropout(dropout_ratio)  # checks the ratio
        configs: LayerConfigs = []
        hw, ch = (h, w), c
        for i, p in enumerate(convs, start=1):
            conv, hw = conv_config(ch, hw, p)
            ch = p["filter_num"]
            configs += [(f"Conv{i}", conv), (f"Relu{i}", {"type": "Relu"})]
            if i % 2 == 0:
                pool, hw = pool_config(hw)
                configs.append((f"Pool{i // 2}", pool))
        dropout = {"type": "Dropout", "dropout_ratio": float(dropout_ratio)}
        configs += [
            ("Affine1", {"type": "Affine", "shape": [ch * hw[0] * hw[1], hidden_size]}),
            ("Relu7", {"type": "Relu"}),
            ("Dropout1", dropout),
            ("Affine2", {"type": "Affine", "shape": [hidden_size, output_size]}),
            ("Dropout2", dict(dropout)),
        ]
        kwargs = {
            "input_dim": [c, h, w],
            **{f"conv_param_{i + 1}": p for i, p in enumerate(convs)},
            "hidden_size": hidden_size,
            "output_size": output_size,
            "weight_init_std": weight_init_std,
            "dropout_ratio": dropout_ratio,
            "dtype": dtype_name,
        }
        return kwargs, configs
