"""Learning-rate schedules: functions of the global step, so a resumed run continues exactly."""

from __future__ import annotations

import math
from collections.abc import Callable

Schedule = Callable[[int], float]


def constant(lr: float) -> Schedule:
    """The same learning rate at every step."""
    return lambda step: lr


def cosine(lr: float, total_steps: int) -> Schedule:
    """``lr * (1 + cos(pi * step / total_steps)) / 2``: from ``lr`` at step 0 down to 0 at the last step."""
    if total_steps < 1:
        raise ValueError(f"total_steps: expected an int >= 1, got {total_steps}")
    return lambda step: lr * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
