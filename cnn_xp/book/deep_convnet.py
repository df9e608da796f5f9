"""``from deep_convnet import DeepConvNet`` (book ch. 8), on cnn_xp."""

from __future__ import annotations

from ..models import DeepConvNet as _DeepConvNet
from .network import BookAPI, global_seed


class DeepConvNet(BookAPI, _DeepConvNet):
    """The book's DeepConvNet: its constructor, float64 weights as the book's NumPy code has
    them, on :func:`cnn_xp.book.get_device`; ``predict`` gives host arrays, ``loss`` a number;
    ``layers[15]`` is the first Affine layer as in the book's list."""

    def __init__(
        self,
        input_dim: tuple[int, int, int] = (1, 28, 28),
        conv_param_1: dict[str, int] | None = None,
        conv_param_2: dict[str, int] | None = None,
        conv_param_3: dict[str, int] | None = None,
        conv_param_4: dict[str, int] | None = None,
        conv_param_5: dict[str, int] | None = None,
        conv_param_6: dict[str, int] | None = None,
        hidden_size: int = 50,
        output_size: int = 10,
    ) -> None:
        _DeepConvNet.__init__(
            self,
            input_dim,
            conv_param_1,
            conv_param_2,
            conv_param_3,
            conv_param_4,
            conv_param_5,
            conv_param_6,
            hidden_size,
            output_size,
            dtype="float64",
            device="cpu",
            seed=global_seed(),
        )
        self._place()
