"""A reusable scratch buffer for im2col columns.

A fresh array of tens of MiB costs a page fault per 4 KiB page on every step (about as long as
filling it); keeping one buffer per layer and reusing it between steps removes that cost.
"""

from __future__ import annotations

import math
from typing import Any

from ..backend import array_device, get_array_module

Array = Any


class Workspace:
    """Hands out arrays of any shape carved from one flat buffer that grows as needed.

    Every :meth:`take` may return memory that an earlier ``take`` returned: a caller takes one
    array at a time and is done with the previous one.  The buffer follows the dtype and device
    of ``like`` (a new one is allocated when they change).
    """

    def __init__(self) -> None:
        self._buf: Array | None = None

    def capacity(self, like: Array) -> int:
        """Elements the buffer holds for arrays like ``like`` (0 if none, or of another dtype/device)."""
        buf = self._buf
        if buf is None or type(buf) is not type(like) or buf.dtype != like.dtype:
            return 0
        return int(buf.shape[0]) if array_device(buf) == array_device(like) else 0

    def take(self, shape: tuple[int, ...], like: Array) -> Array:
        """An uninitialised array of ``shape`` with the dtype and device of ``like``."""
        size = math.prod(shape)
        if self._buf is None or self.capacity(like) < size:  # (an empty request needs a buffer too)
            xp = get_array_module(like)
            self._buf = None  # let the old buffer go before the new one is allocated
            self._buf = xp.empty((size,), dtype=like.dtype, device=array_device(like))
        buf = self._buf
        assert buf is not None
        # NumPy and CuPy return a view for the reshape of a contiguous slice, so writes land in buf
        return get_array_module(buf).reshape(buf[:size], shape)

    def release(self) -> None:
        """Drop the buffer (it is allocated again on the next :meth:`take`)."""
        self._buf = None
