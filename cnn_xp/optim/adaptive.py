"""Optimizers with per-element learning rates (the book's AdaGrad, RMSprop, Adam)."""

from __future__ import annotations

import math
from collections.abc import MutableMapping

from ..backend import get_array_module
from ..checks import check_number
from ..functions.adam import adam_update
from .base import Array, Optimizer


class AdaGrad(Optimizer):
    """``h += g*g; p -= lr * g / (sqrt(h) + eps)``."""

    state_names = ("h",)
    hyper_names = ("lr", "eps", "weight_decay")

    def __init__(self, lr: float = 0.01, eps: float = 1e-7, weight_decay: float = 0.0) -> None:
        super().__init__(lr, weight_decay)
        self.eps = check_number("eps", eps, 0.0)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        xp = get_array_module(grad)
        h = self._slot("h", key, params[key])
        h += grad * grad
        params[key] -= self.lr * grad / (xp.sqrt(h) + self.eps)


class RMSprop(Optimizer):
    """``h = decay_rate*h + (1 - decay_rate)*g*g; p -= lr * g / (sqrt(h) + eps)``."""

    state_names = ("h",)
    hyper_names = ("lr", "decay_rate", "eps", "weight_decay")

    def __init__(
        self, lr: float = 0.01, decay_rate: float = 0.99, eps: float = 1e-7, weight_decay: float = 0.0
    ) -> None:
        super().__init__(lr, weight_decay)
        self.decay_rate = check_number("decay_rate", decay_rate, 0.0, 1.0, low_inclusive=True)
        self.eps = check_number("eps", eps, 0.0)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        xp = get_array_module(grad)
        h = self._slot("h", key, params[key])
        h *= self.decay_rate
        h += (1 - self.decay_rate) * grad * grad
        params[key] -= self.lr * grad / (xp.sqrt(h) + self.eps)


class Adam(Optimizer):
    """Adam in the book's form: with ``t`` the step count,
    ``m += (1-beta1)(g - m); v += (1-beta2)(g*g - v);
    p -= lr * sqrt(1-beta2^t)/(1-beta1^t) * m / (sqrt(v) + eps)``."""

    state_names = ("m", "v")
    hyper_names = ("lr", "beta1", "beta2", "eps", "weight_decay")

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-7, weight_decay: float = 0.0
    ) -> None:
        super().__init__(lr, weight_decay)
        self.beta1 = check_number("beta1", beta1, 0.0, 1.0, low_inclusive=True)
        self.beta2 = check_number("beta2", beta2, 0.0, 1.0, low_inclusive=True)
        if self.beta1 == 1.0 or self.beta2 == 1.0:
            raise ValueError(f"beta1, beta2: expected numbers in [0, 1), got {beta1!r}, {beta2!r}")
        self.eps = check_number("eps", eps, 0.0)
        self._lr_t = self.lr

    def _begin_step(self) -> None:
        t = self.iter
        self._lr_t = self.lr * math.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)

    def _update_one(self, key: str, params: MutableMapping[str, Array], grad: Array) -> None:
        m = self._slot("m", key, params[key])
        v = self._slot("v", key, params[key])
        adam_update(params[key], grad, m, v, 1 - self.beta1, 1 - self.beta2, self._lr_t, self.eps)
