"""The command-line programs, one module each, sharing :mod:`cnn_xp.cli.common`.

``cnn_xp COMMAND ...`` (the console script), ``python -m cnn_xp COMMAND ...`` and
``python -m cnn_xp.COMMAND ...`` run the same ``main``.  A new command is a module here with
``main(argv, prog)`` and one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
import sys

from .._version import __version__

# command -> (module under cnn_xp.cli, one line for the overview)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "train a network (SimpleConvNet, DeepConvNet) on MNIST and friends"),
    "evaluate": ("evaluate", "test accuracy and confusion matrix of a checkpoint"),
    "predict": ("predict", "classify image files with a checkpoint"),
    "export": ("export", "write a checkpoint as an ONNX model"),
    "bench": ("bench", "training/inference speed and memory, beside PyTorch"),
    "convert": ("convert", "the book's weight pickles to a cnn_xp parameters file, safely"),
    "book": ("book", "run a script of the book unmodified, on cnn_xp"),
    "doctor": ("doctor", "check this install on the GPU and the CPU: versions, agreement, speed"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(
        [
            "usage: cnn_xp COMMAND [ARGS...]   (cnn_xp COMMAND --help for its arguments)",
            "",
            "commands:",
            *lines,
            "",
            "  --version   print cnn_xp's version",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(f"cnn_xp {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"cnn_xp: error: unknown command {name!r}; expected one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{__name__}.{COMMANDS[name][0]}")
    return int(module.main(rest, prog=f"cnn_xp {name}"))
