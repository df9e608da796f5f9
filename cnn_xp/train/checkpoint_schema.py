"""What a checkpoint's metadata may say: every field, its type and its range.

A checkpoint is data from disk: each entry is checked here before anything uses it, and an
unknown, missing or out-of-range entry is refused with its name rather than guessed at (an
unknown schedule does not become a constant one, a negative learning rate is not "fixed").
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..optim import optimizer_class

Check = Callable[[str, Any], Any]
MAX_COUNT = 2**53  # steps, epochs, samples: beyond this a float loses count; no run gets near it


def integer(low: int = 0, high: int = MAX_COUNT) -> Check:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name}: expected an integer in [{low}, {high}], got {value!r}")
        return value

    return check


def number(low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> Check:
    def check(name: str, value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (low < value if low_open else low <= value) or value > high:
            lo = "(" if low_open else "["
            raise ValueError(f"{name}: expected a finite number in {lo}{low}, {high}], got {value!r}")
        return float(value)

    return check


def choice(*values: Any) -> Check:
    def check(name: str, value: Any) -> Any:
        if value not in values:
            raise ValueError(f"{name}: expected one of {list(values)}, got {value!r}")
        return value

    return check


def string(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: expected a string, got {value!r}")
    return value


def optional(check: Check) -> Check:
    return lambda name, value: None if value is None else check(name, value)


def record(fields: dict[str, Check], required: tuple[str, ...] = ()) -> Check:
    """An object with only the keys of ``fields`` (``required`` among them), each checked."""

    def check(name: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
        unknown = sorted(set(value) - set(fields))
        missing = [k for k in required if k not in value]
        if unknown or missing:
            raise ValueError(f"{name}: unknown entries {unknown}, missing entries {missing}; expected {sorted(fields)}")
        return {k: fields[k](f"{name}.{k}", v) for k, v in value.items()}

    return check


def list_of(check: Check, max_len: int = 100_000) -> Check:
    def check_list(name: str, value: Any) -> list[Any]:
        if not isinstance(value, list) or len(value) > max_len:
            raise ValueError(f"{name}: expected a list (at most {max_len} entries), got {type(value).__name__}")
        return [check(f"{name}[{i}]", v) for i, v in enumerate(value)]

    return check_list


fraction = number(0.0, 1.0)
count = integer()

HISTORY_RECORD = record(
    {
        "epoch": integer(1),
        "step": count,
        "loss": number(0.0),
        "train_acc": fraction,
        "test_loss": optional(number(0.0)),
        "test_acc": optional(fraction),
        "seconds": number(0.0),
        "images_per_s": number(0.0),
    },
    required=("epoch", "step", "loss", "train_acc"),
)

TRAINER = record(
    {
        "epoch": count,
        "step": count,
        "step_in_epoch": count,
        "history": list_of(HISTORY_RECORD),
        "best_test_acc": optional(fraction),
        "partial": record(
            {"loss_sum": number(0.0), "hits": count, "seen": count, "seconds": number(0.0)},
            required=("loss_sum", "hits", "seen", "seconds"),
        ),
        "data_seed": integer(0, 2**64 - 1),
        "start_loss": optional(number(0.0)),
    },
    required=("epoch", "step"),
)

_OPTIMIZER_ENTRY = record(
    {"name": string, "hyper": lambda name, value: value, "iter": count, "state_names": list_of(string, max_len=16)},
    required=("name", "hyper", "iter", "state_names"),
)


def OPTIMIZER(name: str, value: Any) -> dict[str, Any]:
    """The optimizer entry: a registered optimizer's name, and its ``hyper_names`` as numbers --
    taken from the class when a file is checked, so a user's optimizer, registered before the
    file is read, round-trips with its own hyperparameters."""
    entry = _OPTIMIZER_ENTRY(name, value)
    cls = optimizer_class(entry["name"])
    entry["hyper"] = record({k: number() for k in cls.hyper_names})(f"{name}.hyper", entry["hyper"])
    return entry
