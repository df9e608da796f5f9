"""The C heap of a CPU training process: keep freed memory for the next step.

A training step allocates and frees the same few arrays of a few MiB each step.  glibc's
malloc hands the free top of a heap (each thread has its own) back to the system, so the next
step faults every page in again: thousands of page faults per step, a third of a small step's
time in the kernel.  Asking malloc to keep :data:`TOP_PAD` bytes of slack (``M_TOP_PAD``, what
``MALLOC_TOP_PAD_`` sets) leaves a step a few faults (``tests/test_heap.py`` counts them).

Setting ``M_TOP_PAD`` also freezes malloc's mmap threshold at its 128 KiB start, so every array
between 128 KiB and the 4 MiB from which NumPy asks for huge pages would be a fresh ``mmap``
faulted in page by page -- most of the Winograd convolutions' arrays.  :data:`MMAP_THRESHOLD`
(``M_MMAP_THRESHOLD``, glibc's largest) takes them from the heap too.  The command-line programs
do it at start; a program importing cnn_xp may call :func:`keep_freed_memory` itself.  Elsewhere
than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os

TOP_PAD = 64 * 2**20
"""Bytes of freed heap malloc keeps (the largest step's scratch arrays fit)."""

MMAP_THRESHOLD = 32 * 2**20
"""Arrays below this many bytes come from the heap, not from a fresh ``mmap`` (glibc's maximum)."""

_M_TOP_PAD, _M_MMAP_THRESHOLD = -2, -3  # glibc's <malloc.h>


def keep_freed_memory(top_pad: int = TOP_PAD) -> bool:
    """Ask glibc's malloc to keep ``top_pad`` bytes of freed memory, and to serve arrays below
    :data:`MMAP_THRESHOLD` from its heap; True if it did.

    Left alone (False) where the C library is not glibc, or when ``MALLOC_TOP_PAD_`` is set (the
    user's own setting wins; so does ``MALLOC_MMAP_THRESHOLD_`` for the threshold)."""
    if "MALLOC_TOP_PAD_" in os.environ or os.name != "posix":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    return bool(mallopt(_M_TOP_PAD, int(top_pad)))
