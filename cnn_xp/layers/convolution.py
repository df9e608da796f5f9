"""2-D convolution (cross-correlation) by im2col and one batched matrix product."""

from __future__ import annotations

from ..backend import get_array_module
from ..functions.conv_utils import IntPair, check_rank, pair, window_output_shape
from ..functions.dtypes import as_float
from ..functions.im2col import fold, unfold
from .base import Array, Layer, check_dout, check_same_place, float_param


class Convolution(Layer):
    """Convolution with weights ``W`` (FN, C, FH, FW) and bias ``b`` (FN,).

    ``forward(x)``: x (N, C, H, W) -> (N, FN, OH, OW), ``OH = (H + 2*pad - FH)//stride + 1``.
    ``backward(dout)``: dout (N, FN, OH, OW) -> dx (N, C, H, W); fills ``dW`` and ``db``.
    Integer inputs are cast to W's dtype.  ``stride``/``pad`` may be (h, w) pairs.
    """

    param_names = ("W", "b")

    def __init__(self, W: Array, b: Array, stride: IntPair = 1, pad: IntPair = 0) -> None:
        super().__init__()
        W, b = float_param("W", W), float_param("b", b)
        check_rank("W", W, 4, "(FN, C, FH, FW)")
        if tuple(b.shape) != (W.shape[0],):
            raise ValueError(
                f"b: expected shape (FN,)=({W.shape[0]},) to match W of shape {tuple(W.shape)}, got {tuple(b.shape)}"
            )
        self.W, self.b = W, b
        self.stride = pair("stride", stride, 1)
        self.pad = pair("pad", pad, 0)
        self.dW: Array | None = None
        self.db: Array | None = None
        self._col: Array | None = None
        self._x_shape: tuple[int, ...] = ()

    def forward(self, x: Array) -> Array:
        W = self.W
        fn, c, fh, fw = W.shape
        check_rank("x", x, 4, "(N, C, H, W)")
        if x.shape[1] != c:
            raise ValueError(
                f"x: expected {c} input channels to match W of shape {tuple(W.shape)}, got x of shape {tuple(x.shape)}"
            )
        check_same_place("x", x, W)
        (sh, sw), (ph, pw) = self.stride, self.pad
        oh, ow = window_output_shape(tuple(x.shape), fh, fw, sh, sw, ph, pw, name="x")
        xp = get_array_module(x, W)
        x = as_float(x, like=W)
        n = x.shape[0]
        col = xp.reshape(unfold(x, fh, fw, sh, sw, ph, pw), (n, c * fh * fw, oh * ow))
        out = xp.matmul(xp.reshape(W, (fn, c * fh * fw)), col) + xp.reshape(self.b, (fn, 1))
        self._col, self._x_shape = col, tuple(x.shape)
        return xp.reshape(out, (n, fn, oh, ow))

    def backward(self, dout: Array) -> Array:
        if self._col is None:
            raise self._not_run()
        W, col = self.W, self._col
        fn, c, fh, fw = W.shape
        n, k, length = col.shape
        (sh, sw), (ph, pw) = self.stride, self.pad
        oh, ow = window_output_shape(self._x_shape, fh, fw, sh, sw, ph, pw)
        check_dout(dout, (n, fn, oh, ow))
        xp = get_array_module(dout, W)
        d = xp.reshape(as_float(dout, like=W), (n, fn, length))
        self.db = xp.sum(d, axis=(0, 2))
        self.dW = xp.reshape(xp.sum(xp.matmul(d, col.mT), axis=0), W.shape)
        dcol = xp.matmul(xp.reshape(W, (fn, k)).mT, d)  # (N, C*FH*FW, OH*OW)
        return fold(xp.reshape(dcol, (n, c, fh, fw, oh, ow)), self._x_shape, sh, sw, ph, pw)
