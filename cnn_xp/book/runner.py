"""Run an unmodified book script with its imports resolved to :mod:`cnn_xp.book`.

The book's scripts import ``common.*``, ``dataset.mnist``, ``simple_convnet`` and
``deep_convnet`` from the book's folders (adding ``os.pardir`` to ``sys.path``). Here those
names are entered in ``sys.modules`` before the script starts, pointing at cnn_xp's modules,
so the script's own files of those names are never read; everything else (the script's
folder on ``sys.path``, its arguments, ``__name__ == "__main__"``) is as ``python SCRIPT.py``
sets it. A module of the book's ``common`` that cnn_xp does not provide (``multi_layer_net``,
say) is found in the book's own ``common`` folder when there is one beside the script's folder.
"""

from __future__ import annotations

import importlib
import os
import runpy
import sys
from pathlib import Path
from typing import Any

from ..backend import on_device
from . import BOOK_MODULES
from .config import set_device


def install_book_modules(script_dir: Path | None = None) -> None:
    """Make ``import common.layers`` (and the rest of :data:`BOOK_MODULES`) give cnn_xp's modules."""
    for name, target in BOOK_MODULES.items():
        sys.modules[name] = importlib.import_module(target)
    if script_dir is not None:
        book_common = script_dir.parent / "common"
        common = sys.modules["common"]
        if book_common.is_dir() and str(book_common) not in common.__path__:
            common.__path__.append(str(book_common))  # after cnn_xp's own modules


def run_script(script: str | os.PathLike[str], args: list[str], device: Any = "cpu") -> None:
    """Run ``script`` as ``python script args...`` would, with the book's modules from cnn_xp
    and its networks on ``device``."""
    path = Path(script).resolve()
    chosen = set_device(device)
    install_book_modules(path.parent)
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(path.parent))
    with on_device(chosen):  # the script's own array arithmetic runs on that GPU too (gpu:1, say)
        runpy.run_path(str(path), run_name="__main__")
