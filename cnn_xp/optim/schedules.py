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


def exponential(lr: float, decay: float, steps_per_epoch: int) -> Schedule:
    """``lr * decay ** (step / steps_per_epoch)``: smoothly multiplied by ``decay`` every epoch.

    It depends on the step alone (no horizon), so a run stopped after E1 epochs and resumed
    to E follows exactly the schedule of a run of E epochs straight.
    """
    if not 0 < decay <= 1:
        raise ValueError(f"decay: expected a number in (0, 1], got {decay!r}")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch: expected an int >= 1, got {steps_per_epoch}")
    return lambda step: lr * decay ** (step / steps_per_epoch)


SCHEDULES = ("exp", "cosine", "constant")  # the names a run (and its checkpoint) may give
