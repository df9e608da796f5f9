"""Networks: the generic :class:`Network` and the book's SimpleConvNet and DeepConvNet."""

from typing import Any

from .deep_convnet import DeepConvNet
from .network import Network
from .simple_convnet import SimpleConvNet

# The one registry of named networks: the command line's short names -> classes. A file
# names a network by its class name; cnn_xp.models.spec rebuilds any network from its layers.
MODELS: dict[str, type[SimpleConvNet] | type[DeepConvNet]] = {"simple": SimpleConvNet, "deep": DeepConvNet}


def build_model(spec: dict[str, Any]) -> Network:
    """The network a spec describes (as :meth:`Network.spec` gives it, or as files store it),
    checked first, on the host with zero-filled arrays; load a state dict next."""
    from .spec import build_network, check_spec

    return build_network(check_spec(spec)[0])


__all__ = ["MODELS", "DeepConvNet", "Network", "SimpleConvNet", "build_model"]
