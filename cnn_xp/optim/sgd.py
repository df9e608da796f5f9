"""Gradient descent with and without momentum (the book's SGD, Momentum, Nesterov)."""

from __future__ import annotations

from collections.abc import MutableMapping

from ..checks import check_number
from .base import Array, Optimizer


class SGD(Optimizer):
    """``p -= lr * g``."""

    def __init__(self, lr: float = 0.01, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        params[key] -= self.lr * grad


class Momentum(Optimizer):
    """``v = momentum * v - lr * g; p += v``."""

    state_names = ("v",)
    hyper_names = ("lr", "momentum", "weight_decay")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = check_number("momentum", momentum, 0.0, 1.0, low_inclusive=True)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        v = self._slot("v", key, params[key])
        v *= self.momentum
        v -= self.lr * grad
        params[key] += v


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient in the form of Bengio et al. (arXiv:1212.0901), which
    the book cites: ``p += m*m*v - (1 + m)*lr*g; v = m*v - lr*g`` — what the book's current
    code computes too.
    """

    state_names = ("v",)
    hyper_names = ("lr", "momentum", "weight_decay")

    def __init__(self, lr: float = 0.01, momentum: float = 0.9, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.momentum = check_number("momentum", momentum, 0.0, 1.0, low_inclusive=True)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        m = self.momentum
        v = self._slot("v", key, params[key])
        params[key] += (m * m) * v
        params[key] -= ((1 + m) * self.lr) * grad
        v *= m
        v -= self.lr * grad
