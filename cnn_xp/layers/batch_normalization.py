"""Batch normalisation per feature (2-D input) or per channel (4-D input)."""

from __future__ import annotations

import math
from typing import Any

from ..backend import get_array_module
from ..checks import check_int, check_number, check_rank
from ..functions.batchnorm import BatchNormState, batch_norm_backward, batch_norm_forward, running_average
from ..functions.dtypes import as_float
from ..threads import Turnstile
from .base import Array, Layer, adopt_input, check_dout, float_param, settings, zeros
from .grad_mode import grad_enabled


class BatchNormalization(Layer):
    """``gamma * (x - mean) / sqrt(var + eps) + beta`` with ``gamma``, ``beta`` of shape (C,).

    x is (N, C) — statistics over N — or (N, C, H, W) — statistics over N, H, W per channel
    (the book normalised every element of a 4-D input separately; that is fixed here).
    Training mode uses the batch statistics and updates the running ones as
    ``running = momentum * running + (1 - momentum) * batch`` (the book's convention:
    ``momentum=0.9`` keeps 90 %), with the unbiased batch variance as PyTorch does (with
    ``unbiased=False`` the batch's own variance, as the book does; then a batch of one sample
    per channel is allowed); eval mode uses the running statistics.  Gradients land in
    ``dgamma`` and ``dbeta``.
    """

    param_names = ("gamma", "beta")
    buffer_names = ("running_mean", "running_var")
    uses_mode = True
    shard_safe = True  # the shards of a batch add their sums: the statistics are the batch's

    def __init__(
        self,
        gamma: Array,
        beta: Array,
        momentum: float = 0.9,
        running_mean: Array | None = None,
        running_var: Array | None = None,
        eps: float = 1e-5,
        unbiased: bool = True,
    ) -> None:
        super().__init__()
        gamma, beta = float_param("gamma", gamma), float_param("beta", beta)
        check_rank("gamma", gamma, 1, "(C,)")
        c = gamma.shape[0]
        for name, arr in (("beta", beta), ("running_mean", running_mean), ("running_var", running_var)):
            if arr is not None and tuple(arr.shape) != (c,):
                raise ValueError(f"{name}: expected shape (C,)=({c},) to match gamma, got {tuple(arr.shape)}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum: expected a number in [0, 1], got {momentum!r}")
        if not eps > 0:
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
        xp = get_array_module(gamma)
        self.gamma, self.beta = gamma, beta
        self.momentum, self.eps, self.unbiased = float(momentum), float(eps), bool(unbiased)
        self.running_mean = xp.zeros_like(gamma) if running_mean is None else as_float(running_mean, like=gamma)
        self.running_var = xp.ones_like(gamma) if running_var is None else as_float(running_var, like=gamma)
        self.dgamma: Array | None = None
        self.dbeta: Array | None = None
        self._cache: BatchNormState | None = None

    def config(self) -> dict[str, Any]:
        return {
            "type": "BatchNormalization",
            "num_features": int(self.gamma.shape[0]),
            "momentum": self.momentum,
            "eps": self.eps,
            "unbiased": self.unbiased,
        }

    @classmethod
    def state_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        s = settings(cls, config, {"num_features": ..., "momentum": 0.9, "eps": 1e-5, "unbiased": True})
        if not isinstance(s["unbiased"], bool):
            raise ValueError(f"BatchNormalization config: unbiased expected true or false, got {s['unbiased']!r}")
        c = check_int("BatchNormalization config: num_features", s["num_features"], 1)
        check_number("BatchNormalization config: momentum", s["momentum"], 0.0, 1.0, low_inclusive=True)
        check_number("BatchNormalization config: eps", s["eps"], 0.0, 1.0)
        return {name: (c,) for name in ("gamma", "beta", "running_mean", "running_var")}

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        if not shape or shape[0] != config["num_features"]:
            raise ValueError(f"BatchNormalization: takes {config['num_features']} channels first, got {shape}")
        return tuple(shape)

    @classmethod
    def from_config(cls, config: Any, dtype: Any = "float32") -> BatchNormalization:
        (c,) = cls.state_shapes(config)["gamma"]
        return cls(
            zeros((c,), dtype),
            zeros((c,), dtype),
            config.get("momentum", 0.9),
            eps=config.get("eps", 1e-5),
            unbiased=config.get("unbiased", True),
        )

    def _axes(self, x: Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Reduction axes and the broadcast shape of a per-channel vector."""
        c = self.gamma.shape[0]
        axes: tuple[int, ...]
        shape: tuple[int, ...]
        if getattr(x, "ndim", None) == 4:
            axes, shape = (0, 2, 3), (1, c, 1, 1)
        else:
            check_rank("x", x, 2, "(N, C) or 4-D (N, C, H, W)")
            axes, shape = (0,), (1, c)
        if x.shape[1] != c:
            raise ValueError(
                f"x: expected {c} channels (axis 1) to match gamma of shape ({c},), got x of shape {tuple(x.shape)}; "
                "gamma/beta are per channel, not per element"
            )
        return axes, shape

    def replica_state(self, shard: int, turnstile: Turnstile) -> dict[str, Any]:
        """A thread's copy adds its sums to the other shards' (the batch's statistics), and only
        the first shard's copy updates the running statistics -- the layer's own."""
        return {"_reduce": lambda value: turnstile.sum(shard, value), "_origin": self, "_shard": shard}

    def forward(self, x: Array, train_flg: bool | None = None) -> Array:
        self._axes(x)  # checks the shape against gamma's
        x = adopt_input("x", x, self.gamma)
        x = as_float(x, like=self.gamma)
        train = self._mode(train_flg)
        count = math.prod(x.shape) // self.gamma.shape[0]  # this part's; the batch's with shards
        reduce = getattr(self, "_reduce", None)
        if train and reduce is None and count < 2 and self.unbiased:
            raise ValueError(
                f"x: training-mode batch statistics need more than 1 value per channel (or unbiased=False), got x of shape {tuple(x.shape)}"
            )
        y, state, mean, var, total = batch_norm_forward(
            x, self.gamma, self.beta, self.eps, train=train, running_mean=self.running_mean,
            running_var=self.running_var, reduce=reduce if train else None, keep=grad_enabled(),
        )  # fmt: skip
        if train:
            self._update_running(mean, var, total)
        if state is not None:
            self._cache = state
        return y

    def _update_running(self, mean: Array, var: Array, count: float) -> None:
        """running = momentum * running + (1 - momentum) * batch, on the layer itself (a thread's
        copy: the first shard's only), the variance corrected for bias unless ``unbiased=False``."""
        if getattr(self, "_shard", 0) != 0:
            return
        owner = getattr(self, "_origin", self)
        if count < 2 and self.unbiased:
            raise ValueError(
                f"x: training-mode batch statistics need more than 1 value per channel (or unbiased=False), got {count:g}"
            )
        mean, var = (_like(v, owner.running_mean) for v in (mean, var))
        correction = count / (count - 1) if self.unbiased else 1.0
        owner.running_mean, owner.running_var = running_average(
            owner.running_mean, owner.running_var, mean, var, self.momentum, correction
        )
        if owner is not self:
            self.running_mean, self.running_var = owner.running_mean, owner.running_var

    def backward(self, dout: Array) -> Array:
        state = self._cache
        if state is None:
            raise self._not_run()
        saved: Any = state.x if state.x is not None else state.xn
        shape = saved.shape
        check_dout(dout, tuple(shape))
        dout = as_float(dout, like=self.gamma)
        reduce = getattr(self, "_reduce", None) if state.train else None
        dx, self.dgamma, self.dbeta = batch_norm_backward(dout, self.gamma, state, reduce)
        return dx

    def __repr__(self) -> str:
        return f"BatchNormalization({self.gamma.shape[0]}, momentum={self.momentum}, eps={self.eps})"


def _like(value: Array, like: Array) -> Array:
    """``value`` (a batch statistic: an array of the layer's kind, or a host float64 array from the
    kernels) as an array of ``like``'s library, device and dtype."""
    xp = get_array_module(like)
    if type(value) is type(like):
        return value if value.dtype == like.dtype else xp.astype(value, like.dtype)
    return xp.asarray(value, dtype=like.dtype)
