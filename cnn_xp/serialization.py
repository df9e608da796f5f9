"""Reading and writing arrays as safetensors files — atomically, and never with pickle.

A file is written to a temporary file in the same directory, flushed, fsync'ed and moved
over the target with ``os.replace``, so a crash leaves either the old file or the new one,
never a torn one.  Reading checks the file is safetensors before touching it; a pickle (or
anything else) is refused with a clear error and nothing in it is executed.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import numpy
import safetensors
import safetensors.numpy

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save / .npz archives (which may hold pickles)
_PICKLE_STARTS = (b"(", b"}", b"]", b"c", b"d", b"l", b"I", b"N", b"S", b"V", b"F", b"L", b"U", b"G", b"T", b"t")


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
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=temporary_prefix(path), suffix=".tmp")
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


TEMPORARY_MARK = ".cnn_xp-"  # in the name of every temporary file cnn_xp writes: .<target>.cnn_xp-<random>.tmp


def temporary_prefix(path: Path) -> str:
    """The start of the name of a temporary file written for ``path``: the target's name (its first
    64 characters: a long name must not make the temporary's too long) and cnn_xp's mark."""
    return f".{path.name[:64]}{TEMPORARY_MARK}"


def own_temporaries(folder: Path, targets: tuple[str, ...] | None = None) -> list[Path]:
    """The temporary files of :func:`write_atomically` left in ``folder`` (a writer killed before
    its rename): regular files named ``.<target>.cnn_xp-<random>.tmp``, owned by this user, with
    ``target`` one of ``targets`` when given.  Nothing else -- a user's ``.notes.tmp`` -- matches."""
    found = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp") and TEMPORARY_MARK in name):
            continue
        target, _, rest = name[1:].rpartition(TEMPORARY_MARK)
        if not target or not rest[:-4].replace("_", "").isalnum() or (targets is not None and target not in targets):
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and st.st_uid == os.getuid():
            found.append(entry)
    return found


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


PARAMS_FORMAT = "cnn_xp.params"  # Network.save_params files
CHECKPOINT_FORMAT = "cnn_xp.checkpoint"  # training checkpoints
FORMAT_VERSION = 2  # 2: the model is stored as a spec (its layers); 1: a book network's name and kwargs
FLOAT_TENSOR_DTYPES = {"F32": "float32", "F64": "float64"}  # what cnn_xp stores its arrays as

Header = dict[str, tuple[str, tuple[int, ...]]]


def _check_safetensors(path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if len(head) < 9 or head[8:9] != b"{":  # safetensors: u64 header length, then a JSON object
        # protocol 2+ starts with PROTO (0x80); protocols 0 and 1 start with an opcode and end with STOP
        is_pickle = head[:1] == b"\x80" or (len(head) > 0 and head[:1] in _PICKLE_STARTS and _tail(path) == b".")
        if is_pickle or head.startswith(_ZIP_MAGIC):
            kind = "a pickle" if is_pickle else "a zip archive (torch.save/npz)"
            raise ValueError(
                f"{path}: is {kind}, not safetensors; cnn_xp never loads pickles (nothing was executed)"
                + ("; convert the book's weight pickles with `python -m cnn_xp.convert`" if is_pickle else "")
            )
        raise ValueError(f"{path}: not a safetensors file (it does not start with a safetensors header)")


def _tail(path: Path) -> bytes:
    """The last byte of a file (a pickle ends with STOP, ``.``)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() == 0:
            return b""
        f.seek(-1, os.SEEK_END)
        return f.read(1)


def read_header(path: str | os.PathLike[str]) -> tuple[Header, dict[str, str]]:
    """``{name: (safetensors dtype, shape)}`` and the metadata of a safetensors file, reading
    only its header (a file's declared tensors cost nothing until they are loaded)."""
    path = Path(path)
    _check_safetensors(path)
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            header: Header = {}
            for key in f.keys():  # noqa: SIM118 - safe_open is not a dict
                piece = f.get_slice(key)
                header[key] = (str(piece.get_dtype()), tuple(int(v) for v in piece.get_shape()))
    except MemoryError:
        raise ValueError(f"{path}: cannot be mapped into the memory this process may use") from None
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}") from None
    return header, metadata


def load_arrays(
    path: str | os.PathLike[str], keys: list[str] | None = None
) -> tuple[dict[str, numpy.ndarray], dict[str, str]]:
    """Read a safetensors file into host arrays (only ``keys``, when given) and its metadata.

    Raises FileNotFoundError if it is missing and ValueError (naming the file) if it cannot be
    read or is not a valid safetensors file — a pickle, a truncated file, or anything else.
    """
    path = Path(path)
    _check_safetensors(path)
    try:
        with safetensors.safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            wanted = list(f.keys()) if keys is None else keys
            arrays = {key: f.get_tensor(key) for key in wanted}
    except MemoryError:
        raise ValueError(f"{path}: its tensors do not fit in the memory this process may use") from None
    except (safetensors.SafetensorError, OSError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid safetensors file (truncated or corrupt?): {exc}") from None
    return arrays, metadata
