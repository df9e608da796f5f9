"""Weight initialisation: a fixed standard deviation, He, or Xavier (as the book defines them).

Weights are drawn on the host from a seeded NumPy generator, cast to the requested dtype and
moved to the device once, so the same seed gives the same network on every device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy  # host-side initial values only

InitSpec = float | str

_HE = ("he", "relu")
_XAVIER = ("xavier", "sigmoid")


def init_std(spec: InitSpec, fan_in: int) -> float:
    """Standard deviation for ``spec``: a number is used as is; ``'he'``/``'relu'`` gives
    ``sqrt(2 / fan_in)`` and ``'xavier'``/``'sigmoid'`` gives ``sqrt(1 / fan_in)``."""
    if isinstance(spec, str):
        key = spec.lower()
        if key in _HE:
            return math.sqrt(2.0 / fan_in)
        if key in _XAVIER:
            return math.sqrt(1.0 / fan_in)
        raise ValueError(
            f"weight_init_std: unknown scheme {spec!r}; expected a positive number, 'he' (or 'relu') or 'xavier' (or 'sigmoid')"
        )
    if isinstance(spec, bool) or not isinstance(spec, (int, float)) or not spec > 0:
        raise ValueError(f"weight_init_std: expected a positive number, 'he' or 'xavier', got {spec!r}")
    return float(spec)


def normal(shape: tuple[int, ...], std: float, rng: numpy.random.Generator, dtype: numpy.dtype) -> numpy.ndarray:
    """Host array of ``shape`` drawn from N(0, std^2), cast to ``dtype``."""
    return (std * rng.standard_normal(shape)).astype(dtype)


def he_normal(
    shape: tuple[int, ...], fan_in: int, rng: numpy.random.Generator, dtype: Any = numpy.float32
) -> numpy.ndarray:
    """He (Kaiming) normal initial weights: N(0, 2 / fan_in), for ReLU networks."""
    return normal(shape, init_std("he", fan_in), rng, dtype)


def xavier_normal(
    shape: tuple[int, ...], fan_in: int, rng: numpy.random.Generator, dtype: Any = numpy.float32
) -> numpy.ndarray:
    """Xavier normal initial weights as in the book: N(0, 1 / fan_in), for sigmoid/tanh networks."""
    return normal(shape, init_std("xavier", fan_in), rng, dtype)
