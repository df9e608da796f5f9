"""``python -m cnn_xp.train``: the same as ``cnn_xp train`` (the program is :mod:`cnn_xp.cli.train`)."""

import sys

from ..cli.train import main

sys.exit(main())
