"""Datasets in the IDX format of MNIST, Fashion-MNIST, KMNIST and EMNIST.

A directory holds four files (optionally gzipped): ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``; names
with a prefix (``emnist-digits-train-images-idx3-ubyte.gz``) or ``test`` for ``t10k`` also match.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy

from .transforms import check_labels, finish

Split = tuple[numpy.ndarray, numpy.ndarray]
# IDX type byte -> big-endian NumPy dtype
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike[str]) -> numpy.ndarray:
    """Read one IDX file (``.gz`` or plain). Raises ValueError naming the file if it is corrupt or truncated."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"{path}: cannot read IDX file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {data[:4].hex() or 'empty'})")
    dtype, ndim = numpy.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes)")
    shape = tuple(int(v) for v in numpy.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(numpy.prod(shape)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(data)} bytes (truncated or corrupt)"
        )
    return numpy.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


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
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory}: no such IDX dataset directory")
    splits = []
    arrays = {(s, k): read_idx(_find(directory, s, k)) for s in ("train", "test") for k in ("images", "labels")}
    num_classes = max(int(arrays[(s, "labels")].max()) + 1 for s in ("train", "test"))
    for split in ("train", "test"):
        x, t = arrays[(split, "images")], arrays[(split, "labels")]
        path = _find(directory, split, "labels")
        if x.ndim != 3 or t.ndim != 1 or x.shape[0] != t.shape[0]:
            raise ValueError(
                f"{path}: {t.shape[0] if t.ndim else '?'} labels for images of shape {x.shape}; expected one label per image"
            )
        check_labels(path, t, max(num_classes, 10))
        splits.append(
            finish(
                x.astype(numpy.uint8)[:, None],
                t.astype(numpy.uint8),
                normalize,
                flatten,
                one_hot_label,
                max(num_classes, 10),
            )
        )
    return splits[0], splits[1]
