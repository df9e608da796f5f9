"""The switch between the fast paths and the generic reference path.

Every fast path computes exactly what the generic path computes (the tests compare them); the
switch exists so that the comparison, and a benchmark of the difference, can be made.  Fast
paths are on unless the environment sets ``CNN_XP_FAST_PATHS=0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_enabled = os.environ.get("CNN_XP_FAST_PATHS", "1").strip() != "0"


def fast_paths_enabled() -> bool:
    """True unless fast paths were turned off (``CNN_XP_FAST_PATHS=0`` or :func:`generic_paths`)."""
    return _enabled


@contextmanager
def generic_paths() -> Iterator[None]:
    """``with generic_paths(): ...`` runs only the generic reference code paths inside the block."""
    global _enabled
    saved, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = saved
