"""Datasets, all offline, found through one registry (:data:`DATASETS`, extended with
:func:`register_dataset`): the bundled MNIST, Fashion-MNIST from Debian's package, any IDX
directory (KMNIST, EMNIST, ...) and the CIFAR-10 binary version.

Every loader returns ``((x_train, t_train), (x_test, t_test))`` as host NumPy arrays.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy

from .cifar10 import CLASSES as CIFAR10_CLASSES
from .cifar10 import is_cifar10_directory, load_cifar10, load_cifar10_test, read_cifar10_batch
from .fashion_mnist import CLASSES as FASHION_MNIST_CLASSES
from .fashion_mnist import find_fashion_mnist, load_fashion_mnist
from .folder import FolderOptions, ImageFolder, is_image_folder, load_image_folder
from .idx import is_idx_directory, load_idx_directory, load_idx_split, read_idx
from .mnist import load_mnist, load_mnist_split
from .registry import DATASETS, SPLITS, DatasetEntry, Split, named_datasets, register_dataset, resolve
from .transforms import finish


def _mnist(where: Path | None, split: str, options: Mapping[str, Any]) -> Split:
    return load_mnist_split(split, normalize=False)


def _fashion(where: Path | None, split: str, options: Mapping[str, Any]) -> Split:
    return load_idx_split(find_fashion_mnist(), split, normalize=False)


def _idx(where: Path | None, split: str, options: Mapping[str, Any]) -> Split:
    assert where is not None
    return load_idx_split(where, split, normalize=False)


def _cifar10(where: Path | None, split: str, options: Mapping[str, Any]) -> Split:
    assert where is not None
    return load_cifar10(where, normalize=False)[0] if split == "train" else load_cifar10_test(where, normalize=False)


register_dataset("mnist", _mnist, class_names=lambda where, options: [str(i) for i in range(10)], summary="bundled")
register_dataset(
    "fashion-mnist",
    _fashion,
    class_names=lambda where, options: list(FASHION_MNIST_CLASSES),
    summary="Debian's dataset-fashion-mnist",
)
register_dataset(
    "cifar10",
    _cifar10,
    detect=is_cifar10_directory,
    class_names=lambda where, options: list(CIFAR10_CLASSES),
    summary="CIFAR-10's binary batches",
)
register_dataset("idx", _idx, detect=is_idx_directory, summary="IDX files *-ubyte[.gz]")


def _folder(where: Path | None, options: Mapping[str, Any]) -> ImageFolder:
    assert where is not None
    return load_image_folder(where, **vars(FolderOptions.from_mapping(options)))


register_dataset(
    "images",
    lambda where, split, options: _folder(where, options).splits[split],
    detect=is_image_folder,
    class_names=lambda where, options: _folder(where, options).classes,
    summary="folders of images: DIR/<class>/ or DIR/train|test/<class>/",
    report=lambda where, options: _folder(where, options).report,
)


def report(name_or_path: str | os.PathLike[str], options: Mapping[str, Any] | None = None) -> str | None:
    """A dataset reader's line on what it read (images per class, files skipped), if it gives one."""
    _, entry, where = resolve(name_or_path)
    return entry.report(where, dict(options or {})) if entry.report is not None else None


def load_split(name_or_path: str | os.PathLike[str], split: str, options: Mapping[str, Any] | None = None) -> Split:
    """One split (``'train'`` or ``'test'``) of a dataset named or pointed at as ``--dataset``
    takes it, as its reader gives it (uint8 images, integer labels): only that split is read."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {list(SPLITS)}, got {split!r}")
    _, entry, where = resolve(name_or_path)
    return entry.load(where, split, dict(options or {}))


def class_names(
    name_or_path: str | os.PathLike[str], num_classes: int, options: Mapping[str, Any] | None = None
) -> list[str]:
    """The names of a dataset's classes where it has them, else ``'0'``, ``'1'``, ... (always
    ``num_classes`` of them)."""
    try:
        _, entry, where = resolve(name_or_path)
        names = entry.class_names(where, dict(options or {})) if entry.class_names is not None else None
    except (ValueError, OSError):
        names = None
    names = list(names or [])
    return names if len(names) == num_classes else [str(i) for i in range(num_classes)]


def load_dataset(name_or_path: str | os.PathLike[str], normalize: bool = True) -> tuple[Split, Split]:
    """``'mnist'``, ``'fashion-mnist'`` (names in any case), or a directory a registered reader
    claims (IDX files, CIFAR-10 binary, ...): ``((x_train, t_train), (x_test, t_test))``, uint8
    images scaled to float32 in [0, 1] with ``normalize``."""
    train, test = (load_split(name_or_path, s) for s in SPLITS)
    return _finish(*train, normalize), _finish(*test, normalize)


def load_test_split(name_or_path: str | os.PathLike[str], normalize: bool = True) -> Split:
    """Only the test split of a dataset named as for :func:`load_dataset`."""
    return _finish(*load_split(name_or_path, "test"), normalize)


def _finish(x: numpy.ndarray, t: numpy.ndarray, normalize: bool) -> Split:
    return finish(x, t, normalize and x.dtype == numpy.uint8, False, False, 0)


NAMES = ("mnist", "fashion-mnist")

__all__ = [
    "DATASETS",
    "NAMES",
    "DatasetEntry",
    "class_names",
    "find_fashion_mnist",
    "is_cifar10_directory",
    "is_idx_directory",
    "load_cifar10",
    "load_dataset",
    "load_fashion_mnist",
    "load_idx_directory",
    "load_image_folder",
    "load_mnist",
    "load_split",
    "load_test_split",
    "named_datasets",
    "read_cifar10_batch",
    "read_idx",
    "register_dataset",
    "report",
    "resolve",
]
