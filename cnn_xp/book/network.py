"""What the book's two networks share in :mod:`cnn_xp.book`: the book's method signatures and
return types, host arrays in and out, and the book's file names for weights."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy

from ..backend import to_numpy
from ..models import Network
from ..serialization import read_header
from .config import get_device, onto
from .weights import book_network, read_book_pickle

Array = Any


def global_seed() -> int:
    """A seed drawn from NumPy's global generator, so that a book script's ``np.random.seed(...)``
    fixes its networks' initial weights and dropout masks, as it does in the book."""
    return int(numpy.random.randint(2**31))


class BookAPI(Network):
    """Mixed into cnn_xp's SimpleConvNet/DeepConvNet: built on :func:`cnn_xp.book.get_device`,
    taking the book scripts' host arrays and giving back what the book's methods give."""

    def _place(self) -> None:
        self.to_device(get_device())

    def _in(self, a: Array) -> Array:
        return onto(a, self.device)

    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Scores (N, K) as a host (NumPy) array, as the book's scripts use them."""
        return to_numpy(super().predict(self._in(x), train_flg))

    def loss(self, x: Array, t: Array, train_flg: bool | None = None) -> float:  # type: ignore[override]
        """The book's loss: a number (this reads the device once)."""
        return float(super().loss(self._in(x), self._in(t), train_flg))

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients keyed like ``params``, on the network's device (where the optimizer updates)."""
        return super().gradient(self._in(x), self._in(t))

    def numerical_gradient(self, x: Array, t: Array, h: float = 1e-4) -> dict[str, Array]:
        return super().numerical_gradient(self._in(x), self._in(t), h)

    def accuracy(self, x: Array, t: Array, batch_size: int = 100) -> float:
        return super().accuracy(self._in(x), self._in(t), batch_size)

    def save_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """Save under the book's name; the bytes are safetensors (never pickle) whatever the name."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the book's own names end in .pkl
            super().save_params(file_name)

    def load_params(self, file_name: str | os.PathLike[str] = "params.pkl") -> None:
        """Load a file written by :meth:`save_params` (safetensors), or one of the book's own
        weight pickles — read by the restricted unpickler of :mod:`cnn_xp.book.weights` (no
        code in it runs) and converted as ``python -m cnn_xp.convert`` converts them."""
        try:
            read_header(file_name)
        except ValueError:
            converted = book_network(read_book_pickle(file_name))
            self.load_state_dict(converted.state_dict())
            return
        super().load_params(file_name)
