"""``python -m cnn_xp COMMAND ...``: the same as the ``cnn_xp`` console script."""

import sys

from .cli import main

sys.exit(main())
