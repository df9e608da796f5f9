"""``from dataset.mnist import load_mnist``: the bundled MNIST (nothing is downloaded), with the
book's defaults."""

from __future__ import annotations

from typing import Any

from ...datasets.mnist import load_mnist as _load_mnist


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False) -> Any:
    """``((x_train, t_train), (x_test, t_test))`` as the book returns them: images (N, 784)
    with ``flatten=True`` (the book's default) else (N, 1, 28, 28), float32 in [0, 1] with
    ``normalize=True``; labels uint8, or float32 one-hot rows with ``one_hot_label=True``."""
    return _load_mnist(normalize=normalize, flatten=flatten, one_hot_label=one_hot_label)
