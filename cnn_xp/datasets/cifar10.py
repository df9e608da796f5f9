"""CIFAR-10, *binary* version: ``data_batch_1.bin`` .. ``data_batch_5.bin`` and ``test_batch.bin``.

Each record is 1 label byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major
32x32). No pickle is involved.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy

from .transforms import check_labels, finish

Split = tuple[numpy.ndarray, numpy.ndarray]
RECORD = 1 + 3 * 32 * 32
CIFAR10_HINT = (
    "CIFAR-10 is read from its binary version (the 'CIFAR-10 binary version' archive, not the Python "
    "pickles), which cnn_xp cannot download: unpack it and pass its directory, e.g. "
    "--dataset path/to/cifar-10-batches-bin (holding data_batch_1.bin ... data_batch_5.bin and test_batch.bin)"
)
CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


def read_cifar10_batch(path: str | os.PathLike[str]) -> tuple[numpy.ndarray, numpy.ndarray]:
    """One binary batch file -> (images uint8 (N, 3, 32, 32), labels uint8 (N,))."""
    path = Path(path)
    data = numpy.fromfile(path, dtype=numpy.uint8)
    if data.size == 0 or data.size % RECORD:
        raise ValueError(
            f"{path}: {data.size} bytes is not a whole number of {RECORD}-byte CIFAR-10 records (truncated or corrupt)"
        )
    records = data.reshape(-1, RECORD)
    t = records[:, 0].copy()
    check_labels(path, t, len(CLASSES))
    return records[:, 1:].reshape(-1, 3, 32, 32).copy(), t


def is_cifar10_directory(directory: str | os.PathLike[str]) -> bool:
    d = Path(directory)
    return d.is_dir() and (d / "test_batch.bin").is_file()


def load_cifar10(
    directory: str | os.PathLike[str], normalize: bool = True, flatten: bool = False, one_hot_label: bool = False
) -> tuple[Split, Split]:
    """Load the CIFAR-10 binary directory as ``((x_train, t_train), (x_test, t_test))``,
    images (N, 3, 32, 32), like :func:`load_mnist`."""
    directory = Path(directory)
    train_files = sorted(directory.glob("data_batch_*.bin"))
    if not train_files or not (directory / "test_batch.bin").is_file():
        raise FileNotFoundError(
            f"{directory}: expected CIFAR-10 binary files data_batch_1.bin .. data_batch_5.bin and test_batch.bin"
        )
    parts = [read_cifar10_batch(p) for p in train_files]
    x_train, t_train = numpy.concatenate([p[0] for p in parts]), numpy.concatenate([p[1] for p in parts])
    x_test, t_test = read_cifar10_batch(directory / "test_batch.bin")
    return (
        finish(x_train, t_train, normalize, flatten, one_hot_label, 10),
        finish(x_test, t_test, normalize, flatten, one_hot_label, 10),
    )


def load_cifar10_test(directory: str | os.PathLike[str], normalize: bool = True) -> Split:
    """Only the test split (``test_batch.bin``) of the CIFAR-10 binary directory."""
    x, t = read_cifar10_batch(Path(directory) / "test_batch.bin")
    return finish(x, t, normalize, False, False, 10)
