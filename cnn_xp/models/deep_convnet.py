"""DeepConvNet of "Deep Learning from Scratch" ch. 8 (99.38 % on MNIST in the book).

conv-relu-conv-relu-pool-conv-relu-conv-relu-pool-conv-relu-conv-relu-pool-
affine-relu-dropout-affine-dropout-softmax, 3x3 filters, He initialisation.
"""

from __future__ import annotations

from typing import Any

from ..backend import Device
from ..checks import check_int
from ..init import InitSpec
from ..layers import Dropout, Pooling, Relu
from .builders import LayerFactory, check_input_dim, conv_settings, pooled
from .network import Network

DEFAULT_CONV_PARAMS = (
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Network):
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
        c, h, w = check_input_dim(input_dim)
        given = (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6)
        convs = [
            conv_settings(f"conv_param_{i + 1}", p or {}, d)
            for i, (p, d) in enumerate(zip(given, DEFAULT_CONV_PARAMS, strict=True))
        ]
        hidden_size = check_int("hidden_size", hidden_size, 1)
        output_size = check_int("output_size", output_size, 1)
        make = LayerFactory(weight_init_std, dtype, device, seed)
        layers: list[tuple[str, Any]] = []
        hw, ch = (h, w), c
        for i, p in enumerate(convs, start=1):
            conv, hw = make.conv(ch, hw, p)
            ch = p["filter_num"]
            layers += [(f"Conv{i}", conv), (f"Relu{i}", Relu())]
            if i % 2 == 0:
                hw = pooled(hw)
                layers.append((f"Pool{i // 2}", Pooling(pool_h=2, pool_w=2, stride=2)))
        dropout_seed = int(make.rng.integers(2**31))
        layers += [
            ("Affine1", make.affine(ch * hw[0] * hw[1], hidden_size)),
            ("Relu7", Relu()),
            ("Dropout1", Dropout(dropout_ratio, seed=dropout_seed)),
            ("Affine2", make.affine(hidden_size, output_size)),
            ("Dropout2", Dropout(dropout_ratio, seed=dropout_seed + 1)),
        ]
        config = {
            "name": "DeepConvNet",
            "kwargs": {
                "input_dim": [c, h, w],
                **{f"conv_param_{i + 1}": p for i, p in enumerate(convs)},
                "hidden_size": hidden_size,
                "output_size": output_size,
                "weight_init_std": weight_init_std,
                "dropout_ratio": dropout_ratio,
                "dtype": make.dtype.name,
            },
        }
        super().__init__(layers, config=config)
