"""The switches between the fast paths and the generic reference path.

Every fast path computes exactly what the generic path computes (the tests compare them); the
switches exist so that the comparison, and a benchmark of the difference, can be made.  Fast
paths are on unless the environment sets ``CNN_XP_FAST_PATHS=0``.

One fast path has its own switch: Winograd for the CPU's 3x3 stride-1 convolutions
(:mod:`cnn_xp.functions.winograd`) computes the same function with different float rounding, so
it can be turned off alone -- ``CNN_XP_WINOGRAD=0`` or :func:`direct_convolution` -- leaving the
direct (flat-rows im2col) path.  Its larger tiles, F(4x4, 3x3), round more (float32 errors of
up to 8e-6 of the largest magnitude on DeepConvNet's layers, against 6e-7 for F(2x2, 3x3));
``CNN_XP_WINOGRAD=2`` or :func:`small_winograd_tiles` keeps to F(2x2, 3x3).

The Winograd transforms and max pooling run as compiled C on NumPy arrays where the extension
was built (:mod:`cnn_xp.functions.native`), with the results of the NumPy passes;
``CNN_XP_NATIVE=0`` or :func:`numpy_kernels` runs the NumPy passes instead.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

_enabled = os.environ.get("CNN_XP_FAST_PATHS", "1").strip() != "0"
_winograd = os.environ.get("CNN_XP_WINOGRAD", "1").strip() != "0"
_max_tile = 2 if os.environ.get("CNN_XP_WINOGRAD", "1").strip() == "2" else 4
_native = os.environ.get("CNN_XP_NATIVE", "1").strip() != "0"


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


def winograd_enabled() -> bool:
    """True unless Winograd was turned off (``CNN_XP_WINOGRAD=0`` or :func:`direct_convolution`)
    or all fast paths were."""
    return _winograd and _enabled


@contextmanager
def direct_convolution() -> Iterator[None]:
    """``with direct_convolution(): ...``: 3x3 convolutions inside the block take the direct
    im2col path instead of Winograd (the other fast paths stay on)."""
    global _winograd
    saved, _winograd = _winograd, False
    try:
        yield
    finally:
        _winograd = saved


def winograd_max_tile() -> int:
    """The largest Winograd output tile: 4 (F(4x4, 3x3) where it pays), or 2 (F(2x2, 3x3) only:
    ``CNN_XP_WINOGRAD=2`` or :func:`small_winograd_tiles`)."""
    return _max_tile


@contextmanager
def small_winograd_tiles() -> Iterator[None]:
    """``with small_winograd_tiles(): ...``: Winograd convolutions inside the block use F(2x2, 3x3)
    only, whose float32 results are closer to the direct path's than F(4x4, 3x3)'s."""
    global _max_tile
    saved, _max_tile = _max_tile, 2
    try:
        yield
    finally:
        _max_tile = saved


def native_enabled() -> bool:
    """True unless the compiled CPU kernels were turned off (``CNN_XP_NATIVE=0`` or
    :func:`numpy_kernels`).  Whether they were built is :func:`cnn_xp.functions.native.available`."""
    return _native


@contextmanager
def numpy_kernels() -> Iterator[None]:
    """``with numpy_kernels(): ...``: inside the block the Winograd transforms and max pooling
    run as NumPy passes instead of the compiled kernels (the same results; slower)."""
    global _native
    saved, _native = _native, False
    try:
        yield
    finally:
        _native = saved
