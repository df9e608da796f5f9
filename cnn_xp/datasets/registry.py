"""The registry of datasets: what ``--dataset`` accepts and how each split is read.

An entry reads one split (``"train"`` or ``"test"``) as host arrays ``(x, t)``: images
``(N, C, H, W)`` -- uint8 in [0, 255], or floating point as stored -- and integer labels ``(N,)``.
A *named* dataset (``mnist``) is found by its name; a dataset in a folder is found by its
``detect(path)`` function, tried in registration order (the first that claims the folder reads
it).  ``class_names`` gives the classes' names when the data has them (else they are numbered)::

    @cnn_xp.register_dataset("my-scans", class_names=lambda where, options: ["healthy", "ill"])
    def load_scans(where, split, options):
        return images_uint8, labels
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy

from ..registry import Registry

Split = tuple[numpy.ndarray, numpy.ndarray]
Loader = Callable[[Path | None, str, Mapping[str, Any]], Split]
SPLITS = ("train", "test")


@dataclass(frozen=True)
class DatasetEntry:
    load: Loader
    detect: Callable[[Path], bool] | None = None  # None: a named dataset (no folder to point at)
    class_names: Callable[[Path | None, Mapping[str, Any]], Sequence[str] | None] | None = None
    summary: str = ""
    report: Callable[[Path | None, Mapping[str, Any]], str | None] | None = None  # one line on what was read


def _key(name: str) -> str:
    text = name.strip().lower().replace("_", "-")
    return {"fashionmnist": "fashion-mnist"}.get(text, text)


def _check(entry: object) -> None:
    if not isinstance(entry, DatasetEntry) or not callable(entry.load):
        raise TypeError(f"register_dataset: expected a loader function, got {entry!r}")


DATASETS: Registry[DatasetEntry] = Registry("dataset", key=_key, check=_check)


def register_dataset(
    name: str,
    load: Loader | None = None,
    *,
    detect: Callable[[Path], bool] | None = None,
    class_names: Callable[[Path | None, Mapping[str, Any]], Sequence[str] | None] | None = None,
    summary: str = "",
    report: Callable[[Path | None, Mapping[str, Any]], str | None] | None = None,
) -> Any:
    """Register a dataset reader ``load(where, split, options) -> (x, t)`` under ``name`` (as a
    decorator when ``load`` is omitted).  ``where`` is the folder a user named (None for a named
    dataset); ``options`` the run's dataset settings (``channels``, ``image_size``, ...), which a
    reader may ignore.  With ``detect``, ``--dataset PATH`` picks this reader for folders it claims;
    ``report(where, options)`` may give a line on what was read (a run prints it)."""

    def add(fn: Loader) -> Loader:
        DATASETS.add(name, DatasetEntry(fn, detect, class_names, summary, report))
        return fn

    return add if load is None else add(load)


def named_datasets() -> list[str]:
    return [name for name, entry in DATASETS.items() if entry.detect is None]


def resolve(name_or_path: str | os.PathLike[str]) -> tuple[str, DatasetEntry, Path | None]:
    """(registered name, entry, folder or None) of a ``--dataset`` argument; ValueError naming
    ``dataset`` and what is known when nothing reads it."""
    text = str(name_or_path)
    if text.strip() and text in DATASETS and DATASETS[text].detect is None:
        return _key(text), DATASETS[text], None
    path = Path(name_or_path)
    if path.is_dir():
        for name, entry in DATASETS.items():
            if entry.detect is not None and entry.detect(path):
                return name, entry, path
    folders = [
        f"{name} ({entry.summary})" if entry.summary else name for name, entry in DATASETS.items() if entry.detect
    ]
    if path.exists():
        raise ValueError(f"dataset: no reader claims {path}; folders read: {', '.join(folders)}")
    key = _key(text)
    if key.replace("-", "").startswith("cifar"):
        from .cifar10 import CIFAR10_HINT

        raise ValueError(f"dataset: {text!r} is not bundled and there is no such directory; {CIFAR10_HINT}")
    raise ValueError(
        f"dataset: unknown dataset {text!r} and no such directory; expected one of {named_datasets()} (any case), "
        f"or a folder: {', '.join(folders)}"
    )
