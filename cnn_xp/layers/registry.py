"""The one registry of layer types: what rebuilds any network from its description.

A network is described by its layers' :meth:`~cnn_xp.layers.Layer.config` (type name and
settings, no arrays); :func:`layer_class` finds the class for a type name.  cnn_xp's own
layers are registered by ``cnn_xp.layers`` (this module knows no layer class, so that every
layer module may import it); a user's layer class is registered the same way, with
``@register_layer``::

    @cnn_xp.register_layer
    class Swish(cnn_xp.layers.Layer):
        ...

A layer with settings or arrays also defines ``config()``, ``state_shapes()`` and
``from_config()`` (see :class:`~cnn_xp.layers.Layer`); one without needs nothing more.
"""

from __future__ import annotations

from typing import TypeVar

from ..registry import Registry, UnknownNameError
from .base import Layer, type_name

L = TypeVar("L", bound=type[Layer])


def _check_layer_class(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: expected a subclass of cnn_xp.layers.Layer, got {cls!r}")


LAYER_TYPES: Registry[type[Layer]] = Registry("layer type", check=_check_layer_class)


class UnregisteredLayerError(UnknownNameError):
    """A description names a layer type that no registered class provides."""


def register_layer(cls: L | None = None, *, name: str | None = None):  # type: ignore[no-untyped-def]
    """Register a :class:`Layer` subclass under ``name`` (default: its class name) so that
    networks using it can be saved and rebuilt.  Works as ``@register_layer``,
    ``@register_layer(name="...")`` or ``register_layer(MyLayer)``; returns the class."""

    def add(layer_cls: L) -> L:
        _check_layer_class(layer_cls)
        key = name or layer_cls.__name__
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"register_layer: name must be an identifier, got {key!r}")
        LAYER_TYPES.add(key, layer_cls)
        if key != layer_cls.__name__:
            layer_cls._registered_name = key  # type: ignore[attr-defined]  # what config() reports
        return layer_cls

    return add if cls is None else add(cls)


def layer_class(name: object, where: str = "layer") -> type[Layer]:
    """The class registered for type ``name``; UnregisteredLayerError (a ValueError) if none is."""
    if isinstance(name, str) and name in LAYER_TYPES:
        return LAYER_TYPES[name]
    raise UnregisteredLayerError(
        f"{where}: layer type {name!r} is not registered; register its class with "
        "@cnn_xp.register_layer (and import it) before saving or loading such a network"
    )


def is_registered(layer: Layer) -> bool:
    return LAYER_TYPES.get(type_name(type(layer))) is type(layer)
