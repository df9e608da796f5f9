"""Residual networks for small images: the CIFAR family of He et al., "Deep Residual Learning
for Image Recognition" (2016), section 4.2 -- ResNet-20, 32, 44, 56, 110.

A 3x3 convolution to 16 channels, then three stages of n residual blocks each, of 16, 32 and 64
channels on feature maps of full, half and quarter size, then global average pooling and one
affine layer: depth = 6n + 2 weighted layers.  A block is ``relu(body(x) + shortcut(x))`` with
``body`` = conv3x3 - BN - ReLU - conv3x3 - BN; where a stage halves the size and doubles the
channels, its first block's body strides by 2 and its shortcut is a 1x1 convolution of stride 2
and a batch normalisation (the paper's option B), elsewhere the identity.  Convolutions have no
bias (each is followed by a batch normalisation); weights are He-initialised, BatchNorm starts as
the identity.  ``width`` multiplies the channels (16, 32, 64).

The layers are cnn_xp's own (:class:`~cnn_xp.layers.Residual`, :class:`~cnn_xp.layers.Sequential`,
:class:`~cnn_xp.layers.GlobalAvgPooling`, ...), so a ResNet trains, saves, resumes, exports and
splits across threads like any network; files rebuild it as this class.
"""

from __future__ import annotations

from typing import Any

from ..backend import Device
from ..checks import check_int, check_number
from ..functions.conv_utils import get_conv_outsize
from ..init import InitSpec
from .builders import BookNetwork, LayerConfigs, LayerFactory, check_init, check_input_dim, constructor_arguments

DEPTHS = (20, 32, 44, 56, 110)  # the paper's CIFAR networks (any 6n + 2 works)
WIDTHS = (16, 32, 64)
MIN_SIZE = 8  # two halvings leave a 2x2 map for the last stage


def _conv(c_in: int, c_out: int, k: int, stride: int) -> dict[str, Any]:
    return {
        "type": "Convolution",
        "shape": [c_out, c_in, k, k],
        "stride": [stride, stride],
        "pad": [k // 2] * 2,
        "bias": False,
    }


def _bn(c: int) -> dict[str, Any]:
    return {"type": "BatchNormalization", "num_features": c, "momentum": 0.9, "eps": 1e-5, "unbiased": True}


def _block(c_in: int, c_out: int, stride: int) -> dict[str, Any]:
    body = [
        {"name": "conv1", **_conv(c_in, c_out, 3, stride)},
        {"name": "bn1", **_bn(c_out)},
        {"name": "relu", "type": "Relu"},
        {"name": "conv2", **_conv(c_out, c_out, 3, 1)},
        {"name": "bn2", **_bn(c_out)},
    ]
    shortcut = None
    if stride != 1 or c_in != c_out:  # option B: a projection where the shape changes
        layers = [{"name": "conv", **_conv(c_in, c_out, 1, stride)}, {"name": "bn", **_bn(c_out)}]
        shortcut = {"name": "shortcut", "type": "Sequential", "layers": layers}
    return {"type": "Residual", "body": {"name": "body", "type": "Sequential", "layers": body}, "shortcut": shortcut}


class ResNet(BookNetwork):
    """ResNet-``depth`` for inputs of ``input_dim`` (C, H, W), at least 8x8 pixels, with
    ``output_size`` classes; ``depth`` is 6n + 2 (20, 32, 44, 56, 110, ...), ``width`` a factor on
    the paper's (16, 32, 64) channels.  ``params``: W1.. (convolutions, then the affine layer's
    weights), gamma/beta of each batch normalisation, b1 (the affine bias).  ``dtype``,
    ``device`` and ``seed`` as for :class:`~cnn_xp.models.SimpleConvNet`.
    """

    def __init__(
        self,
        depth: int = 20,
        input_dim: tuple[int, int, int] = (3, 32, 32),
        output_size: int = 10,
        width: float = 1,
        *,
        weight_init_std: InitSpec = "he",
        dtype: Any = "float32",
        device: str | Device | None = None,
        seed: int | None = None,
    ) -> None:
        kwargs, configs = ResNet.layer_configs(**constructor_arguments(locals()))
        layers = LayerFactory(weight_init_std, dtype, device, seed, affine_init_std="xavier").build(configs)
        super().__init__(layers, config={"name": "ResNet", "kwargs": kwargs}, input_dim=tuple(kwargs["input_dim"]))

    @staticmethod
    def describe(args: dict[str, Any]) -> tuple[dict[str, Any], LayerConfigs]:
        depth = check_int("depth", args["depth"], 8)
        if (depth - 2) % 6:
            n = (depth - 2) // 6
            raise ValueError(
                f"depth: expected 6n + 2 (3 stages of n blocks of 2 convolutions, plus the first convolution and the "
                f"affine layer: {', '.join(map(str, DEPTHS))}, ...), got {depth}; the nearest are {6 * n + 2} and "
                f"{6 * n + 8}"
            )
        c, h, w = check_input_dim(args["input_dim"])
        if min(h, w) < MIN_SIZE:
            raise ValueError(
                f"input_dim: ResNet needs images of at least {MIN_SIZE}x{MIN_SIZE} pixels (two stages halve them), "
                f"got {h}x{w}"
            )
        output_size = check_int("output_size", args["output_size"], 1)
        width = check_number("width", args["width"], 0.0, 64.0)
        channels = [max(1, round(base * width)) for base in WIDTHS]
        dtype_name = check_init(args["weight_init_std"], args["dtype"])
        n = (depth - 2) // 6
        configs: LayerConfigs = [
            ("Conv1", _conv(c, channels[0], 3, 1)),
            ("BN1", _bn(channels[0])),
            ("Relu1", {"type": "Relu"}),
        ]
        c_in, size = channels[0], (h, w)
        for stage, c_out in enumerate(channels, start=1):
            blocks: list[dict[str, Any]] = []
            for i in range(1, n + 1):
                stride = 2 if stage > 1 and i == 1 else 1
                blocks += [{"name": f"Block{i}", **_block(c_in, c_out, stride)}, {"name": f"Relu{i}", "type": "Relu"}]
                c_in = c_out
                if stride == 2:
                    size = (get_conv_outsize(size[0], 3, 2, 1), get_conv_outsize(size[1], 3, 2, 1))
            configs.append((f"Stage{stage}", {"type": "Sequential", "layers": blocks}))
        configs += [
            ("Pool", {"type": "GlobalAvgPooling"}),
            ("Affine", {"type": "Affine", "shape": [c_in, output_size]}),
        ]
        kwargs = {
            "depth": depth,
            "input_dim": [c, h, w],
            "output_size": output_size,
            "width": args["width"],
            "weight_init_std": args["weight_init_std"],
            "dtype": dtype_name,
        }
        return kwargs, configs
