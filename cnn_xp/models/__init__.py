"""Networks: the generic :class:`Network`, the book's SimpleConvNet and DeepConvNet, and the
registry of named models (:data:`MODELS`, extended with :func:`register_model`)."""

from __future__ import annotations

from typing import Any

from .build import build_model, build_network
from .deep_convnet import DeepConvNet
from .network import Network
from .resnet import DEPTHS as RESNET_DEPTHS
from .resnet import ResNet
from .simple_convnet import SimpleConvNet
from .zoo import MODELS, ModelEntry, build_named_model, register_model


def _simple(input_dim: tuple[int, ...], output_size: int, **kw: Any) -> Network:
    # He initialisation: the book's 0.01 trains slowly
    return SimpleConvNet(input_dim, output_size=output_size, weight_init_std="he", **kw)  # type: ignore[arg-type]


def _deep(input_dim: tuple[int, ...], output_size: int, **kw: Any) -> Network:
    return DeepConvNet(input_dim, output_size=output_size, **kw)  # type: ignore[arg-type]


register_model("simple", _simple, summary="SimpleConvNet (book ch. 7)", network_class=SimpleConvNet)
register_model("deep", _deep, summary="DeepConvNet (book ch. 8)", network_class=DeepConvNet)


def _resnet(depth: int) -> Any:
    def build(input_dim: tuple[int, ...], output_size: int, **kw: Any) -> Network:
        return ResNet(depth, input_dim, output_size, **kw)  # type: ignore[arg-type]

    return build


for _depth in RESNET_DEPTHS:
    register_model(
        f"resnet{_depth}", _resnet(_depth), summary=f"ResNet-{_depth} (He et al. 2016)", network_class=ResNet
    )


__all__ = [
    "MODELS",
    "DeepConvNet",
    "ModelEntry",
    "Network",
    "ResNet",
    "SimpleConvNet",
    "build_model",
    "build_named_model",
    "build_network",
    "register_model",
]
