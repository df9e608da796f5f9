"""Batch normalisation per feature (2-D input) or per channel (4-D input)."""

from __future__ import annotations

import math
from typing import Any

from ..backend import get_array_module
from ..checks import check_int, check_number, check_rank
from ..functions.dtypes import as_float
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
        self._cache: tuple | None = None

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

    def forward(self, x: Array, train_flg: bool | None = None) -> Array:
        axes, shape = self._axes(x)
        x = adopt_input("x", x, self.gamma)
        xp = get_array_module(x, self.gamma)
        x = as_float(x, like=self.gamma)
        train = self._mode(train_flg)
        count = math.prod(x.shape) // self.gamma.shape[0]  # (x.size is a method in PyTorch)
        if train:
            if count < 2 and self.unbiased:
                raise ValueError(
                    f"x: training-mode batch statistics need more than 1 value per channel (or unbiased=False), got x of shape {tuple(x.shape)}"
                )
            mean = xp.mean(x, axis=axes)
            xc = x - xp.reshape(mean, shape)
            var = xp.mean(xc * xc, axis=axes)
            m = self.momentum
            self.running_mean = m * self.running_mean + (1 - m) * mean
            correction = count / (count - 1) if self.unbiased else 1.0
            self.running_var = m * self.running_var + (1 - m) * var * correction
        else:
            xc = x - xp.reshape(self.running_mean, shape)
            var = self.running_var
        inv_std = xp.reshape(1.0 / xp.sqrt(var + self.eps), shape)
        xn = xc * inv_std
        if grad_enabled():
            self._cache = (xn, inv_std, train, axes, shape, count)
        return xp.reshape(self.gamma, shape) * xn + xp.reshape(self.beta, shape)

    def backward(self, dout: Array) -> Array:
        if self._cache is None:
            raise self._not_run()
        xn, inv_std, train, axes, shape, count = self._cache
        check_dout(dout, tuple(xn.shape))
        xp = get_array_module(dout)
        dout = as_float(dout, like=xn)
        self.dbeta = xp.sum(dout, axis=axes)
        self.dgamma = xp.sum(dout * xn, axis=axes)
        dxn = dout * xp.reshape(self.gamma, shape)
        if not train:
            return dxn * inv_std
        sum_dxn = xp.sum(dxn, axis=axes, keepdims=True)
        sum_dxn_xn = xp.sum(dxn * xn, axis=axes, keepdims=True)
        return inv_std * (dxn - sum_dxn / count - xn * (sum_dxn_xn / count))

    def __repr__(self) -> str:
        return f"BatchNormalization({self.gamma.shape[0]}, momentum={self.momentum}, eps={self.eps})"
