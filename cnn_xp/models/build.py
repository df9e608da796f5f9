"""Networks from their descriptions: a checked spec (see :mod:`cnn_xp.models.spec`) built on
the host, every array zero-filled, ready for a state dict."""

from __future__ import annotations

from typing import Any

from ..layers.registry import layer_class
from .network import Network
from .spec import check_spec
from .zoo import network_classes


def build_network(spec: dict[str, Any]) -> Network:
    """The network a *checked* spec describes, on the host, every array zero-filled (load a
    state dict next). A book network comes back as its class (``SimpleConvNet``, ...)."""
    dtype = spec["dtype"]
    layers = [
        (entry["name"], layer_class(entry["type"]).from_config({k: v for k, v in entry.items() if k != "name"}, dtype))
        for entry in spec["layers"]
    ]
    loss = layer_class(spec["loss"]["type"]).from_config(spec["loss"], dtype)
    cls = network_classes().get(spec["name"], Network) if "kwargs" in spec else Network
    net = cls.__new__(cls)  # a book network's layers are built from the spec, not redrawn
    config = {"name": spec["name"], **({"kwargs": spec["kwargs"]} if "kwargs" in spec else {})}
    input_dim = tuple(spec["input_dim"]) if spec.get("input_dim") is not None else None
    Network.__init__(net, layers, loss, config=config, input_dim=input_dim)
    return net


def build_model(spec: dict[str, Any]) -> Network:
    """The network a spec describes (as :meth:`Network.spec` gives it, or as files store it),
    checked first, on the host with zero-filled arrays; load a state dict next."""
    return build_network(check_spec(spec)[0])
