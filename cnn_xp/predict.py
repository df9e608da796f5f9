"""``python -m cnn_xp.predict``: the same as ``cnn_xp predict`` (the program is :mod:`cnn_xp.cli.predict`)."""

import sys

from .cli.predict import main

if __name__ == "__main__":
    sys.exit(main())
