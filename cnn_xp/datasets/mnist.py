"""MNIST, bundled with cnn_xp (no download): 60000 training and 10000 test images, 28x28.

Yann LeCun and Corinna Cortes, THE MNIST DATABASE of handwritten digits, CC BY-SA 3.0.
The bundled ``data/mnist.npz`` was made by ``scripts/make_mnist_npz.py``.
"""

from __future__ import annotations

from importlib import resources

import numpy

from .transforms import finish

Split = tuple[numpy.ndarray, numpy.ndarray]


def _bundled(splits: tuple[str, ...] = ("train", "test")) -> dict[str, numpy.ndarray]:
    """The bundled arrays of ``splits`` (only those are inflated)."""
    with (
        resources.files(__package__).joinpath("data/mnist.npz").open("rb") as f,
        numpy.load(f, allow_pickle=False) as z,
    ):
        return {f"{k}_{s}": z[f"{k}_{s}"] for s in splits for k in ("x", "t")}


def load_mnist_split(split: str, normalize: bool = True) -> Split:
    """One split (``'train'`` or ``'test'``) of the bundled MNIST, as :func:`load_mnist` gives it."""
    z = _bundled((split,))
    return finish(z[f"x_{split}"][:, None], z[f"t_{split}"], normalize, False, False, 10)


def load_mnist(normalize: bool = True, flatten: bool = False, one_hot_label: bool = False) -> tuple[Split, Split]:
    """The book's signature: returns ``((x_train, t_train), (x_test, t_test))``.

    Images are (N, 1, 28, 28) — (N, 784) with ``flatten=True`` — float32 in [0, 1] with
    ``normalize=True``, else uint8 in [0, 255].  Labels are uint8 class numbers (N,), or
    float32 one-hot rows (N, 10) with ``one_hot_label=True``.  (The book's default was
    ``flatten=True``; CNNs want images, so cnn_xp's default is ``False``.)
    """
    z = _bundled()
    train = finish(z["x_train"][:, None], z["t_train"], normalize, flatten, one_hot_label, 10)
    test = finish(z["x_test"][:, None], z["t_test"], normalize, flatten, one_hot_label, 10)
    return train, test
