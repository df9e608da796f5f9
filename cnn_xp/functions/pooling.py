"""Max pooling as a pair of pure functions: the compiled kernel where it runs, else the array
passes -- the same maxima, the same winners (the first maximum in row-major order), NaN and
padding treated alike -- each keeping what its own backward needs in a :class:`MaxPoolState`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy  # host arrays: the winners exist for NumPy inputs only

from ..backend import array_device, get_array_module
from ..checks import is_floating
from . import native
from .conv_utils import window_output_shape
from .im2col import pad2d, window_slices, window_views

Array = Any


@dataclass
class MaxPoolState:
    """What :func:`max_pool_grad` needs: the input's shape, the window, and either the compiled
    kernel's winners (one byte per output) or the padded input and the output."""

    x_shape: tuple[int, ...]
    window: tuple[int, int]
    stride: tuple[int, int]
    pad: tuple[int, int]
    winners: Array | None = None
    img: Array | None = None
    out: Array | None = None

    @property
    def out_shape(self) -> tuple[int, ...]:
        kh, kw = self.window
        oh, ow = window_output_shape(self.x_shape, kh, kw, *self.stride, *self.pad)
        return (self.x_shape[0], self.x_shape[1], oh, ow)


def max_pool(
    x: Array, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int], keep: bool = True
) -> tuple[Array, MaxPoolState | None]:
    """y (N, C, OH, OW), the max of each (kh, kw) window of x (N, C, H, W) padded with -inf (the
    padding never wins), and the state for the backward (None unless ``keep``).  Arguments are
    assumed checked."""
    (sh, sw), (ph, pw) = stride, pad
    oh, ow = window_output_shape(tuple(x.shape), kh, kw, sh, sw, ph, pw, name="x")
    state = MaxPoolState(tuple(x.shape), (kh, kw), (sh, sw), (ph, pw)) if keep else None
    if native.accepts(x) and kh * kw < native.NO_WINNER:
        y, winners = native.max_pool(x, kh, kw, (sh, sw), (ph, pw), (oh, ow))
        if state is not None:
            state.winners = winners
        return y, state
    xp = get_array_module(x)
    lowest = -float("inf") if is_floating(x) else int(xp.iinfo(x.dtype).min)
    img = pad2d(x, ph, pw, lowest)
    views = window_views(img, kh, kw, sh, sw, oh, ow)
    out = xp.asarray(next(views), copy=True)
    for view in views:
        out = xp.maximum(out, view)
    if state is not None:
        state.img, state.out = img, out
    return out, state


def max_pool_grad(dy: Array, state: MaxPoolState) -> Array:
    """dx (N, C, H, W): each output's gradient dy (N, C, OH, OW) sent to its window's winner,
    summed where windows overlap, offset by offset in row-major order."""
    if state.winners is not None:
        return _compiled_grad(dy, state)
    xp = get_array_module(dy)
    (h, w), (kh, kw), (sh, sw), (ph, pw) = state.x_shape[2:], state.window, state.stride, state.pad
    img, out = state.img, state.out
    assert img is not None and out is not None
    oh, ow = out.shape[2], out.shape[3]
    hp, wp = img.shape[2], img.shape[3]
    apart = sh >= kh and sw >= kw  # windows do not overlap: each pixel gets at most one write
    tiled = sh == kh and sw == kw and oh * sh == hp and ow * sw == wp  # ... and every pixel one
    dimg = (xp.empty if tiled else xp.zeros)(img.shape, dtype=dy.dtype, device=array_device(dy))
    taken = None  # outputs whose gradient already went to an earlier (first) maximum
    slices = window_slices(kh, kw, sh, sw, oh, ow)
    for (rows, cols), view in zip(slices, window_views(img, kh, kw, sh, sw, oh, ow), strict=True):
        hit = view == out
        if taken is None:
            taken = xp.asarray(hit, copy=True)
        else:
            hit &= ~taken  # in place: no new arrays per offset
            taken |= hit
        # mask * dout is several times faster than where(mask, dout, 0) on NumPy
        share = xp.astype(hit, dy.dtype) * dy
        if apart:
            dimg[:, :, rows, cols] = share
        else:
            dimg[:, :, rows, cols] += share
    if ph == 0 and pw == 0:
        return dimg
    return dimg[:, :, ph : ph + h, pw : pw + w]


def _compiled_grad(dy: Array, state: MaxPoolState) -> Array:
    """The compiled kernel's backward, in dy's dtype.  A float32/float64 dy of the other byte order
    is read in the machine's (the same values, so the same sums); one the kernel does not take
    (float16, say) is computed in float64 and rounded back: each value is a sum of dy's values."""
    dy = numpy.asarray(dy)
    taken = dy.astype(dy.dtype.newbyteorder("="), copy=False)
    if not native.accepts(taken):
        taken = dy.astype(numpy.float64)
    kh, kw = state.window
    assert state.winners is not None  # (the caller's test)
    dx = native.max_pool_grad(taken, state.winners, state.x_shape, kh, kw, state.stride, state.pad)
    return dx if dx.dtype == dy.dtype else dx.astype(dy.dtype)
