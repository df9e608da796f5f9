"""The part of cupyx that cnn_xp uses, for the CuPy test double (see ``cupy/__init__.py`` beside it)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import numpy

_state = threading.local()


class DeviceSynchronized(RuntimeError):  # noqa: N818 - CuPy's name
    """A device synchronisation happened inside ``allow_synchronize(False)``."""


def _sync_allowed() -> bool:
    return getattr(_state, "allowed", True)


@contextlib.contextmanager
def allow_synchronize(allow: bool) -> Iterator[None]:
    saved = _sync_allowed()
    _state.allowed = bool(allow)
    try:
        yield
    finally:
        _state.allowed = saved


def empty_pinned(shape: Any, dtype: Any = float, order: str = "C") -> numpy.ndarray:
    import cupy

    return cupy._empty_pinned(shape, dtype, order)
