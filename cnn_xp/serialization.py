"""Reading and writing arrays as safetensors files — atomically, and never with pickle.

A file is written to a temporary file in the same directory, flushed, fsync'ed and moved
over the target with ``os.replace``, so a crash leaves either the old file or the new one,
never a torn one.  Reading checks the file is safetensors before touching it; a pickle (or
anything else) is refused with a clear error and nothing in it is executed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy
import safetensors
import safetensors.numpy

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save / .npz archives (which may hold pickles)


def save_arrays(
    path: str | os.PathLike[str], arrays: dict[str, numpy.ndarray], metadata: dict[str, str] | None = None
) -> Path:
    """Write host arrays and string metadata to ``path`` atomically. Returns the path."""
    blob = safetensors.numpy.save({k: numpy.ascontiguousarray(v) for k, v in arrays.items()}, metadata=metadata)
    return write_atomically(path, blob)


def write_atomically(path: str | os.PathLike[str], blob: bytes) -> Path:
    """Write ``blob`` to ``path`` through a temporary file in the same directory, fsync'ed and
    renamed over ``path``: readers see the old file or the new one, never a torn one."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (not supported on every platform/filesystem)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_arrays(path: str | os.PathLike[str]) -> tuple[dict[str, numpy.ndarray], dict[str, str]]:
    """Read a safetensors file into host arrays and its metadata.

    Raises FileNotFoundError if it is missing and ValueError (naming the file) if it is not a
    valid safetensors file — a pickle, a truncated file, or anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":  # safetensors: u64 header length, then a JSON object
        is_pickle = head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")
        if is_pickle or head.startswith(_ZIP_MAGIC):
            kind = "a pickle" if is_pickle else "a zip archive (torch.save/npz)"
            raise ValueError(f"{path}: is {kind}, not safetensors; cnn_xp never loads pickles (nothing was executed)")
        raise ValueError(f"{path}: not a safetensors file (it does not start with a safetensors header)")
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            arrays = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}") from None
    return arrays, metadata
