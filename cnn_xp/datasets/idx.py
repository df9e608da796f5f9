"""Datasets in the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

A directory holds four files (optionally gzipped): ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; names
with a prefix (``emnist-digits-train-images-idx3-ubyte.gz``) or ``test`` for ``t10k`` also match.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path

import numpy

from .transforms import check_labels, finish

Split = tuple[numpy.ndarray, numpy.ndarray]
# IDX type byte -> big-endian NumPy dtype
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> numpy.ndarray:
    """Read one IDX file (``.gz`` or plain). Raises ValueError naming the file if it is corrupt or
    truncated. The data is read (and inflated) only up to the size the header declares, plus one
    byte to detect a longer file: a small ``.gz`` that would inflate far beyond its declared
    size is refused after reading that much, never inflated in full."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise ValueError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            dtype, ndim = numpy.dtype(_IDX_DTYPES[head[2]]), head[3]
            dims = f.read(4 * ndim)
            if ndim == 0 or len(dims) < 4 * ndim:
                raise ValueError(f"{path}: truncated IDX header ({4 + len(dims)} bytes)")
            shape = tuple(int(v) for v in numpy.frombuffer(dims, dtype=">u4"))
            size = math.prod(shape) * dtype.itemsize
            data = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) != size:
        got = f"{len(data)} bytes" if len(data) <= size else "more"
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({size} bytes of data) but the file holds {got} (truncated or corrupt)"
        )
    return numpy.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, split: str, kind: str) -> Path:
    stems = ("train",) if split == "train" else ("t10k", "test")
    ndim = 3 if kind == "images" else 1
    matches = sorted(
        p
        for p in directory.iterdir()
        if any(f"{s}-{kind}-idx{ndim}-ubyte" in p.name for s in stems) and p.name.endswith(("ubyte", "ubyte.gz"))
    )
    if not matches:
        raise FileNotFoundError(
            f"{directory}: no {split} {kind} file (*{stems[0]}-{kind}-idx{ndim}-ubyte[.gz]) in this IDX dataset directory"
        )
    if len(matches) > 1 and not all(m.name.replace(".gz", "") == matches[0].name.replace(".gz", "") for m in matches):
        raise ValueError(f"{directory}: several {split} {kind} files match: {[m.name for m in matches]}")
    return matches[0]


def is_idx_directory(directory: str | os.PathLike[str]) -> bool:
    d = Path(directory)
    return d.is_dir() and any(p.name.endswith(("-ubyte", "-ubyte.gz")) for p in d.iterdir())


def load_idx_directory(
    directory: str | os.PathLike[str], normalize: bool = True, flatten: bool = False, one_hot_label: bool = False
) -> tuple[Split, Split]:
    """Load an IDX dataset directory as ``((x_train, t_train), (x_test, t_test))``, images
    (N, 1, H, W) uint8 or normalised float32, labels uint8 (or one-hot), as :func:`load_mnist`."""
    raw = [_read_split(Path(directory), s) for s in ("train", "test")]
    num_classes = max(max(int(t.max()) + 1 if t.size else 0 for _, t, _ in raw), 10)
    train, test = (_finish_split(*r, num_classes, normalize, flatten, one_hot_label) for r in raw)
    return train, test


def load_idx_split(
    directory: str | os.PathLike[str],
    split: str,
    normalize: bool = True,
    flatten: bool = False,
    one_hot_label: bool = False,
) -> Split:
    """One split (``'train'`` or ``'test'``) of an IDX dataset directory; only its files are read.
    Labels must lie in [0, max(10, 1 + the largest label))."""
    x, t, path = _read_split(Path(directory), split)
    num_classes = max(int(t.max()) + 1 if t.size else 0, 10)
    return _finish_split(x, t, path, num_classes, normalize, flatten, one_hot_label)


def _read_split(directory: Path, split: str) -> tuple[numpy.ndarray, numpy.ndarray, Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such IDX dataset directory")
    x, t = (read_idx(_find(directory, split, k)) for k in ("images", "labels"))
    path = _find(directory, split, "labels")
    if x.ndim != 3 or t.ndim != 1 or x.shape[0] != t.shape[0]:
        raise ValueError(
            f"{path}: {t.shape[0] if t.ndim else '?'} labels for images of shape {x.shape}; expected one label per image"
        )
    return x, t, path


def _finish_split(
    x: numpy.ndarray, t: numpy.ndarray, path: Path, num_classes: int, normalize: bool, flatten: bool, one_hot: bool
) -> Split:
    check_labels(path, t, num_classes)
    return finish(x.astype(numpy.uint8)[:, None], t.astype(numpy.uint8), normalize, flatten, one_hot, num_classes)
