"""What the command-line tools share: one-line errors (exit status 2) and device/checkpoint arguments."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from ..backend import Device, GPUUnavailableError, parse_device
from .checkpoint import Checkpoint, load_checkpoint


class UsageError(Exception):
    """A bad argument: reported as one line on stderr, exit status 2, no traceback."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def device_arg(spec: str) -> Device:
    try:
        return parse_device(spec)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--device: {exc}") from None
    except GPUUnavailableError as exc:
        raise UsageError(
            f"--device {spec}: {exc}".replace("Use device 'cpu' or 'auto'.", "Use --device cpu or --device auto.")
        ) from None


def checkpoint_arg(path: Path) -> Checkpoint:
    if not path.is_file():
        raise UsageError(f"CHECKPOINT: no such file: {path}")
    try:
        return load_checkpoint(path)
    except ValueError as exc:
        raise UsageError(f"CHECKPOINT: {exc}") from None


def run_command(prog: str, body: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run ``body(argv)``, turning a UsageError into one line and exit status 2."""
    try:
        return body(argv)
    except UsageError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
