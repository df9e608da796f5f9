"""Argument handling shared by the examples: --device with a clean fallback message, and --out:
the one folder an example writes into (under runs/examples/ unless told otherwise)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cnn_xp


def device_from_args(
    description: str, extra: list[tuple[str, dict]] | None = None, out: str | None = None
) -> tuple[cnn_xp.Device, argparse.Namespace]:
    """Parse --device (and ``extra`` flags); with ``out``, also --out, a folder created here
    (default ``runs/examples/<out>``) that holds every file the example writes."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--device", default="cpu", help="cpu (default), gpu, gpu:N or auto")
    if out is not None:
        default = Path("runs") / "examples" / out
        parser.add_argument(
            "--out", type=Path, default=default, help=f"folder for the files written (default: {default})"
        )
    for flag, kwargs in extra or []:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args()
    if out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    try:
        return cnn_xp.parse_device(args.device), args
    except (ValueError, cnn_xp.GPUUnavailableError) as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        sys.exit(2)
