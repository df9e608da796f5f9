"""Argument handling shared by the examples: --device with a clean fallback message."""

from __future__ import annotations

import argparse
import sys

import cnn_xp


def device_from_args(
    description: str, extra: list[tuple[str, dict]] | None = None
) -> tuple[cnn_xp.Device, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu (default), gpu, gpu:N or auto")
    for flag, kwargs in extra or []:
        parser.add_argument(flag, **kwargs)
    args = parser.parse_args()
    try:
        return cnn_xp.parse_device(args.device), args
    except (ValueError, cnn_xp.GPUUnavailableError) as exc:
        print(f"{sys.argv[0]}: {exc}", file=sys.stderr)
        sys.exit(2)
