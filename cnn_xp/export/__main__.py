"""``python -m cnn_xp.export``: the same as ``cnn_xp export`` (the program is :mod:`cnn_xp.cli.export`)."""

import sys

from ..cli.export import main

sys.exit(main())
