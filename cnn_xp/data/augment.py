"""Random crops after padding and horizontal flips, as array operations on the device a batch
lives on (one gather for the whole batch, no loop over images).

The draws come from a host generator seeded by (seed, epoch, batch), so a resumed run augments
every batch as the run straight through did, and the ranks of a distributed run slice the draws
of the global batch as they slice the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy  # the draws: a few small host arrays per batch

from ..backend import array_device, get_array_module

Array = Any


@dataclass(frozen=True)
class Draws:
    """Where each image of a batch is cropped (top-left corner in the padded image) and whether it
    is mirrored: int64 (n,), int64 (n,), bool (n,)."""

    top: numpy.ndarray
    left: numpy.ndarray
    flip: numpy.ndarray


def draw(seed: int, epoch: int, batch: int, n: int, pad: int, part: slice) -> Draws:
    """The draws of global batch ``batch`` of ``epoch`` (``n`` images), this process's ``part``."""
    rng = numpy.random.default_rng([seed, epoch, batch, 1])  # (the shifts use [seed, epoch, batch])
    top = rng.integers(0, 2 * pad + 1, n)
    left = rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    return Draws(top[part], left[part], flip[part])


def crop_and_flip(x: Array, pad: int, draws: Draws) -> Array:
    """Each image of x (n, C, H, W) zero-padded by ``pad`` pixels on every side, cropped back to
    H x W at its drawn corner, and mirrored left-right where drawn: ``out[i, c, y, x] =
    padded[i, c, top[i] + y, left[i] + (W - 1 - x if flip[i] else x)]``.  A new array on x's device."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    if n == 0:
        return x
    dev = array_device(x)
    padded = xp.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=x.dtype, device=dev)
    padded[:, :, pad : pad + h, pad : pad + w] = x
    ys, xs = xp.arange(h, device=dev), xp.arange(w, device=dev)
    top, left = (xp.asarray(a, device=dev) for a in (draws.top, draws.left))
    flip = xp.asarray(draws.flip, device=dev)
    rows = xp.reshape(top, (n, 1)) + xp.reshape(ys, (1, h))  # (n, H) rows of the padded image
    cols = xp.reshape(left, (n, 1)) + xp.where(xp.reshape(flip, (n, 1)), w - 1 - xs, xs)  # (n, W)
    images = xp.reshape(xp.arange(n, device=dev), (n, 1, 1, 1))
    channels = xp.reshape(xp.arange(c, device=dev), (1, c, 1, 1))
    return padded[images, channels, xp.reshape(rows, (n, 1, h, 1)), xp.reshape(cols, (n, 1, 1, w))]
