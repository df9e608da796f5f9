"""Datasets, all offline: bundled MNIST, Fashion-MNIST from Debian's package, any IDX
directory (KMNIST, EMNIST, ...), and the CIFAR-10 binary version.

Every loader returns ``((x_train, t_train), (x_test, t_test))`` as host NumPy arrays.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy

from .cifar10 import is_cifar10_directory, load_cifar10, load_cifar10_test, read_cifar10_batch
from .fashion_mnist import find_fashion_mnist, load_fashion_mnist, load_fashion_mnist_test
from .idx import is_idx_directory, load_idx_directory, load_idx_split, read_idx
from .mnist import load_mnist, load_mnist_split

Split = tuple[numpy.ndarray, numpy.ndarray]
NAMES = ("mnist", "fashion-mnist")


CIFAR10_HINT = (
    "CIFAR-10 is read from its binary version (the 'CIFAR-10 binary version' archive, not the Python "
    "pickles), which cnn_xp cannot download: unpack it and pass its directory, e.g. "
    "--dataset path/to/cifar-10-batches-bin (holding data_batch_1.bin ... data_batch_5.bin and test_batch.bin)"
)


def load_dataset(name_or_path: str | os.PathLike[str], normalize: bool = True) -> tuple[Split, Split]:
    """``'mnist'``, ``'fashion-mnist'`` (names in any case), or a directory (IDX files or CIFAR-10 binary)."""
    kind, where = _resolve(name_or_path)
    if kind == "mnist":
        return load_mnist(normalize=normalize)
    if kind == "fashion-mnist":
        return load_fashion_mnist(normalize=normalize)
    if kind == "cifar10":
        return load_cifar10(where, normalize=normalize)
    return load_idx_directory(where, normalize=normalize)


def load_test_split(name_or_path: str | os.PathLike[str], normalize: bool = True) -> Split:
    """Only the test split of a dataset named as for :func:`load_dataset`: nothing of the
    training split is read."""
    kind, where = _resolve(name_or_path)
    if kind == "mnist":
        return load_mnist_split("test", normalize=normalize)
    if kind == "fashion-mnist":
        return load_fashion_mnist_test(normalize=normalize)
    if kind == "cifar10":
        return load_cifar10_test(where, normalize=normalize)
    return load_idx_split(where, "test", normalize=normalize)


def _resolve(name_or_path: str | os.PathLike[str]) -> tuple[str, Path]:
    """('mnist' | 'fashion-mnist' | 'cifar10' | 'idx', the directory) for a dataset argument."""
    key = str(name_or_path)
    name = key.strip().lower()
    if name == "mnist":
        return "mnist", Path()
    if name in ("fashion-mnist", "fashion_mnist", "fashionmnist"):
        return "fashion-mnist", Path()
    path = Path(name_or_path)
    if is_cifar10_directory(path):
        return "cifar10", path
    if is_idx_directory(path):
        return "idx", path
    if path.exists():
        raise ValueError(
            f"dataset: {path} is neither an IDX dataset directory (*-ubyte[.gz] files) nor a CIFAR-10 binary directory (data_batch_*.bin)"
        )
    known = f"expected one of {list(NAMES)} (any case), or a directory of IDX files (*-ubyte[.gz]) or of CIFAR-10 binary batches"
    if name.replace("-", "").replace("_", "").startswith("cifar"):
        raise ValueError(f"dataset: {key!r} is not bundled and there is no such directory; {CIFAR10_HINT}")
    raise ValueError(f"dataset: unknown dataset {key!r} and no such directory; {known}")


__all__ = [
    "NAMES",
    "find_fashion_mnist",
    "is_cifar10_directory",
    "is_idx_directory",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx_directory",
    "load_mnist",
    "load_test_split",
    "read_cifar10_batch",
    "read_idx",
]
