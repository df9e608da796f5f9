"""A live, dict-like view of a network's parameters that can never go out of sync.

``network.params['W1']`` *is* the first weight layer's ``W``; assigning
``network.params['W1'] = new`` replaces the layer's array, so layers and ``params`` cannot
disagree (the book kept two references that silently diverged when an array was replaced).
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

from ..backend import get_array_module
from ..checks import check_same_place
from ..layers.base import Layer

Slot = tuple[Layer, str]


class ParamView(MutableMapping[str, Any]):
    """Mapping ``'W1' -> layer.W`` over named (layer, attribute) slots."""

    def __init__(self, slots: dict[str, Slot], kind: str = "parameter") -> None:
        self._slots = slots
        self._kind = kind

    def __getitem__(self, key: str) -> Any:
        layer, attr = self._slot(key)
        return getattr(layer, attr)

    def __setitem__(self, key: str, value: Any) -> None:
        layer, attr = self._slot(key)
        old = getattr(layer, attr)
        if value is old:  # in-place update (``params[k] -= lr * g``)
            return
        if tuple(getattr(value, "shape", ())) != tuple(old.shape) or not hasattr(value, "dtype"):
            raise ValueError(
                f"params[{key!r}]: expected an array of shape {tuple(old.shape)}, got {type(value).__name__} of shape {tuple(getattr(value, 'shape', ()))}"
            )
        check_same_place(f"params[{key!r}]", value, old)
        if value.dtype != old.dtype:
            value = get_array_module(value).astype(value, old.dtype)
        setattr(layer, attr, value)

    def __delitem__(self, key: str) -> None:
        raise TypeError(f"cannot delete {self._kind} {key!r}: a network's {self._kind}s are fixed by its layers")

    def __iter__(self) -> Iterator[str]:
        return iter(self._slots)

    def __len__(self) -> int:
        return len(self._slots)

    def _slot(self, key: str) -> Slot:
        try:
            return self._slots[key]
        except KeyError:
            raise KeyError(f"unknown {self._kind} {key!r}; this network has {list(self._slots)}") from None

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: shape {tuple(self[k].shape)}" for k in self)
        return f"{{{inner}}}"
