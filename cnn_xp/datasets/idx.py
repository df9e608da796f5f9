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
from typing import Any

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
            if path.suffix != ".gz" and size != path.stat().st_size - 4 - 4 * ndim:
                held = path.stat().st_size - 4 - 4 * ndim
                raise ValueError(
                    f"{path}: IDX header says shape {shape} ({size} bytes of data) but the file holds {held} bytes "
                    "(truncated or corrupt)"
                )
            data = _read_at_most(f, size + 1)  # in pieces: memory follows what the file holds, not its claim
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) != size:
        got = f"{len(data)} bytes" if len(data) <= size else "more"
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({size} bytes of data) but the file holds {got} (truncated or corrupt)"
        )
    return numpy.frombuffer(data, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _read_at_most(f: Any, limit: int, piece: int = 16 * 2**20) -> bytes:
    """Up to ``limit`` bytes of ``f``, read a piece at a time (a header's claim allocates nothing)."""
    parts, total = [], 0
    while total < limit:
        chunk = f.read(min(piece, limit - total))
        if not chunk:
            break
        parts.append(chunk)
        total += len(chunk)
    return b"".join(parts)


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
    images, labels = (_find(directory, split, k) for k in ("images", "labels"))
    x, t = _images(images, read_idx(images)), _labels(labels, read_idx(labels))
    path = labels
    if x.ndim != 3 or t.ndim != 1 or x.shape[0] != t.shape[0]:
        raise ValueError(
            f"{path}: {t.shape[0] if t.ndim else '?'} labels for images of shape {x.shape}; expected one label per image"
        )
    return x, t, path


def _images(path: Path, x: numpy.ndarray) -> numpy.ndarray:
    """IDX images as what they are: 8-bit pixels (uint8, or integers all in [0, 255], exactly),
    or floating-point values (float32/float64, finite, used as stored: images in [0, 1] stay
    so).  Integers outside [0, 255] are refused: no image type holds them without a guess."""
    if x.dtype == numpy.uint8:
        return x
    if x.dtype.kind in "iu":
        if x.size and (int(x.min()) < 0 or int(x.max()) > 255):
            raise ValueError(
                f"{path}: {x.dtype} pixel values in [{int(x.min())}, {int(x.max())}] do not fit 8-bit images "
                "(0-255); convert the file to uint8 or float pixels"
            )
        return x.astype(numpy.uint8)
    if not numpy.isfinite(x).all():
        raise ValueError(f"{path}: {x.dtype} pixels hold NaN or infinite values")
    return x.astype(numpy.float32) if x.dtype == numpy.float32 else x


def _labels(path: Path, t: numpy.ndarray) -> numpy.ndarray:
    """IDX labels as int64 class numbers; non-integer labels are refused, never rounded."""
    if t.dtype.kind not in "iu":
        raise ValueError(f"{path}: labels must be integer class numbers, got {t.dtype} values; convert the file")
    if t.size and int(t.min()) < 0:
        raise ValueError(f"{path}: labels must be class numbers >= 0, got {int(t.min())}")
    return t.astype(numpy.int64)


def _finish_split(
    x: numpy.ndarray, t: numpy.ndarray, path: Path, num_classes: int, normalize: bool, flatten: bool, one_hot: bool
) -> Split:
    check_labels(path, t, num_classes)
    images = x[:, None]
    return finish(images, t, normalize and images.dtype == numpy.uint8, flatten, one_hot, num_classes)
