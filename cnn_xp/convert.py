"""``python -m cnn_xp.convert``: the same as ``cnn_xp convert`` (the program is :mod:`cnn_xp.cli.convert`)."""

import sys

from .cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
