"""``python -m cnn_xp.book [--device gpu] SCRIPT.py [ARGS...]``: run a book script unchanged."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import OneLineParser, UsageError, device_arg, run_command

PROG = "python -m cnn_xp.book"
BOOK_REPOSITORY = "https://github.com/oreilly-japan/deep-learning-from-scratch"
BOOK_EPILOG = f"""\
The scripts are the book's own; get them with
  git clone {BOOK_REPOSITORY}
  cd deep-learning-from-scratch/ch07 && python -m cnn_xp.book train_convnet.py
The training scripts run their full length, in float64 as the book has them: on 2 CPU cores
ch07/train_convnet.py (20 epochs of SimpleConvNet) takes about 5 minutes and
ch08/train_deepnet.py (20 epochs of DeepConvNet) about 20 minutes; --device gpu shortens both."""


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog,
        description='Run a script of "Deep Learning from Scratch" (ch. 5-8) unmodified, with its imports of common.*, '
        "dataset.mnist, simple_convnet and deep_convnet resolved to cnn_xp.book, its networks on --device.",
        epilog=BOOK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="cpu", help="'cpu' (default), 'gpu', 'gpu:N' or 'auto'")
    p.add_argument("script", type=Path, metavar="SCRIPT.py")
    p.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS", help="the script's own arguments")
    args = p.parse_args(argv)
    if not args.script.is_file():
        raise UsageError(
            f"SCRIPT.py: no such file: {args.script} (the scripts are the book's own: git clone {BOOK_REPOSITORY} "
            "and run from its chNN folder)"
        )
    device = device_arg(args.device)
    from ..book.runner import run_script

    run_script(args.script, args.args, device)
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
