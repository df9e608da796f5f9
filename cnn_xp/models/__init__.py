"""Networks: the generic :class:`Network` and the book's SimpleConvNet and DeepConvNet."""

from typing import Any

from .deep_convnet import DeepConvNet
from .network import Network
from .simple_convnet import SimpleConvNet

MODELS: dict[str, type[Network]] = {"SimpleConvNet": SimpleConvNet, "DeepConvNet": DeepConvNet}


def build_model(config: dict[str, Any], **overrides: Any) -> Network:
    """Rebuild a network from its ``config`` (as stored in files); ``overrides`` replace kwargs."""
    name = config.get("name")
    if name not in MODELS:
        raise ValueError(f"model: unknown network {name!r}; expected one of {sorted(MODELS)}")
    kwargs = {**config.get("kwargs", {}), **overrides}
    if "input_dim" in kwargs:
        kwargs["input_dim"] = tuple(kwargs["input_dim"])
    return MODELS[name](**kwargs)


__all__ = ["MODELS", "DeepConvNet", "Network", "SimpleConvNet", "build_model"]
