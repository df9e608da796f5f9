"""Dropout (inverted: kept units are scaled by 1/(1-p) in training, eval is the identity)."""

from __future__ import annotations

from typing import Any

from ..backend import RNG, get_array_module
from ..functions.dtypes import as_float
from ..threads import Turnstile
from .base import Array, Layer, check_dout, settings
from .grad_mode import grad_enabled


class Dropout(Layer):
    """Zero each element with probability ``dropout_ratio`` in training mode.

    Unlike the book (which scales by ``1 - p`` at test time) the kept units are scaled by
    ``1 / (1 - p)`` while training, so evaluation is the identity; the expected output is the
    same either way.  ``seed`` makes the masks reproducible; ``rng`` is a :class:`cnn_xp.backend.RNG`.
    """

    uses_mode = True
    shard_safe = True

    def __init__(self, dropout_ratio: float = 0.5, seed: int | None = None) -> None:
        super().__init__()
        if isinstance(dropout_ratio, bool) or not isinstance(dropout_ratio, (int, float)) or not 0 <= dropout_ratio < 1:
            raise ValueError(f"dropout_ratio: expected a number in [0, 1), got {dropout_ratio!r}")
        self.dropout_ratio = float(dropout_ratio)
        self.rng = RNG(seed)
        self.mask: Array | None = None  # True where a unit is kept
        self._scale: Array | None = None  # mask / (1 - p), in the input's dtype
        self._shape: tuple[int, ...] | None = None

    def replica_state(self, shard: int, turnstile: Turnstile) -> dict[str, Any]:
        return {"rng": _DrawsInTurn(self, shard, turnstile)}

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(shape)  # element-wise

    def config(self) -> dict[str, Any]:
        return {"type": "Dropout", "dropout_ratio": self.dropout_ratio}

    @classmethod
    def state_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        cls(settings(cls, config, {"dropout_ratio": 0.5})["dropout_ratio"])  # checks the ratio; holds no arrays
        return {}

    @classmethod
    def from_config(cls, config: Any, dtype: Any = "float32") -> Dropout:
        cls.state_shapes(config)
        return cls(config.get("dropout_ratio", 0.5))

    def extra_state(self) -> dict[str, Any]:
        """The mask generator's state (a NumPy bit-generator state): a resumed run draws the
        masks it would have drawn."""
        return self.rng.get_state()

    def set_extra_state(self, state: Any) -> None:
        try:
            RNG().set_state(state)  # checked on a scratch generator: a bad state changes nothing
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            raise ValueError(f"Dropout: expected a NumPy bit-generator state, got {state!r:.100}") from None
        self.rng.set_state(state)

    def forward(self, x: Array, train_flg: bool | None = None) -> Array:
        x = as_float(x)
        mask = scale = None
        if self._mode(train_flg) and self.dropout_ratio != 0:
            xp = get_array_module(x)
            mask = self.rng.uniform(tuple(x.shape), like=x) >= self.dropout_ratio
            scale = xp.astype(mask, x.dtype) * (1.0 / (1.0 - self.dropout_ratio))
        if grad_enabled():
            self._shape, self.mask, self._scale = tuple(x.shape), mask, scale
        return x if scale is None else x * scale

    def backward(self, dout: Array) -> Array:
        if self._shape is None:
            raise self._not_run()
        check_dout(dout, self._shape)
        if self.mask is None:
            return dout
        return dout * self._scale

    def __repr__(self) -> str:
        return f"Dropout({self.dropout_ratio})"


class _DrawsInTurn:
    """The generator of a thread's copy of a Dropout: it draws from the original layer's
    generator, shard after shard, so a batch split into shards gets the masks the whole batch
    would have got (NumPy fills a sample array element after element) and a checkpoint's
    generator state stays the original layer's."""

    def __init__(self, layer: Dropout, shard: int, turnstile: Turnstile) -> None:
        self.layer, self.shard, self.turnstile = layer, shard, turnstile

    def uniform(self, shape: tuple[int, ...], like: Array) -> Array:
        with self.turnstile.turn(self.shard):
            return self.layer.rng.uniform(shape, like)
