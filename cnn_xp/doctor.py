"""``python -m cnn_xp.doctor``: the same as ``cnn_xp doctor`` (the program is :mod:`cnn_xp.cli.doctor`)."""

import sys

from .cli.doctor import main

if __name__ == "__main__":
    sys.exit(main())
