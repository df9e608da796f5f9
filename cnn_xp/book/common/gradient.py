"""``from common.gradient import numerical_gradient``: central differences, element by element."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...functions.numerical_gradient import numerical_gradient

__all__ = ["numerical_gradient", "numerical_gradient_2d"]


def numerical_gradient_2d(f: Callable[[Any], Any], X: Any) -> Any:
    """The book's row-by-row variant (ch. 4); the same numbers as :func:`numerical_gradient`."""
    return numerical_gradient(f, X)
