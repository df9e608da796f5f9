"""Max and average pooling over (pool_h, pool_w) windows, by im2col."""

from __future__ import annotations

from typing import Any

from ..backend import array_device, get_array_module
from ..checks import IntPair, check_int, check_rank, is_floating, pair
from ..functions import native
from ..functions.conv_utils import window_output_shape
from ..functions.dtypes import as_float
from ..functions.im2col import fold, pad2d, unfold, window_slices, window_views
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
    the window in row-major order, and the gradient flows to that element only.

    Implemented over the pool_h*pool_w window offsets, each a strided (N, C, OH, OW) slice of
    the padded input: forward is a chain of element-wise maxima and backward finds, offset by
    offset, the first element equal to the max.  No (N, C, KH*KW, OH, OW) column array is
    built and nothing is reduced along a strided axis.  On NumPy float arrays the compiled
    kernel of :mod:`cnn_xp.functions.native` does the same in one pass each way, keeping each
    output's winner (one byte) instead of the input and output.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: IntPair = 2, pad: IntPair = 0) -> None:
        super().__init__(pool_h, pool_w, stride, pad)
        self._img: Array | None = None
        self._out: Array | None = None
        self._winners: Array | None = None  # the compiled kernel's: each output's winning offset

    def forward(self, x: Array) -> Array:
        xp = get_array_module(x)
        check_rank("x", x, 4, "(N, C, H, W)")
        (sh, sw), (ph, pw) = self.stride, self.pad
        oh, ow = window_output_shape(tuple(x.shape), self.pool_h, self.pool_w, sh, sw, ph, pw, name="x")
        if native.pool_accepts(x, self.pool_h, self.pool_w):
            y, winners = native.max_pool(x, self.pool_h, self.pool_w, self.stride, self.pad, (oh, ow))
            if grad_enabled():
                self._x_shape, self._out_shape = tuple(x.shape), tuple(y.shape)
                self._img, self._out, self._winners = None, None, winners
            return y
        lowest = -float("inf") if is_floating(x) else int(xp.iinfo(x.dtype).min)
        img = pad2d(x, ph, pw, lowest)
        views = window_views(img, self.pool_h, self.pool_w, sh, sw, oh, ow)
        out = xp.asarray(next(views), copy=True)
        for view in views:
            out = xp.maximum(out, view)
        if grad_enabled():
            self._x_shape, self._out_shape = tuple(x.shape), tuple(out.shape)
            self._img, self._out, self._winners = img, out, None
        return out

    def backward(self, dout: Array) -> Array:
        self._check_backward(dout)
        xp = get_array_module(dout)
        dout = as_float(dout)
        if self._winners is not None:
            return self._compiled_backward(dout)
        h, w = self._x_shape[2], self._x_shape[3]
        (sh, sw), (ph, pw) = self.stride, self.pad
        assert self._img is not None and self._out is not None  # _check_backward ran
        oh, ow = self._out.shape[2], self._out.shape[3]
        kh, kw = self.pool_h, self.pool_w
        hp, wp = self._img.shape[2], self._img.shape[3]
        apart = sh >= kh and sw >= kw  # windows do not overlap: each pixel gets at most one write
        tiled = sh == kh and sw == kw and oh * sh == hp and ow * sw == wp  # ... and every pixel one
        make = xp.empty if tiled else xp.zeros
        dimg = make(self._img.shape, dtype=dout.dtype, device=array_device(dout))
        taken = None  # outputs whose gradient already went to an earlier (first) maximum
        slices = window_slices(kh, kw, sh, sw, oh, ow)
        for (rows, cols), view in zip(slices, window_views(self._img, kh, kw, sh, sw, oh, ow), strict=True):
            hit = view == self._out
            if taken is None:
                taken = xp.asarray(hit, copy=True)
            else:
                hit &= ~taken  # in place: no new arrays per offset
                taken |= hit
            # mask * dout is several times faster than where(mask, dout, 0) on NumPy
            share = xp.astype(hit, dout.dtype) * dout
            if apart:
                dimg[:, :, rows, cols] = share
            else:
                dimg[:, :, rows, cols] += share
        if ph == 0 and pw == 0:
            return dimg
        return dimg[:, :, ph : ph + h, pw : pw + w]

    def _compiled_backward(self, dout: Array) -> Array:
        """The compiled kernel's backward, in dout's dtype (one it does not take, float16 say, is
        computed in float64 and rounded back: each value is a sum of dout's values)."""
        assert self._winners is not None
        taken = dout if native.accepts(dout) else dout.astype("float64")
        dx = native.max_pool_grad(taken, self._winners, self._x_shape, self.pool_h, self.pool_w, self.stride, self.pad)
        return dx if taken is dout else dx.astype(dout.dtype)


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
