"""The device the book's networks are built on (``python -m cnn_xp.book --device ...``).

The book's scripts make their data with NumPy on the host and hand it to a network; so a
network of :mod:`cnn_xp.book` takes host arrays, moves them to its device, and gives host
arrays back where the book's scripts read them (``predict``; ``loss`` and ``accuracy`` are
numbers). Gradients and parameters stay on the device, where the optimizers update them.
This conversion at the boundary is the book layer's job alone: cnn_xp's own classes never
move data behind their user's back.
"""

from __future__ import annotations

from typing import Any

from ..backend import Device, parse_device, to_device

_device: Any = Device("cpu")


def set_device(spec: Any) -> Any:
    """Build the book's networks on ``spec`` (``'cpu'``, ``'gpu'``, ``'gpu:1'``, ``'auto'``, or
    another array library's device object) from now on; returns the device."""
    global _device
    _device = parse_device(spec) if spec is None or isinstance(spec, (str, Device)) else spec
    return _device


def get_device() -> Any:
    return _device


def onto(x: Any, device: Any) -> Any:
    """``x`` on ``device`` (a host array, a list or a number from a book script); arrays already
    there are returned as they are."""
    if isinstance(x, (list, tuple, int, float)):
        import numpy

        x = numpy.asarray(x)
    return to_device(x, device)
