"""One run per output folder: an exclusive lock on ``<out>/.cnn_xp.lock`` while a run writes there.

The lock is an OS file lock (``fcntl.flock``), so it dies with its process: a crashed run never
leaves a folder locked, and no stale-lock guessing is needed. The file names the holder (pid,
host, start time, command) for the message a second run prints; it is opened without following
symbolic links, so a link planted in its place is refused, never written through. The folder's
stale temporary files -- cnn_xp's own only, by their naming (see
:func:`cnn_xp.serialization.own_temporaries`) -- are removed only while holding the lock, when no
other process of cnn_xp can be writing there. A folder that the lock created and that is still empty at release
(the run failed before writing anything) is removed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import sys
import time
from pathlib import Path
from types import TracebackType

from ..serialization import own_temporaries

LOCK_NAME = ".cnn_xp.lock"
_held: dict[str, int] = {}  # real path of a folder -> nesting depth, for this process


class RunFolderInUseError(RuntimeError):
    """Another process is running in this output folder."""


class RunLock:
    """``with RunLock(out_dir):`` — create ``out_dir`` if needed and hold its lock; re-entrant
    within one process (the command line holds it around training and plotting, the Trainer
    inside)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self._fd: int | None = None
        self._created = False
        self._key = ""

    def __enter__(self) -> RunLock:
        self._created = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._key = os.path.realpath(self.out_dir)
        if _held.get(self._key):
            _held[self._key] += 1
            return self
        try:
            self._fd = _acquire(self.out_dir / LOCK_NAME)
        except BaseException:
            self._remove_if_empty()
            raise
        _held[self._key] = 1
        for stale in own_temporaries(self.out_dir):  # left by a writer of cnn_xp's that was killed mid-write
            stale.unlink(missing_ok=True)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _held[self._key] -= 1
        if _held[self._key] or self._fd is None:
            return
        del _held[self._key]
        with contextlib.suppress(OSError):  # while still holding it (see _acquire), and only our own file
            if os.path.samestat(os.fstat(self._fd), os.lstat(self.out_dir / LOCK_NAME)):
                os.unlink(self.out_dir / LOCK_NAME)
        os.close(self._fd)  # releases the lock
        self._fd = None
        self._remove_if_empty()

    def _remove_if_empty(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):  # not empty, or already gone: keep it
                self.out_dir.rmdir()


def _acquire(path: Path) -> int:
    import fcntl  # POSIX; the lock is advisory, between cnn_xp runs

    while True:
        try:  # never through a symbolic link planted there: its target is not cnn_xp's to write
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            if os.path.islink(path) or exc.errno == errno.ELOOP:
                raise RunFolderInUseError(
                    f"{path} is a symbolic link; cnn_xp writes its lock only as a file of its own: remove the link"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise RunFolderInUseError(f"{path} is not a regular file; cnn_xp writes its lock only as a file of its own")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe_holder(path)
            os.close(fd)
            raise RunFolderInUseError(
                f"{path.parent} is in use by another run ({holder}); wait for it to finish or choose another "
                "output folder"
            ) from None
        # the holder before us may have removed the file between our open and our lock: then
        # this lock is on a file nobody else will see; start again on the current file
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(record).encode())
    return fd


def _describe_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not yet said which"
    return f"process {info.get('pid')} on {info.get('host')}, started {info.get('started')}: {info.get('command')}"
