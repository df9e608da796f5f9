"""What every layer shares: named parameters, their gradients, buffers and the train/eval mode."""

from __future__ import annotations

from typing import Any

from ..backend import adopt_like, get_array_module
from ..checks import check_same_place, is_floating

Array = Any


class Layer:
    """Base class of the layers.

    ``param_names`` lists the attributes holding trainable arrays (e.g. ``("W", "b")``); after
    ``backward`` their gradients are in the attributes named ``"d" + name`` (``dW``, ``db``,
    ``dgamma``, ``dbeta``), as in "Deep Learning from Scratch".  ``buffer_names`` lists
    non-trainable state saved in checkpoints (BatchNorm running statistics).  Layers with
    ``can_skip_dx`` take ``backward(dout, need_dx=False)``, which fills the parameter gradients
    and returns None: a network's first layer does not compute a gradient for its data.  Layers whose
    behaviour depends on the mode (Dropout, BatchNormalization) set ``uses_mode`` and take
    ``forward(x, train_flg=None)``; None means "use ``self.training``".
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    uses_mode = False
    can_skip_dx = False  # backward(dout, need_dx=False) skips the input gradient (first layers)

    def __init__(self) -> None:
        self.training = True

    def forward(self, x: Array, *args: Any, **kwargs: Any) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def train(self, mode: bool = True) -> Layer:
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def _mode(self, train_flg: bool | None) -> bool:
        return self.training if train_flg is None else bool(train_flg)

    def _not_run(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}.backward() called before forward() (or after a forward under no_grad()); "
            "run forward first, outside no_grad()"
        )

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}={tuple(getattr(self, n).shape)}" for n in self.param_names)
        return f"{type(self).__name__}({shapes})"


def float_param(name: str, value: Array) -> Array:
    """Check a parameter array; integer/bool parameters become float32 (same device)."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}")
    if is_floating(value):
        return value
    return get_array_module(value).astype(value, get_array_module(value).float32)


def adopt_input(name: str, x: Array, like: Array) -> Array:
    """``x`` ready to compute with the parameter ``like``: another library's array (PyTorch, JAX, ...)
    on the same device is viewed as ``like``'s kind through DLPack (no copy); anything on
    another device or of another library raises ValueError (see :func:`check_same_place`)."""
    x = adopt_like(x, like)
    check_same_place(name, x, like)
    return x


def check_dout(dout: Array, expected: tuple[int, ...]) -> None:
    if tuple(dout.shape) != tuple(expected):
        raise ValueError(f"dout: expected shape {tuple(expected)} (the forward output), got {tuple(dout.shape)}")
