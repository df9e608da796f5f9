"""The registry of named models: what ``--model`` offers and what builds a run's network.

An entry is a builder ``build(input_dim, output_size, *, dtype, device, seed) -> Network`` (and
a one-line summary).  A network built by a class whose layers follow from its constructor's
arguments (a :class:`~cnn_xp.models.builders.BookNetwork`: SimpleConvNet, DeepConvNet, ResNet)
names that class in ``network_class``, so files rebuild it as that class; any other network is
rebuilt from its layers as a :class:`~cnn_xp.models.Network`::

    @cnn_xp.register_model("tiny", summary="two convolutions")
    def tiny(input_dim, output_size, *, dtype="float32", device=None, seed=None):
        return cnn_xp.Network([...], input_dim=input_dim)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..registry import Registry

if TYPE_CHECKING:
    from .network import Network

Builder = Callable[..., "Network"]


@dataclass(frozen=True)
class ModelEntry:
    build: Builder
    summary: str = ""
    network_class: type[Network] | None = None


def _check_entry(entry: object) -> None:
    if not isinstance(entry, ModelEntry) or not callable(entry.build):
        raise TypeError(f"register_model: expected a builder function, got {entry!r}")


MODELS: Registry[ModelEntry] = Registry("model", key=str.lower, check=_check_entry)


def register_model(
    name: str, build: Builder | None = None, *, summary: str = "", network_class: type[Network] | None = None
) -> Any:
    """Register ``build`` under ``name`` (any case finds it); as a decorator when ``build`` is
    omitted.  ``build(input_dim, output_size, *, dtype, device, seed)`` returns the network with
    its initial weights (drawn from ``seed``) on ``device``."""

    def add(fn: Builder) -> Builder:
        MODELS.add(name, ModelEntry(fn, summary, network_class))
        return fn

    return add if build is None else add(build)


def build_named_model(
    name: str,
    input_dim: tuple[int, ...],
    output_size: int,
    *,
    dtype: str = "float32",
    device: Any = None,
    seed: int | None = None,
) -> Network:
    """The registered model ``name`` for inputs of ``input_dim`` and ``output_size`` classes."""
    return MODELS[name].build(tuple(input_dim), output_size, dtype=dtype, device=device, seed=seed)


def network_classes() -> dict[str, type[Network]]:
    """Classes a file's model ``name`` rebuilds from its constructor arguments, by class name."""
    return {e.network_class.__name__: e.network_class for e in MODELS.values() if e.network_class is not None}
