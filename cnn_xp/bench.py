"""``python -m cnn_xp.bench``: the same as ``cnn_xp bench`` (the program is :mod:`cnn_xp.cli.bench`)."""

import sys

from .cli.bench import main

if __name__ == "__main__":
    sys.exit(main())
