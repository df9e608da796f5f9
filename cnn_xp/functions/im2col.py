"""im2col / col2im: unfold image windows into columns and fold them back.

Two layouts:

* the *internal* 6-D layout ``(N, C, KH, KW, OH, OW)`` (Chainer's), which makes the
  convolution a plain batched matrix product with no transposes:
  ``W.reshape(FN, C*KH*KW) @ col.reshape(N, C*KH*KW, OH*OW)`` is already ``(N, FN, OH*OW)``;
* the *book's* public matrix ``(N*OH*OW, C*FH*FW)`` returned by :func:`im2col`, so code from
  "Deep Learning from Scratch" ports unchanged.

Both loop over the KH*KW kernel offsets only (never over pixels or the batch) and copy one
strided slice per offset.  col2im accumulates those slices in a fixed order, so it is
deterministic on every device.  All arrays keep the input's dtype (no float64 scratch).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..backend import array_device, follows_input_device, get_array_module
from ..checks import IntPair, check_int, check_rank, pair
from .conv_utils import window_output_shape

Array = Any


@follows_input_device
def pad2d(x: Array, ph: int, pw: int, value: float = 0) -> Array:
    """Pad the last two axes of ``x`` (N, C, H, W) by ``ph``/``pw`` on each side with ``value``."""
    if ph == 0 and pw == 0:
        return x
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full((n, c, h + 2 * ph, w + 2 * pw), value, dtype=x.dtype, device=array_device(x))
    out[:, :, ph : ph + h, pw : pw + w] = x
    return out


def window_slices(kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> Iterator[tuple[slice, slice]]:
    """For each kernel offset (i, j) in row-major order, the (rows, cols) slices of the padded
    image that offset reads for all OH x OW outputs. Stops stay in bounds (larger stops are
    unspecified in the array API)."""
    for i in range(kh):
        for j in range(kw):
            yield slice(i, i + sh * (oh - 1) + 1, sh), slice(j, j + sw * (ow - 1) + 1, sw)


def window_views(img: Array, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> Iterator[Array]:
    """The (N, C, OH, OW) strided slice of padded ``img`` read by each kernel offset."""
    for rows, cols in window_slices(kh, kw, sh, sw, oh, ow):
        yield img[:, :, rows, cols]


@follows_input_device
def unfold(x: Array, kh: int, kw: int, sh: int, sw: int, ph: int, pw: int, pad_value: float = 0) -> Array:
    """Windows of ``x`` (N, C, H, W) as ``col`` of shape (N, C, KH, KW, OH, OW).

    ``col[n, c, i, j, y, x] = padded[n, c, y*sh + i, x*sw + j]``. Arguments are assumed checked.
    """
    xp = get_array_module(x)
    n, c = x.shape[0], x.shape[1]
    oh, ow = window_output_shape(tuple(x.shape), kh, kw, sh, sw, ph, pw)
    img = pad2d(x, ph, pw, pad_value)
    col = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype, device=array_device(x))
    for k, view in enumerate(window_views(img, kh, kw, sh, sw, oh, ow)):
        col[:, :, k // kw, k % kw, :, :] = view
    return col


@follows_input_device
def fold(col: Array, x_shape: tuple[int, ...], sh: int, sw: int, ph: int, pw: int) -> Array:
    """Adjoint of :func:`unfold`: sum ``col`` (N, C, KH, KW, OH, OW) back into (N, C, H, W)."""
    xp = get_array_module(col)
    n, c, kh, kw, oh, ow = col.shape
    h, w = x_shape[2], x_shape[3]
    img = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=col.dtype, device=array_device(col))
    for k, (rows, cols) in enumerate(window_slices(kh, kw, sh, sw, oh, ow)):
        img[:, :, rows, cols] += col[:, :, k // kw, k % kw, :, :]
    if ph == 0 and pw == 0:
        return img
    return img[:, :, ph : ph + h, pw : pw + w]


def _check_window_args(filter_h: int, filter_w: int, stride: IntPair, pad: IntPair) -> tuple[int, ...]:
    kh = check_int("filter_h", filter_h, 1)
    kw = check_int("filter_w", filter_w, 1)
    sh, sw = pair("stride", stride, 1)
    ph, pw = pair("pad", pad, 0)
    return kh, kw, sh, sw, ph, pw


@follows_input_device
def im2col(input_data: Array, filter_h: int, filter_w: int, stride: IntPair = 1, pad: IntPair = 0) -> Array:
    """Unfold ``input_data`` (N, C, H, W) into the book's matrix (N*OH*OW, C*FH*FW).

    Row ``(n*OH + y)*OW + x`` holds the window at output pixel (y, x) of image n, flattened
    in (C, FH, FW) order — the element order of "Deep Learning from Scratch".  The dtype of
    the input is kept (integer inputs stay integer).  ``stride``/``pad`` may be (h, w) pairs.
    """
    check_rank("input_data", input_data, 4, "(N, C, H, W)")
    kh, kw, sh, sw, ph, pw = _check_window_args(filter_h, filter_w, stride, pad)
    window_output_shape(tuple(input_data.shape), kh, kw, sh, sw, ph, pw, name="input_data")
    xp = get_array_module(input_data)
    col = unfold(input_data, kh, kw, sh, sw, ph, pw)
    n, c, _, _, oh, ow = col.shape
    return xp.reshape(xp.permute_dims(col, (0, 4, 5, 1, 2, 3)), (n * oh * ow, c * kh * kw))


@follows_input_device
def col2im(
    col: Array, input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: IntPair = 1, pad: IntPair = 0
) -> Array:
    """Fold the book's matrix ``col`` (N*OH*OW, C*FH*FW) back into an (N, C, H, W) image.

    Overlapping windows are summed, so ``col2im`` is the adjoint (transpose) of
    :func:`im2col`: ``sum(im2col(x) * y) == sum(x * col2im(y, x.shape, ...))``.
    """
    check_rank("col", col, 2, "(N*OH*OW, C*FH*FW)")
    if len(tuple(input_shape)) != 4:
        raise ValueError(f"input_shape: expected (N, C, H, W), got {tuple(input_shape)!r}")
    n, c, h, w = (check_int(f"input_shape[{i}]", v, 1) for i, v in enumerate(input_shape))
    kh, kw, sh, sw, ph, pw = _check_window_args(filter_h, filter_w, stride, pad)
    oh, ow = window_output_shape((n, c, h, w), kh, kw, sh, sw, ph, pw, name="input_shape")
    expected = (n * oh * ow, c * kh * kw)
    if tuple(col.shape) != expected:
        raise ValueError(
            f"col: expected shape (N*OH*OW, C*FH*FW)={expected} for input_shape {(n, c, h, w)}, got {tuple(col.shape)}"
        )
    xp = get_array_module(col)
    col6 = xp.permute_dims(xp.reshape(col, (n, oh, ow, c, kh, kw)), (0, 3, 4, 5, 1, 2))
    return fold(col6, (n, c, h, w), sh, sw, ph, pw)
