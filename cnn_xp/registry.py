"""One pattern for every kind of thing cnn_xp finds by name: layers, models, optimizers, datasets.

A :class:`Registry` maps names to entries (a class, a builder function, a dataset description).
cnn_xp's own entries are registered the way a user's are, so what the command line offers
(``--model``, ``--optimizer``, ``--dataset``) and what a checkpoint may name is always the
registry's current content, never a list frozen at import::

    @cnn_xp.register_optimizer            # the class, under its lower-cased class name
    class Lion(cnn_xp.optim.Optimizer): ...

Registering a second, different entry under a taken name raises ValueError (registering the same
one again is a no-op); a name that is not registered raises :class:`UnknownNameError` listing
what is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(ValueError):
    """A name that no entry of a registry has; the message lists the names that are registered."""


class Registry(Mapping[str, T], Generic[T]):
    """Entries of one ``kind`` ("layer type", "model", ...) by name, in registration order.

    ``key`` normalises the names users type (``str.lower`` for case-insensitive names);
    ``check(entry)`` validates an entry before it is added (raising TypeError or ValueError).
    """

    def __init__(
        self,
        kind: str,
        *,
        key: Callable[[str], str] = lambda name: name,
        check: Callable[[Any], None] | None = None,
    ) -> None:
        self.kind = kind
        self._key = key
        self._check = check
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name``; returns the entry."""
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"register: a {self.kind} name must be a non-empty string, got {name!r}")
        if self._check is not None:
            self._check(entry)
        key = self._key(name)
        known = self._entries.get(key)
        if known is not None and known is not entry and known != entry:
            raise ValueError(f"register: {self.kind} {name!r} is already registered ({_describe(known)})")
        self._entries[key] = entry
        return entry

    def remove(self, name: str) -> None:
        """Forget ``name`` (tests, and users who replace an entry)."""
        self._entries.pop(self._key(name), None)

    def __getitem__(self, name: str) -> T:
        key = self._key(name) if isinstance(name, str) else name
        try:
            return self._entries[key]
        except (KeyError, TypeError):
            raise UnknownNameError(f"unknown {self.kind} {name!r}; expected one of {self.names()}") from None

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        """The entry of ``name``, or ``default`` when none is registered."""
        return self._entries.get(self._key(name), default) if isinstance(name, str) else default

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._key(name) in self._entries

    def names(self) -> list[str]:
        """The registered names, in registration order."""
        return list(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {self.names()})"


def _describe(entry: Any) -> str:
    module, name = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    return f"{module}.{name}" if module and name else repr(entry)[:80]
