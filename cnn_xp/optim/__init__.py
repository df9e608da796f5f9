"""Optimizers with the book's ``update(params, grads)`` interface."""

from .adaptive import AdaGrad, Adam, RMSprop
from .base import Optimizer
from .schedules import Schedule, constant, cosine, exponential
from .sgd import SGD, Momentum, Nesterov

OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}

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
]
