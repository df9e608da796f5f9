"""Optimizers with the book's ``update(params, grads)`` interface, found by name through one
open registry (:data:`OPTIMIZERS`, extended with :func:`register_optimizer`)."""

from __future__ import annotations

from typing import TypeVar

from ..registry import Registry
from .adaptive import AdaGrad, Adam, RMSprop
from .base import Optimizer
from .schedules import Schedule, constant, cosine, exponential
from .sgd import SGD, Momentum, Nesterov

OptimizerClass = TypeVar("OptimizerClass", bound=type[Optimizer])


def _check_optimizer_class(cls: object) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
        raise TypeError(f"register_optimizer: expected a subclass of cnn_xp.optim.Optimizer, got {cls!r}")
    names = getattr(cls, "hyper_names", ())
    if "lr" not in names or not all(isinstance(n, str) and n.isidentifier() for n in names):
        raise ValueError(
            f"register_optimizer: {cls.__name__}.hyper_names must list its hyperparameters (identifiers, 'lr' among "
            f"them): a checkpoint stores and checks exactly these; got {names!r}"
        )


OPTIMIZERS: Registry[type[Optimizer]] = Registry("optimizer", key=str.lower, check=_check_optimizer_class)
"""Optimizer classes by name, case-insensitive: what ``--optimizer`` offers and checkpoints may name."""


def register_optimizer(cls: OptimizerClass | None = None, *, name: str | None = None):  # type: ignore[no-untyped-def]
    """Register an :class:`Optimizer` subclass under ``name`` (default: its class name; any case
    finds it), as ``@register_optimizer``, ``@register_optimizer(name=...)`` or
    ``register_optimizer(MyOptimizer)``; returns the class.

    Its constructor must take every name of its ``hyper_names`` as a keyword argument: a
    checkpoint stores those values and rebuilds the optimizer with them (and checks a file's
    entries against that same list)."""

    def add(opt_cls: OptimizerClass) -> OptimizerClass:
        _check_optimizer_class(opt_cls)
        OPTIMIZERS.add(name or opt_cls.__name__, opt_cls)
        return opt_cls

    return add if cls is None else add(cls)


def optimizer_class(name: str) -> type[Optimizer]:
    """The registered optimizer class of ``name``: a registered name or a class name (as
    :meth:`Optimizer.state_dict` records it), any case.  UnknownNameError (a ValueError) if none."""
    if name in OPTIMIZERS:
        return OPTIMIZERS[name]
    for cls in OPTIMIZERS.values():
        if isinstance(name, str) and cls.__name__ == name:
            return cls
    return OPTIMIZERS[name]  # raises, listing the registered names


for _cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam):
    register_optimizer(_cls)

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "AdaGrad",
    "Adam",
    "Momentum",
    "Nesterov",
    "Optimizer",
    "RMSprop",
    "Schedule",
    "constant",
    "cosine",
    "exponential",
    "optimizer_class",
    "register_optimizer",
]
