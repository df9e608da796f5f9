"""The book's module tree on cnn_xp: "Deep Learning from Scratch" (ch. 5-8) code runs as is.

Porting is mechanical — prefix each of the book's imports with ``cnn_xp.book.``::

    from cnn_xp.book.common.layers import Convolution, Pooling
    from cnn_xp.book.common.trainer import Trainer
    from cnn_xp.book.dataset.mnist import load_mnist
    from cnn_xp.book.simple_convnet import SimpleConvNet

— or not even that: ``python -m cnn_xp.book [--device gpu] SCRIPT.py [ARGS...]`` runs an
unmodified book script with ``common``, ``dataset``, ``simple_convnet`` and ``deep_convnet``
resolved to these modules (see :mod:`cnn_xp.book.runner`), on the device asked for.

What differs from the book's current code, on purpose, and how to get the book's behaviour,
is listed in the README ("Where cnn_xp differs from the book").
"""

from .config import get_device, set_device

# the book's module names -> the modules that stand for them
BOOK_MODULES = {
    "common": "cnn_xp.book.common",
    "common.layers": "cnn_xp.book.common.layers",
    "common.util": "cnn_xp.book.common.util",
    "common.functions": "cnn_xp.book.common.functions",
    "common.gradient": "cnn_xp.book.common.gradient",
    "common.optimizer": "cnn_xp.book.common.optimizer",
    "common.trainer": "cnn_xp.book.common.trainer",
    "dataset": "cnn_xp.book.dataset",
    "dataset.mnist": "cnn_xp.book.dataset.mnist",
    "simple_convnet": "cnn_xp.book.simple_convnet",
    "deep_convnet": "cnn_xp.book.deep_convnet",
}

__all__ = ["BOOK_MODULES", "get_device", "set_device"]
