"""``python -m cnn_xp.evaluate``: the same as ``cnn_xp evaluate`` (the program is :mod:`cnn_xp.cli.evaluate`)."""

import sys

from .cli.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
