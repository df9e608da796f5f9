"""``python -m cnn_xp.book``: the same as ``cnn_xp book`` (the program is :mod:`cnn_xp.cli.book`)."""

import sys

from ..cli.book import main

if __name__ == "__main__":
    sys.exit(main())
