"""Max and average pooling over (pool_h, pool_w) windows, by im2col."""

from __future__ import annotations

from typing import Any

from ..backend import get_array_module
from ..checks import IntPair, check_int, check_rank, pair
from ..functions.conv_utils import window_output_shape
from ..functions.dtypes import as_float
from ..functions.im2col import fold, unfold
from ..functions.pooling import MaxPoolState, max_pool, max_pool_grad
from .base import Array, Layer, check_dout, settings, type_name
from .grad_mode import grad_enabled


class _Pool2d(Layer):
    shard_safe = True

    def __init__(self, pool_h: int, pool_w: int, stride: IntPair = 2, pad: IntPair = 0) -> None:
        super().__init__()
        self.pool_h = check_int("pool_h", pool_h, 1)
        self.pool_w = check_int("pool_w", pool_w, 1)
        self.stride = pair("stride", stride, 1)
        self.pad = pair("pad", pad, 0)
        for name, p, k in (("pad", self.pad[0], self.pool_h), ("pad", self.pad[1], self.pool_w)):
            if p > k // 2:  # else a window could see nothing but padding (PyTorch's rule too)
                raise ValueError(f"{name}: expected at most half the pool size ({k // 2} for pool {k}), got {p}")
        self._x_shape: tuple[int, ...] = ()
        self._out_shape: tuple[int, ...] | None = None

    def config(self) -> dict[str, Any]:
        return {
            "type": type_name(type(self)),
            "pool_h": self.pool_h,
            "pool_w": self.pool_w,
            "stride": list(self.stride),
            "pad": list(self.pad),
        }

    @classmethod
    def state_shapes(cls, config: Any) -> dict[str, tuple[int, ...]]:
        s = settings(cls, config, {"pool_h": ..., "pool_w": ..., "stride": 2, "pad": 0})
        cls(s["pool_h"], s["pool_w"], s["stride"], s["pad"])  # checks every setting; holds no arrays
        return {}

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        s = settings(cls, config, {"pool_h": ..., "pool_w": ..., "stride": 2, "pad": 0})
        if len(shape) != 3:
            raise ValueError(f"{type_name(cls)}: takes (C, H, W), got {shape}")
        (sh, sw), (ph, pw) = pair("stride", s["stride"], 1), pair("pad", s["pad"], 0)
        return (shape[0], *window_output_shape((1, *shape), s["pool_h"], s["pool_w"], sh, sw, ph, pw, name="input"))

    @classmethod
    def from_config(cls, config: Any, dtype: Any = "float32") -> Any:
        s = settings(cls, config, {"pool_h": ..., "pool_w": ..., "stride": 2, "pad": 0})
        return cls(s["pool_h"], s["pool_w"], s["stride"], s["pad"])

    def _windows(self, x: Array, pad_value: float) -> Array:
        """(N, C, pool_h*pool_w, OH, OW) windows of x."""
        check_rank("x", x, 4, "(N, C, H, W)")
        (sh, sw), (ph, pw) = self.stride, self.pad
        window_output_shape(tuple(x.shape), self.pool_h, self.pool_w, sh, sw, ph, pw, name="x")
        xp = get_array_module(x)
        col = unfold(x, self.pool_h, self.pool_w, sh, sw, ph, pw, pad_value)
        n, c, _, _, oh, ow = col.shape
        if grad_enabled():  # under no_grad() keep nothing (and leave an earlier forward's state)
            self._x_shape, self._out_shape = tuple(x.shape), (n, c, oh, ow)
        return xp.reshape(col, (n, c, self.pool_h * self.pool_w, oh, ow))

    def _fold(self, dcol: Array) -> Array:
        xp = get_array_module(dcol)
        n, c, _, oh, ow = dcol.shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        return fold(xp.reshape(dcol, (n, c, self.pool_h, self.pool_w, oh, ow)), self._x_shape, sh, sw, ph, pw)

    def _check_backward(self, dout: Array) -> None:
        if self._out_shape is None:
            raise self._not_run()
        check_dout(dout, self._out_shape)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(pool=({self.pool_h}, {self.pool_w}), stride={self.stride}, pad={self.pad})"


class Pooling(_Pool2d):
    """Max pooling: x (N, C, H, W) -> (N, C, OH, OW).

    Padding never wins the max (it is -inf, as in PyTorch); ties go to the first element of
    the window in row-major order, and the gradient flows to that element only.  The work is
    :func:`cnn_xp.functions.pooling.max_pool` (a compiled kernel on NumPy float arrays, else a
    chain of element-wise maxima over the window offsets), which also says what the backward keeps.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: IntPair = 2, pad: IntPair = 0) -> None:
        super().__init__(pool_h, pool_w, stride, pad)
        self._state: MaxPoolState | None = None

    def forward(self, x: Array) -> Array:
        check_rank("x", x, 4, "(N, C, H, W)")
        keep = grad_enabled()  # under no_grad() keep nothing (and leave an earlier forward's state)
        y, state = max_pool(x, self.pool_h, self.pool_w, self.stride, self.pad, keep=keep)
        if keep:
            self._state = state
            self._x_shape, self._out_shape = tuple(x.shape), tuple(y.shape)
        return y

    def backward(self, dout: Array) -> Array:
        self._check_backward(dout)
        assert self._state is not None  # _check_backward ran
        return max_pool_grad(as_float(dout), self._state)


class AvgPooling(_Pool2d):
    """Average pooling: x (N, C, H, W) -> (N, C, OH, OW).

    Padding counts as zeros in the average (PyTorch's ``count_include_pad=True``).
    Integer inputs are averaged in float32.
    """

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        col = self._windows(as_float(x), 0)
        return xp.sum(col, axis=2) / (self.pool_h * self.pool_w)

    def backward(self, dout: Array) -> Array:
        self._check_backward(dout)
        xp = get_array_module(dout)
        k = self.pool_h * self.pool_w
        share = xp.expand_dims(as_float(dout) / k, axis=2)
        n, c, oh, ow = dout.shape
        return self._fold(xp.broadcast_to(share, (n, c, k, oh, ow)))


class GlobalAvgPooling(Layer):
    """Global average pooling: x (N, C, H, W) -> (N, C), the mean of each channel's plane --
    what a residual network has in place of a large affine layer.  ``backward(dout)``: dout
    (N, C) -> dx (N, C, H, W), each plane's gradient spread evenly over its H * W pixels."""

    shard_safe = True

    def __init__(self) -> None:
        super().__init__()
        self._x_shape: tuple[int, ...] | None = None

    @classmethod
    def output_shape(cls, config: Any, shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(shape) != 3:
            raise ValueError(f"GlobalAvgPooling: takes (C, H, W), got {shape}")
        return (shape[0],)

    def forward(self, x: Array) -> Array:
        check_rank("x", x, 4, "(N, C, H, W)")
        xp = get_array_module(x)
        if grad_enabled():
            self._x_shape = tuple(x.shape)
        return xp.mean(as_float(x), axis=(2, 3))

    def backward(self, dout: Array) -> Array:
        if self._x_shape is None:
            raise self._not_run()
        n, c, h, w = self._x_shape
        check_dout(dout, (n, c))
        xp = get_array_module(dout)
        share = xp.reshape(as_float(dout) * (1.0 / (h * w)), (n, c, 1, 1))
        return xp.broadcast_to(share, (n, c, h, w))
