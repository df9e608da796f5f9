"""``from simple_convnet import SimpleConvNet`` (book ch. 7), on cnn_xp."""

from __future__ import annotations

from typing import Any

from ..models import SimpleConvNet as _SimpleConvNet
from .network import BookAPI, global_seed


class SimpleConvNet(BookAPI, _SimpleConvNet):
    """The book's SimpleConvNet: its constructor, float64 weights as the book's NumPy code has
    them, on :func:`cnn_xp.book.get_device`; ``predict`` gives host arrays, ``loss`` a number."""

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param: dict[str, int] | None = None,
        hidden_size: int = 100,
        output_size: int = 10,
        weight_init_std: Any = 0.01,
    ) -> None:
        _SimpleConvNet.__init__(
            self,
            input_dim,
            conv_param,
            hidden_size,
            output_size,
            weight_init_std,
            dtype="float64",
            device="cpu",
            seed=global_seed(),
        )
        self._place()
