"""``no_grad()``: run forward passes that keep nothing for a backward pass (as in PyTorch).

Inside ``with cnn_xp.no_grad():`` layers keep no masks, inputs or im2col columns for
``backward`` (which then raises), so inference holds only the activations in flight.  The
flag is per thread and per asyncio task (a :class:`contextvars.ContextVar`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_grad_enabled: ContextVar[bool] = ContextVar("cnn_xp_grad_enabled", default=True)


def grad_enabled() -> bool:
    """False inside :func:`no_grad`."""
    return _grad_enabled.get()


@contextmanager
def no_grad() -> Iterator[None]:
    """Context manager: forward passes inside keep nothing for ``backward``."""
    token = _grad_enabled.set(False)
    try:
        yield
    finally:
        _grad_enabled.reset(token)
