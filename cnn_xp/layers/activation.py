"""Element-wise activations: ReLU and sigmoid."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..functions.activations import relu, relu_grad
from ..functions.dtypes import as_float
from .base import Array, Layer, check_dout
from .grad_mode import grad_enabled


class Relu(Layer):
    """``max(x, 0)``; any shape. Integer inputs stay integer (the gradient is float)."""

    shard_safe = True

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)  # element-wise

    def __init__(self) -> None:
        super().__init__()
        self.mask: Array | None = None  # True where the input was <= 0, as in the book

    def forward(self, x: Array) -> Array:
        keep = grad_enabled()  # under no_grad() keep nothing (and leave an earlier forward's mask)
        y, mask = relu(x, keep_mask=keep)
        if keep:
            self.mask = mask
        return y

    def backward(self, dout: Array) -> Array:
        if self.mask is None:
            raise self._not_run()
        check_dout(dout, self.mask.shape)
        return relu_grad(as_float(dout), self.mask)


class Sigmoid(Layer):
    """``1 / (1 + exp(-x))``, computed without overflow for large |x|; any shape."""

    shard_safe = True

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)  # element-wise

    def __init__(self) -> None:
        super().__init__()
        self.out: Array | None = None

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        x = as_float(x)
        e = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
        out = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        if grad_enabled():
            self.out = out
        return out

    def backward(self, dout: Array) -> Array:
        if self.out is None:
            raise self._not_run()
        check_dout(dout, self.out.shape)
        return as_float(dout, like=self.out) * (1.0 - self.out) * self.out
