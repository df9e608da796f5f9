"""``from common.optimizer import *``: cnn_xp's optimizers (the book's update rules, including
its corrected Nesterov), each with ``update(params, grads)``.

The book also optimises plain numbers (``ch06/optimizer_compare_naive.py`` updates
``{'x': -7.0, 'y': 2.0}``): these classes take them too, and a star import brings ``np`` as
the book's module does."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

import numpy as np

from ... import optim


class _Numbers:
    """Lets an optimizer update parameters that are Python numbers, as the book's do."""

    def update(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        numbers = [k for k, v in params.items() if not hasattr(v, "shape")]
        if not numbers:
            super().update(params, grads)  # type: ignore[misc]
            return
        work = {k: np.asarray(v, dtype=np.float64) if k in numbers else v for k, v in params.items()}
        g = {k: np.asarray(v, dtype=np.float64) if k in numbers else v for k, v in grads.items()}
        super().update(work, g)  # type: ignore[misc]
        for k in numbers:
            params[k] = float(work[k])


class SGD(_Numbers, optim.SGD):
    pass


class Momentum(_Numbers, optim.Momentum):
    pass


class Nesterov(_Numbers, optim.Nesterov):
    pass


class AdaGrad(_Numbers, optim.AdaGrad):
    pass


class RMSprop(_Numbers, optim.RMSprop):
    pass


class Adam(_Numbers, optim.Adam):
    pass


__all__ = ["SGD", "AdaGrad", "Adam", "Momentum", "Nesterov", "RMSprop", "np"]
