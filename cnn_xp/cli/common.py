"""What every command shares: the argument parser, device and checkpoint arguments, and errors
reported as one line (exit status 2 for a bad argument, 130 for Ctrl-C), never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import stat
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

from ..backend import Device, GPUUnavailableError, parse_device
from ..heap import keep_freed_memory
from ..serialization import temporary_prefix
from ..train.checkpoint import Checkpoint, load_checkpoint


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit status 2, no traceback."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` only where there is a default worth reading (not None or False)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default in (None, False, argparse.SUPPRESS) or "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting, and that takes
    flags only as written in full (``--epoch 3`` is an error, not ``--epochs 3``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def flag_error(flag: str, exc: BaseException) -> UsageError:
    """``flag: message`` for an error raised by the library, whose message starts with the name of
    the argument it checked (``dataset: ...``): that name is replaced by the flag, not repeated."""
    message = str(exc)
    name = flag.lstrip("-").replace("-", "_")
    message = re.sub(rf"^(?:{re.escape(name)}|{re.escape(flag.lstrip('-'))}): ", "", message)
    return UsageError(f"{flag}: {message}")


def check_writable(flag: str, path: Path) -> None:
    """Refuse, before any work, an output file that could not be written: its folder missing or a
    file, the path a folder, or the folder not writable (tried with a temporary file)."""
    import tempfile

    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a folder, not a file")
    if not folder.is_dir():
        raise UsageError(f"{flag}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=temporary_prefix(path), suffix=".tmp"):
            pass
    except OSError as exc:
        raise UsageError(f"{flag}: cannot write in {folder}: {exc.strerror or exc}") from None


def check_output_file(flag: str, path: Path, inputs: list[Path] = ()) -> None:  # type: ignore[assignment]
    """Refuse, before any work, an output file that must not be written: one that is an input of
    the command (the same file by another name too), one that exists but is not a regular file
    (a folder, a device such as /dev/stdout, a pipe -- renaming over it would replace it), or
    one whose folder is missing or not writable."""
    try:
        present = path.exists() or path.is_symlink()
    except OSError as exc:  # a name too long for the file system, ...
        shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:77]}..."
        raise UsageError(f"{flag}: {shown}: {exc.strerror or exc}") from None
    if present:
        try:
            target = path.stat()  # follows links: /proc/self/fd/1 -> the terminal or a pipe
        except OSError:
            target = None
        if target is not None and not stat.S_ISREG(target.st_mode):
            if stat.S_ISDIR(target.st_mode):
                raise UsageError(f"{flag}: {path} is a folder, not a file")
            raise UsageError(
                f"{flag}: {path} is not a regular file (a device, a pipe or a socket); give the path of a file to write"
            )
        for given in inputs:
            try:
                same = os.path.samefile(path, given)
            except OSError:
                same = False
            if same:
                raise UsageError(f"{flag}: {path} is the input {given}; writing it would replace the input")
    check_writable(flag, path)


def device_arg(spec: str, flag: str = "--device") -> Device:
    try:
        return parse_device(spec)
    except (ValueError, TypeError) as exc:
        raise flag_error(flag, exc) from None
    except GPUUnavailableError as exc:
        text = str(exc).replace("Use device 'cpu' or 'auto'.", f"Use {flag} cpu or {flag} auto.")
        raise UsageError(f"{flag} {spec}: {text}") from None


def checkpoint_arg(path: Path, name: str = "CHECKPOINT") -> Checkpoint:
    """A checkpoint's model, for commands that only run it (evaluate, predict, export)."""
    if not path.is_file():
        raise UsageError(f"{name}: no such file: {path}")
    try:
        return load_checkpoint(path, for_training=False)
    except ValueError as exc:
        raise UsageError(f"{name}: {exc}") from None


Body = Callable[[list[str] | None, str], int]


class Stopped(BaseException):
    """SIGTERM or SIGHUP arrived outside the work that handles it (the trainer saves and stops)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


_received: list[int] = []  # stop signals that arrived, in case the exception raised for one is swallowed


def _raise_stopped(signum: int, frame: Any) -> None:
    _received.append(signum)
    raise Stopped(signum)  # (where Python swallows it -- a finalizer, a weakref callback -- run_command still sees it)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Stopped` (a process that is PID 1, as in a container,
    would otherwise ignore SIGTERM altogether)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = [n for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n)]
    previous = {n: signal.signal(getattr(signal, n), _raise_stopped) for n in names}
    try:
        yield
    finally:
        for n, handler in previous.items():
            signal.signal(getattr(signal, n), handler)


def run_command(prog: str, body: Body, argv: list[str] | None = None, *, keep_heap: bool = True) -> int:
    """Run ``body(argv, prog)``: a UsageError becomes one line and exit status 2; Ctrl-C, SIGTERM
    or SIGHUP outside the work that handles them (loading data, plotting) one line and 128 + the
    signal's number.  Every program keeps freed heap memory for its next step
    (:func:`cnn_xp.heap.keep_freed_memory`) unless ``keep_heap`` is False: the benchmark, whose
    PyTorch processes must run with the C library's own settings, as PyTorch's users run it."""
    if keep_heap:
        keep_freed_memory()
    _received.clear()
    # images over Pillow's pixel limit are skipped and reported by cnn_xp itself, in one line
    warnings.filterwarnings("ignore", message=r"Image size \(\d+ pixels\) exceeds limit", module="PIL")
    try:
        with stop_signals_raise():
            code = body(argv, prog)
        if _received:  # the Stopped raised for it was swallowed ("Exception ignored in ..."): still a stop
            raise Stopped(_received[0])
        return code
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print(f"{prog}: error: out of memory (the memory this process may use is exhausted)", file=sys.stderr)
        return 1
    except Stopped as stop:
        print(f"{prog}: stopped by {signal.Signals(stop.signum).name}", file=sys.stderr)
        return 128 + stop.signum
    except BrokenPipeError:
        # stdout's reader went away (``cnn_xp bench ... | head``): stop quietly with SIGPIPE's
        # status, as a C program would, and point stdout at /dev/null so that Python's flush at
        # exit does not fail a second time with a traceback
        with contextlib.suppress(OSError, ValueError):  # (a stdout without a descriptor: captured)
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13  # SIGPIPE
