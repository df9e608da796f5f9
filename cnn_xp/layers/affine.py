"""Fully connected layer ``x @ W + b``."""

from __future__ import annotations

import math
from typing import Any

from ..backend import get_array_module
from ..checks import check_rank
from ..functions.dtypes import as_float
from .base import Array, Layer, adopt_input, check_dout, float_param, settings, shape_setting, zeros
from .grad_mode import grad_enabled


class Affine(Layer):
    """Affine map with ``W`` (D_in, D_out) and ``b`` (D_out,) — the book's (in, out) layout.

    ``forward(x)``: x (N, ...) is flattened to (N, D_in) -> (N, D_out).
    ``backward(dout)``: dout (N, D_out) -> dx in x's original shape; fills ``dW`` and ``db``.
    """

    shard_safe = True

    param_names = ("W", "b")
    can_skip_dx = True

    def __init__(self, W: Array, b: Array) -> None:
        super().__init__()
        W, b = float_param("W", W), float_param("b", b)
        check_rank("W", W, 2, "(D_in, D_out)")
        if tuple(b.shape) != (W.shape[1],):
            raise ValueError(
                f"b: expected shape (D_out,)=({W.shape[1]},) to match W of shape {tuple(W.shape)}, got {tuple(b.shape)}"
            )
        self.W, self.b = W, b
        self.dW: Array | None = None
        self.db: Array | None = None
        self._x: Array | None = None
        self._x_shape: tuple[int, ...] = ()

    def config(self) -> dict[str, Any]:
        return {"type": "Affine", "shape": [int(v) for v in self.W.shape]}

    @classmethod
    def state_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        d_in, d_out = shape_setting("Affine", "shape", settings(cls, config, {"shape": ...})["shape"], 2)
        return {"W": (d_in, d_out), "b": (d_out,)}

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        d_in, d_out = config["shape"]
        if math.prod(shape) != d_in:
            raise ValueError(f"Affine: takes {d_in} features, got {math.prod(shape)} (a sample of shape {shape})")
        return (d_out,)

    @classmethod
    def from_config(cls, config: Any, dtype: Any = "float32") -> Affine:
        shapes = cls.state_shapes(config)
        return cls(zeros(shapes["W"], dtype), zeros(shapes["b"], dtype))

    def forward(self, x: Array) -> Array:
        W = self.W
        if getattr(x, "ndim", 0) < 2:
            raise ValueError(
                f"x: expected an array (N, ...) of at least 2 dimensions, got shape {tuple(getattr(x, 'shape', ()))}"
            )
        features = math.prod(x.shape[1:])
        if features != W.shape[0]:
            raise ValueError(
                f"x: expected {W.shape[0]} features per sample to match W of shape {tuple(W.shape)}, "
                f"got x of shape {tuple(x.shape)} ({features} features)"
            )
        x = adopt_input("x", x, W)
        xp = get_array_module(x, W)
        x2 = xp.reshape(as_float(x, like=W), (x.shape[0], features))
        if grad_enabled():
            self._x_shape, self._x = tuple(x.shape), x2
        return xp.matmul(x2, W) + self.b

    def backward(self, dout: Array, need_dx: bool = True) -> Array | None:
        """dx shaped like the input; fills dW and db.  ``need_dx=False`` returns None."""
        if self._x is None:
            raise self._not_run()
        check_dout(dout, (self._x.shape[0], self.W.shape[1]))
        xp = get_array_module(dout, self.W)
        dout = as_float(dout, like=self.W)
        self.dW = xp.matmul(self._x.mT, dout)
        self.db = xp.sum(dout, axis=0)
        if not need_dx:
            return None
        return xp.reshape(xp.matmul(dout, self.W.mT), self._x_shape)
