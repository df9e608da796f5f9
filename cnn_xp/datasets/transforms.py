"""Turning raw uint8 images and labels into what the book's loaders return."""

from __future__ import annotations

import numpy


def finish(
    x: numpy.ndarray, t: numpy.ndarray, normalize: bool, flatten: bool, one_hot_label: bool, num_classes: int
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """x uint8 (N, C, H, W) -> float32 in [0, 1] if ``normalize``, (N, C*H*W) if ``flatten``;
    t uint8 (N,) -> float32 one-hot (N, num_classes) if ``one_hot_label``."""
    if normalize:
        x = x.astype(numpy.float32) / numpy.float32(255.0)
    if flatten:
        x = x.reshape(x.shape[0], -1)
    if one_hot_label:
        t = numpy.eye(num_classes, dtype=numpy.float32)[t]
    return x, t


def check_labels(path: object, t: numpy.ndarray, num_classes: int) -> None:
    if t.size and int(t.max()) >= num_classes:
        raise ValueError(f"{path}: label {int(t.max())} out of range for {num_classes} classes (corrupt file?)")
