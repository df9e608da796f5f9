"""2-D convolution (cross-correlation) as im2col + one matrix product: forward and backward.

Five paths compute the same function (the tests hold them to each other):

* **generic** (any stride, any array library): columns ``(N, C*KH*KW, OH*OW)`` from
  :func:`~cnn_xp.functions.im2col.unfold`, a batched matrix product, and
  :func:`~cnn_xp.functions.im2col.fold` (a sum of strided slices) for the input gradient.
* **flat rows** (stride 1; on the CPU, more than one input channel and a kernel other than 3x3,
  or Winograd turned off): the zero-padded image is read as one long row per channel, so the
  window of kernel offset (i, j) for *all* output pixels is one contiguous run
  ``flat[i*Wp + j : i*Wp + j + OH*Wp]`` -- the copy into the columns moves long contiguous runs
  instead of OW-element pieces.  The price is ``KW - 1`` junk columns per output row (outputs
  at x >= OW), computed and dropped.  Columns are laid out ``(C*KH*KW, N*OH*Wp)`` so the whole
  batch is one matrix product.  The input gradient is the full correlation of the output
  gradient with the flipped kernel -- another flat-rows im2col and one matrix product -- when
  C >= FN, else ``W.T @ dy`` folded back along the same flat rows (whichever moves less data).
* **Winograd** F(2x2, 3x3) (3x3 kernels, stride 1, more than one input channel, on the CPU only):
  :mod:`cnn_xp.functions.winograd`, 16 matrix products of 2.25x fewer multiplications in all;
  with the compiled transforms F(4x4, 3x3) where its tiles need fewer products (36 matrix
  products, 4x fewer multiplications).  Inference (no columns kept) takes only F(4x4, 3x3).
  Its "columns" are the transformed input patches.  On a GPU its dozen element-wise transforms
  would be a dozen kernel launches where the flat rows need one copy, so a GPU keeps the flat
  rows.  ``CNN_XP_WINOGRAD=0`` or :func:`~cnn_xp.functions.fast_paths.direct_convolution`
  turns it off.

* **pointwise** (1x1 kernels, no padding, any stride; every device): no im2col at all -- one
  batched matrix product ``W (FN, C) @ x[n] (C, OH*OW)`` over the images (subsampled first for a
  stride), which gives y in its own layout.
* **strided** (stride > 1; every device): one matrix product for the whole batch, with columns
  ``(C*KH*KW, n*OH*OW)`` copied from one strided view of the padded input (one kernel on a GPU).

The columns of a batch are kept for ``backward`` when they fit in :data:`workspace_limit_bytes`
(a training step).  Otherwise -- inference, or a batch too big -- the batch is worked through in
chunks of :data:`chunk_bytes` of columns, nothing is kept but the input, and ``backward``
recomputes them, so memory stays bounded at any batch size.  Those two limits are the CPU's
(its cache); on a GPU both are :func:`~cnn_xp.backend.gpu_scratch_bytes`, a share of the GPU's
free memory, since there every chunk costs kernel launches rather than cache misses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy  # errstate only: Winograd's overflow is caught and redone by the direct path

from ..backend import (
    array_device,
    follows_input_device,
    get_array_module,
    gpu_scratch_bytes,
    is_gpu_array,
    strided_view,
)
from . import native, winograd
from .conv_utils import window_output_shape
from .fast_paths import fast_paths_enabled, winograd_enabled, winograd_max_tile
from .im2col import fold, pad2d, unfold
from .workspace import Workspace

Array = Any

workspace_limit_bytes = 64 * 2**20
"""Most bytes of im2col columns a convolution keeps for ``backward`` (a training step's batch)."""

chunk_bytes = 4 * 2**20
"""Bytes of columns per chunk when none are kept (inference, or a batch over the limit above):
small enough to stay in cache, large enough for efficient GEMMs (DeepConvNet's inference ran
fastest with 4 MiB among 2 to 32 MiB)."""


@dataclass
class ConvState:
    """What :func:`conv2d_backward` needs from :func:`conv2d_forward`."""

    x: Array  # the input (N, C, H, W), to recompute columns
    stride: tuple[int, int]
    pad: tuple[int, int]
    chunk: int  # images per chunk
    path: str  # which path built the columns: "generic", "flat_rows" or "winograd"
    cols: Array | None  # columns of the last chunk, while still valid
    workspace: Workspace | None  # where the fast paths build their columns
    compact: bool = False  # Winograd: the compiled transforms' layout, no junk tiles (fixed at forward)
    tile: int = 2  # Winograd: output tiles of tile x tile pixels, F(2x2, 3x3) or F(4x4, 3x3) (fixed at forward)
    w_shape: tuple[int, ...] = ()  # the filters' shape at forward: a backward with others is refused


# --------------------------------------------------------------------------- generic path


class _Generic:
    dx_is_new = False  # grads' dx may be a view (of a padded or transposed array)

    @staticmethod
    def col_elems(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, pad: Any) -> int:
        """Column elements per image."""
        _, c, kh, kw = w_shape
        oh, ow = window_output_shape(x_shape, kh, kw, *stride, *pad)
        return c * kh * kw * oh * ow

    @staticmethod
    def cols(x: Array, kh: int, kw: int, st: ConvState, ws: Workspace) -> Array:
        """(n, C*KH*KW, OH*OW) columns of x (n, C, H, W)."""
        xp = get_array_module(x)
        col = unfold(x, kh, kw, *st.stride, *st.pad)
        n, c, _, _, oh, ow = col.shape
        return xp.reshape(col, (n, c * kh * kw, oh * ow))

    @staticmethod
    def product(cols: Array, W: Array, b: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        """(n, FN, OH, OW) output from the columns of x (n, C, H, W)."""
        xp = get_array_module(cols, W)
        fn = W.shape[0]
        oh, ow = window_output_shape(x_shape, W.shape[2], W.shape[3], *st.stride, *st.pad)
        out = xp.matmul(xp.reshape(W, (fn, cols.shape[1])), cols) + xp.reshape(b, (fn, 1))
        return xp.reshape(out, (cols.shape[0], fn, oh, ow))

    @staticmethod
    def grads(
        dy: Array, cols: Array, W: Array, x_shape: tuple[int, ...], st: ConvState, ws: Workspace, need_dx: bool
    ) -> tuple[Array | None, Array]:
        """(dx, dW) of one chunk: dy (n, FN, OH, OW), x_shape (n, C, H, W); dx None unless ``need_dx``."""
        xp = get_array_module(dy, W)
        fn, c, kh, kw = W.shape
        n, oh, ow = dy.shape[0], dy.shape[2], dy.shape[3]
        d = xp.reshape(dy, (n, fn, oh * ow))
        dW = xp.reshape(xp.sum(xp.matmul(d, cols.mT), axis=0), W.shape)
        if not need_dx:
            return None, dW
        dcol = xp.matmul(xp.reshape(W, (fn, c * kh * kw)).mT, d)  # (n, C*KH*KW, OH*OW)
        dx = fold(xp.reshape(dcol, (n, c, kh, kw, oh, ow)), x_shape, *st.stride, *st.pad)
        return dx, dW


# --------------------------------------------------------------------------- flat-rows path (stride 1)


def _flat_padded(x: Array, top: int, left: int, height: int, width: int) -> Array:
    """x (n, C, H, W) zero-padded into (n, C, (height + 1) * width), placed at (top, left).

    The extra row keeps the junk columns of the last output row inside the buffer."""
    xp = get_array_module(x)
    n, c, h, w = x.shape
    buf = xp.zeros((n, c, height + 1, width), dtype=x.dtype, device=array_device(x))
    buf[:, :, top : top + h, left : left + w] = x
    return xp.reshape(buf, (n, c, (height + 1) * width))


def _flat_windows(flat: Array, width: int, kh: int, kw: int, row0: int, rows: int, out: Array) -> Array:
    """Fill ``out`` (A, KH, KW, n, rows*width) from ``flat`` (n, A, S), rows of ``width``:
    ``out[a, i, j, m, :] = flat[m, a, o : o + rows*width]`` with ``o = (row0 + i)*width + j``.

    Where the array library has strided views (NumPy, CuPy, PyTorch) this is one copy of one
    view -- one kernel on a GPU; otherwise one copy per kernel offset (i, j)."""
    xp = get_array_module(flat)
    n, a, size = flat.shape
    length = rows * width
    view = strided_view(xp.reshape(flat, (-1,)), row0 * width, (a, kh, kw, n, length), (size, width, 1, a * size, 1))
    if view is not None:
        out[...] = view
        return out
    src = xp.permute_dims(flat, (1, 0, 2))
    for i in range(kh):
        for j in range(kw):
            o = (row0 + i) * width + j
            out[:, i, j, :, :] = src[:, :, o : o + length]
    return out


class _FlatRows:
    dx_is_new = False

    @staticmethod
    def col_elems(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, pad: Any) -> int:
        """Column elements per image: the larger of the forward columns and, when the input
        gradient is a full correlation (C >= FN), its columns in the same buffer.  (Counting those
        for C < FN too kept SimpleConvNet's first layer, C = 1 and FN = 30, from keeping its
        columns at all: 30x too many, so 1-6 images per chunk, recomputed in backward.)"""
        fn, c, kh, kw = w_shape
        (h, w), (ph, pw) = x_shape[2:], pad
        oh, wp = h + 2 * ph - kh + 1, w + 2 * pw
        correlation = fn * h * (wp + kw - 1) if c >= fn else 0
        return max(c * oh * wp, correlation) * kh * kw

    @staticmethod
    def cols(x: Array, kh: int, kw: int, st: ConvState, ws: Workspace) -> Array:
        """(C*KH*KW, n*OH*Wp) columns of x (n, C, H, W), Wp = W + 2*pad_w (junk columns included)."""
        xp = get_array_module(x)
        n, c, h, w = x.shape
        ph, pw = st.pad
        hp, wp = h + 2 * ph, w + 2 * pw
        oh = hp - kh + 1
        out = ws.take((c, kh, kw, n, oh * wp), like=x)
        _flat_windows(_flat_padded(x, ph, pw, hp, wp), wp, kh, kw, 0, oh, out)
        return xp.reshape(out, (c * kh * kw, n * oh * wp))

    @staticmethod
    def product(cols: Array, W: Array, b: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        xp = get_array_module(cols, W)
        fn = W.shape[0]
        oh, ow = window_output_shape(x_shape, W.shape[2], W.shape[3], *st.stride, *st.pad)
        wp = ow + W.shape[3] - 1
        n = cols.shape[1] // (oh * wp)
        res = xp.matmul(xp.reshape(W, (fn, cols.shape[0])), cols)  # (FN, n*OH*Wp), contiguous
        res += xp.reshape(b, (fn, 1))
        y = xp.empty((n, fn, oh, ow), dtype=res.dtype, device=array_device(res))
        y[...] = xp.permute_dims(xp.reshape(res, (fn, n, oh, wp))[:, :, :, :ow], (1, 0, 2, 3))
        return y  # C-contiguous, as the next layer expects

    @staticmethod
    def grads(
        dy: Array, cols: Array, W: Array, x_shape: tuple[int, ...], st: ConvState, ws: Workspace, need_dx: bool
    ) -> tuple[Array | None, Array]:
        xp = get_array_module(dy, W)
        fn, c, kh, kw = W.shape
        n, h, w = x_shape[0], x_shape[2], x_shape[3]
        oh, ow = dy.shape[2], dy.shape[3]
        ph, pw = st.pad
        wp = ow + kw - 1
        # dW: dy with zeros in the junk columns, against the forward columns
        dyf = xp.zeros((fn, n, oh, wp), dtype=dy.dtype, device=array_device(dy))
        dyf[:, :, :, :ow] = xp.permute_dims(dy, (1, 0, 2, 3))
        d2 = xp.reshape(dyf, (fn, n * oh * wp))
        if not is_gpu_array(dy):  # (cols @ dy.T).T: OpenBLAS runs it faster than dy @ cols.T on
            # DeepConvNet's shapes; a GPU is spared the extra copy kernel.  (Decided by the library,
            # not by where the array lives: array_api_strict's arrays are NumPy's underneath and
            # must take NumPy's product, whose rounding differs between the two orientations.)
            dW = xp.empty(W.shape, dtype=dy.dtype, device=array_device(dy))
            dW[...] = xp.reshape(xp.matmul(cols, d2.mT).mT, W.shape)  # C-contiguous, as the other gradients
        else:
            dW = xp.reshape(xp.matmul(d2, cols.mT), W.shape)
        if not need_dx:
            return None, dW
        if c < fn:
            return _FlatRows.dx_by_fold(dyf, W, x_shape, st), dW
        # dx: full correlation of dy (padded by K-1) with the flipped kernel, rows ph..ph+H of the
        # padded input's gradient only.  The columns reuse the workspace: ``cols`` is spent.
        wq = ow + 2 * (kw - 1)
        flat = _flat_padded(dy, kh - 1, kw - 1, oh + 2 * (kh - 1), wq)
        col2 = _flat_windows(flat, wq, kh, kw, ph, h, ws.take((fn, kh, kw, n, h * wq), like=dy))
        w_flip = xp.reshape(xp.permute_dims(xp.flip(W, axis=(2, 3)), (1, 0, 2, 3)), (c, fn * kh * kw))
        dxp = xp.matmul(w_flip, xp.reshape(col2, (fn * kh * kw, n * h * wq)))  # (C, n*H*Wq)
        dx = xp.reshape(dxp, (c, n, h, wq))[:, :, :, pw : pw + w]
        return xp.permute_dims(dx, (1, 0, 2, 3)), dW

    @staticmethod
    def dx_by_fold(dyf: Array, W: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        """dx as col2im of ``W.T @ dy``: cheaper than the full correlation when C < FN, since
        its columns have C*KH*KW rows instead of FN*KH*KW.  ``dyf`` (FN, n, OH, Wp), junk zeroed."""
        xp = get_array_module(dyf, W)
        fn, c, kh, kw = W.shape
        _, n, oh, wp = dyf.shape
        (_, _, h, w), (ph, pw) = x_shape, st.pad
        dcol = xp.matmul(xp.reshape(W, (fn, c * kh * kw)).mT, xp.reshape(dyf, (fn, n * oh * wp)))
        dcol = xp.reshape(dcol, (c, kh, kw, n, oh * wp))
        rows = oh + kh  # the padded height plus one row for the (zero) junk columns' spill
        flat = xp.zeros((c, n, rows * wp), dtype=dyf.dtype, device=array_device(dyf))
        length = oh * wp
        for i in range(kh):  # fixed order: deterministic sums on every device
            for j in range(kw):
                o = i * wp + j
                flat[:, :, o : o + length] += dcol[:, i, j, :, :]
        dx = xp.reshape(flat, (c, n, rows, wp))[:, :, ph : ph + h, pw : pw + w]
        return xp.permute_dims(dx, (1, 0, 2, 3))


# --------------------------------------------------------------------------- 1x1 convolutions


class _Pointwise:
    """A 1x1 convolution (any stride, no padding) is a matrix product per image, with no im2col:
    y[n] (FN, OH*OW) = W (FN, C) @ x[n] (C, OH*OW) -- x itself for stride 1, its every s-th pixel
    otherwise.  One batched product gives y in its (N, FN, OH, OW) layout, with no transpose."""

    dx_is_new = True

    @staticmethod
    def col_elems(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, pad: Any) -> int:
        oh, ow = window_output_shape(x_shape, 1, 1, stride[0], stride[1], 0, 0)
        return x_shape[1] * oh * ow

    @staticmethod
    def cols(x: Array, kh: int, kw: int, st: ConvState, ws: Workspace) -> Array:
        """x (n, C, OH*OW): a view of x for stride 1, else its subsampled pixels in the workspace."""
        xp = get_array_module(x)
        n, c = x.shape[0], x.shape[1]
        sh, sw = st.stride
        if (sh, sw) == (1, 1):
            return xp.reshape(x, (n, c, x.shape[2] * x.shape[3]))
        oh, ow = window_output_shape(tuple(x.shape), 1, 1, sh, sw, 0, 0)
        out = ws.take((n, c, oh, ow), like=x)
        out[...] = x[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw]
        return xp.reshape(out, (n, c, oh * ow))

    @staticmethod
    def product(cols: Array, W: Array, b: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        xp = get_array_module(cols, W)
        fn, c = W.shape[0], W.shape[1]
        oh, ow = window_output_shape(x_shape, 1, 1, *st.stride, 0, 0)
        y = xp.matmul(xp.reshape(W, (fn, c)), cols)  # (n, FN, OH*OW)
        y += xp.reshape(b, (fn, 1))
        return xp.reshape(y, (cols.shape[0], fn, oh, ow))

    @staticmethod
    def grads(
        dy: Array, cols: Array, W: Array, x_shape: tuple[int, ...], st: ConvState, ws: Workspace, need_dx: bool
    ) -> tuple[Array | None, Array]:
        xp = get_array_module(dy, W)
        fn, c = W.shape[0], W.shape[1]
        n, oh, ow = dy.shape[0], dy.shape[2], dy.shape[3]
        d = xp.reshape(dy, (n, fn, oh * ow))
        dW = xp.reshape(xp.sum(xp.matmul(d, cols.mT), axis=0), W.shape)
        if not need_dx:
            return None, dW
        dcols = xp.matmul(xp.reshape(W, (fn, c)).mT, d)  # (n, C, OH*OW)
        sh, sw = st.stride
        if (sh, sw) == (1, 1):
            return xp.reshape(dcols, x_shape), dW
        dx = xp.zeros(x_shape, dtype=dy.dtype, device=array_device(dy))
        dx[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw] = xp.reshape(dcols, (n, c, oh, ow))
        return dx, dW


# --------------------------------------------------------------------------- strided convolutions


class _Strided:
    """A convolution of stride > 1 as one matrix product for the whole batch: columns
    (C*KH*KW, n*OH*OW), the product (FN, n*OH*OW), and for the input gradient the columns'
    gradient added back to the pixels they read, window offset by window offset in a fixed order
    (deterministic).  On NumPy arrays the compiled kernels build the columns and add them back
    in one pass over each image plane (``_im2col.c``, the same values and sums); elsewhere the
    columns are one copy of a strided view of the padded input (one kernel on a GPU) and their
    gradient is added into a padded array, one offset at a time."""

    dx_is_new = True  # grads' dx is a new C-contiguous (n, C, H, W) array

    @staticmethod
    def col_elems(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, pad: Any) -> int:
        return _Generic.col_elems(x_shape, w_shape, stride, pad)

    @staticmethod
    def cols(x: Array, kh: int, kw: int, st: ConvState, ws: Workspace) -> Array:
        xp = get_array_module(x)
        n, c, h, w = x.shape
        (sh, sw), (ph, pw) = st.stride, st.pad
        oh, ow = window_output_shape(tuple(x.shape), kh, kw, sh, sw, ph, pw)
        out = ws.take((c, kh, kw, n, oh, ow), like=x)
        if native.accepts(x):
            return xp.reshape(native.im2col(x, kh, kw, st.stride, st.pad, out), (c * kh * kw, n * oh * ow))
        hp, wp = h + 2 * ph, w + 2 * pw
        img = xp.reshape(pad2d(x, ph, pw), (-1,))
        view = strided_view(img, 0, (c, kh, kw, n, oh, ow), (hp * wp, wp, 1, c * hp * wp, sh * wp, sw))
        if view is not None:
            out[...] = view
        else:  # a library without strided views: one copy per kernel offset
            padded = xp.permute_dims(xp.reshape(img, (n, c, hp, wp)), (1, 0, 2, 3))
            for i in range(kh):
                for j in range(kw):
                    out[:, i, j, ...] = padded[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
        return xp.reshape(out, (c * kh * kw, n * oh * ow))

    @staticmethod
    def product(cols: Array, W: Array, b: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        xp = get_array_module(cols, W)
        fn, n = W.shape[0], x_shape[0]
        oh, ow = window_output_shape(x_shape, W.shape[2], W.shape[3], *st.stride, *st.pad)
        res = xp.matmul(xp.reshape(W, (fn, cols.shape[0])), cols)  # (FN, n*OH*OW)
        res += xp.reshape(b, (fn, 1))
        y = xp.empty((n, fn, oh, ow), dtype=res.dtype, device=array_device(res))
        y[...] = xp.permute_dims(xp.reshape(res, (fn, n, oh, ow)), (1, 0, 2, 3))
        return y

    @staticmethod
    def grads(
        dy: Array, cols: Array, W: Array, x_shape: tuple[int, ...], st: ConvState, ws: Workspace, need_dx: bool
    ) -> tuple[Array | None, Array]:
        xp = get_array_module(dy, W)
        fn, c, kh, kw = W.shape
        n, oh, ow = dy.shape[0], dy.shape[2], dy.shape[3]
        d2 = xp.empty((fn, n, oh, ow), dtype=dy.dtype, device=array_device(dy))
        d2[...] = xp.permute_dims(dy, (1, 0, 2, 3))
        d2 = xp.reshape(d2, (fn, n * oh * ow))
        dW = xp.reshape(xp.matmul(d2, cols.mT), W.shape)
        if not need_dx:
            return None, dW
        dcols = xp.reshape(xp.matmul(xp.reshape(W, (fn, c * kh * kw)).mT, d2), (c, kh, kw, n, oh, ow))
        if native.accepts(dcols):
            return native.col2im(dcols, x_shape, kh, kw, st.stride, st.pad), dW
        (sh, sw), (ph, pw) = st.stride, st.pad
        h, w = x_shape[2], x_shape[3]
        dxp = xp.zeros((c, n, h + 2 * ph, w + 2 * pw), dtype=dy.dtype, device=array_device(dy))
        for i in range(kh):  # fixed order: deterministic sums on every device
            for j in range(kw):
                dxp[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw] += dcols[:, i, j, ...]
        dx = xp.empty(x_shape, dtype=dy.dtype, device=array_device(dy))
        dx[...] = xp.permute_dims(dxp[:, :, ph : ph + h, pw : pw + w], (1, 0, 2, 3))
        return dx, dW


# --------------------------------------------------------------------------- Winograd path (3x3, stride 1, CPU)


winograd_block_tiles = 500
"""Fewest tiles per block of the Winograd path's products (smaller ones ran slower)."""

winograd_block_bytes = 2**20
"""Most bytes of transformed patches per block: a block's patches and products stay in a core's
L2 cache instead of going to memory, which the other thread's shard is using too (faster than
one block per shard on DeepConvNet's layers, two threads at once)."""


winograd_group_images = 8
"""F(4x4, 3x3): images per block are a multiple of this (unless the batch is smaller).  Its
compiled transforms loop across a block's images, so a whole number of vector registers (8
floats in AVX2, half of AVX-512's 16) leaves no element to a scalar remainder loop."""


def _winograd_block_size(
    t: winograd.Tiling, itemsize: int, block_tiles: int, block_bytes: int, group_images: int
) -> int:
    """Images per block: at least ``block_tiles`` tiles (:data:`winograd_block_tiles`), and at
    most ``block_bytes`` (:data:`winograd_block_bytes`) of transformed patches unless that is
    fewer tiles; for F(4x4, 3x3) then rounded up to a multiple of ``group_images``
    (:data:`winograd_group_images`), and no more than the batch."""
    per_image = t.th * t.row_tiles
    size = max(1, -(-block_tiles // per_image), block_bytes // (t.k * t.c * per_image * itemsize))
    if t.m == 4:
        size = max(1, min(-(-size // group_images) * group_images, t.n))
    return size


Blocks = tuple[tuple[slice, slice, winograd.Tiling], ...]


@functools.lru_cache(maxsize=512)
def _winograd_geometry(
    x_shape: tuple[int, ...], pad: tuple[int, int], compact: bool, tile: int, itemsize: int, block_tiles: int,
    block_bytes: int, group_images: int = 1,
) -> tuple[winograd.Tiling, Blocks]:  # fmt: skip
    """The tiling of a convolution of x (n, C, H, W) and its blocks of images: per block its
    images (a slice of the batch axis), its tiles (a slice of V's and M's last axis) and its own
    tiling.  For F(4x4, 3x3) the groups of images are the blocks (the compiled transforms order
    the tiles of each group image-innermost).  Pure and cached: a layer asks for the same shapes
    three times a step (the forward's two halves and the backward), every step."""
    t = winograd.tiling(x_shape, pad, compact, tile)
    size = _winograd_block_size(t, itemsize, block_tiles, block_bytes, group_images)
    if t.m == 4:
        t = replace(t, group=size)
    per_image = t.th * t.row_tiles
    blocks = tuple(
        (slice(s, e), slice(s * per_image, e * per_image), replace(t, n=e - s))
        for s, e in ((s, min(s + size, t.n)) for s in range(0, t.n, size))
    )
    return t, blocks


def _winograd_blocks(x_shape: tuple[int, ...], st: ConvState, xp: Any, dtype: Any) -> tuple[winograd.Tiling, Blocks]:
    """:func:`_winograd_geometry` of a convolution of x (n, C, H, W) run with state ``st``, at
    the block sizes set now."""
    itemsize = xp.finfo(dtype).bits // 8
    pad = (st.pad[0], st.pad[1])
    return _winograd_geometry(
        tuple(x_shape),
        pad,
        st.compact,
        st.tile,
        itemsize,
        winograd_block_tiles,
        winograd_block_bytes,
        winograd_group_images,
    )


class _Winograd:
    dx_is_new = True  # grads' dx is a new C-contiguous (n, C, H, W) array

    @staticmethod
    def col_elems(x_shape: tuple[int, ...], w_shape: tuple[int, ...], stride: Any, pad: Any) -> int:
        """Transformed-input elements per image: F(2x2, 3x3)'s 16 * C * tiles, at least F(4x4, 3x3)'s."""
        return winograd.tile_elems(x_shape, pad)

    @staticmethod
    def cols(x: Array, kh: int, kw: int, st: ConvState, ws: Workspace) -> Array:
        """V (K, C, T): the transformed input patches (4x4) of x (n, C, H, W) -- or for F(4x4, 3x3)
        x itself: its products and gradients transform each block of images as they use it, while
        the block's 6x6 patches are in cache (:func:`_block_patches`), and keep none."""
        xp = get_array_module(x)
        t, _ = _winograd_blocks(tuple(x.shape), st, xp, x.dtype)
        if t.m == 4:
            return x
        return winograd.transform_input(x, t, ws.take((winograd.input_elems(t, xp.finfo(x.dtype).bits // 8),), like=x))

    @staticmethod
    def product(cols: Array, W: Array, b: Array, x_shape: tuple[int, ...], st: ConvState) -> Array:
        """y (n, FN, OH, OW), block by block of images (see :func:`_winograd_block_size`)."""
        xp = get_array_module(cols, W)
        t, blocks = _winograd_blocks(x_shape, st, xp, cols.dtype)
        U = winograd.transform_filters(W, t.m)
        patches = _block_patches(cols, t, blocks)
        if len(blocks) == 1:
            return winograd.transform_output(winograd.products(U, patches(*blocks[0]), t), b, t)
        y = xp.empty((t.n, W.shape[0], t.oh, t.ow), dtype=cols.dtype, device=array_device(cols))
        for images, tiles, block in blocks:  # each block's output straight into its images of y
            V = patches(images, tiles, block)
            winograd.transform_output(winograd.products(U, V, block), b, block, out=y[images, ...])
        return y

    @staticmethod
    def grads(
        dy: Array, cols: Array, W: Array, x_shape: tuple[int, ...], st: ConvState, ws: Workspace, need_dx: bool
    ) -> tuple[Array | None, Array]:
        xp = get_array_module(dy, W)
        fn, c = W.shape[0], W.shape[1]
        t, blocks = _winograd_blocks(x_shape, st, xp, cols.dtype)
        Ut = winograd.transform_filters(W, t.m).mT if need_dx else None
        dx = xp.empty(x_shape, dtype=dy.dtype, device=array_device(dy)) if need_dx and len(blocks) > 1 else None
        patches = _block_patches(cols, t, blocks)
        dU = None
        for images, tiles, block in blocks:
            V = patches(images, tiles, block)
            dM = winograd.output_gradient(dy[images, ...], block)  # (K, FN, T)
            dUb = xp.matmul(dM, V.mT)
            dU = dUb if dU is None else dU + dUb
            if Ut is not None:
                dV = winograd.products(Ut, dM, block)  # (K, C, T)
                if dx is None:  # one block: its dx is the batch's
                    dx = winograd.input_gradient(dV, block)
                else:  # straight into its images of dx
                    winograd.input_gradient(dV, block, out=dx[images, ...])
        assert dU is not None  # one block at least (the batch is not empty here)
        return dx, winograd.filter_gradient(dU, fn, c)


def _block_patches(cols: Array, t: winograd.Tiling, blocks: Blocks) -> Callable[[slice, slice, winograd.Tiling], Array]:
    """``patches(images, tiles, block)``: V (K, C, T) of one block of :meth:`_Winograd.cols`.
    F(2x2, 3x3): the batch's V, sliced.  F(4x4, 3x3): cols is x, and each block's patches are
    transformed when asked for, into one buffer that every block reuses -- a block's 6x6 patches
    are 2.25 times its pixels, and the batch's (a layer's, kept from the forward to the backward)
    would be written to memory and read back from it twice, where a block's stay in the core's
    cache between their transform and their products."""
    if t.m != 4:
        return lambda images, tiles, block: cols[:, :, tiles]
    xp = get_array_module(cols)
    itemsize = xp.finfo(cols.dtype).bits // 8
    size = winograd.input_elems(blocks[0][2], itemsize) if blocks else 0  # (the first block is the largest)
    buf = xp.empty((size,), dtype=cols.dtype, device=array_device(cols))
    return lambda images, tiles, block: winograd.transform_input(cols[images, ...], block, buf)


def _winograd_tile(x_shape: tuple[int, ...], pad: tuple[int, int]) -> int:
    """The output tile of a Winograd convolution run by the compiled transforms: 4 (F(4x4, 3x3))
    where it takes fewer products than F(2x2, 3x3) -- every one of DeepConvNet's 3x3 layers; on
    8x8 outputs 144 against 256 per channel pair -- unless :func:`winograd_max_tile` says 2."""
    return 2 if winograd_max_tile() < 4 else _fewer_products_tile(tuple(x_shape), tuple(pad))


@functools.lru_cache(maxsize=512)
def _fewer_products_tile(x_shape: tuple[int, ...], pad: tuple[int, int]) -> int:
    """4 or 2: the tile whose products are fewer (pure, cached: asked at every forward)."""
    small, large = (winograd.tiling(x_shape, pad, True, m) for m in (2, 4))
    return 4 if large.k * large.tiles < small.k * small.tiles else 2


_PATHS: dict[str, Any] = {
    "generic": _Generic,
    "flat_rows": _FlatRows,
    "winograd": _Winograd,
    "pointwise": _Pointwise,
    "strided": _Strided,
}


def _choose_path(x: Array, W: Array, stride: Any, pad: Any, gpu_bytes: int | None, keep_elems: int) -> str:
    """Which path computes this convolution (see the module's docstring).  ``keep_elems``: how
    many column elements the batch may keep for ``backward`` (0: none, as in inference)."""
    if not fast_paths_enabled():
        return "generic"
    if tuple(W.shape[2:]) == (1, 1) and tuple(pad) == (0, 0):
        return "pointwise"  # a matrix product per image, no im2col
    if tuple(stride) != (1, 1):
        return "strided"
    host, c = gpu_bytes is None, W.shape[1]
    # Winograd in training, where the batch's transformed patches are kept for backward.  In
    # inference (nothing kept: worked through in chunks) only F(4x4, 3x3): there F(2x2, 3x3)'s
    # transforms cost more than its saved products, F(4x4, 3x3)'s do not.
    tiles_fit = x.shape[0] * _Winograd.col_elems(tuple(x.shape), W.shape, stride, pad) <= keep_elems
    large_tiles = keep_elems == 0 and native.accepts(x) and _winograd_tile(tuple(x.shape), tuple(pad)) == 4
    if host and c > 1 and tuple(W.shape[2:]) == (3, 3) and winograd_enabled() and (tiles_fit or large_tiles):
        return "winograd"
    # The flat rows -- on the CPU except for one input channel (a network's data layer): its
    # columns have only KH*KW rows, too few for one long product to beat one product per image.
    # A GPU keeps the flat rows: one copy kernel, not KH*KW.
    return "flat_rows" if c > 1 or not host else "generic"


# --------------------------------------------------------------------------- the two entry points


@follows_input_device
def conv2d_forward(
    x: Array,
    W: Array,
    b: Array | None,
    stride: tuple[int, int],
    pad: tuple[int, int],
    *,
    workspace: Workspace | None = None,
    keep_cols: bool = True,
) -> tuple[Array, ConvState]:
    """y (N, FN, OH, OW) = x (N, C, H, W) correlated with W (FN, C, KH, KW), plus b (FN,) (None: no bias).

    Arguments are assumed checked and x already has W's dtype.  ``workspace`` holds the
    flat-rows columns between calls (a temporary one is used if None); it is used, and grows,
    only to keep the columns of a batch that fits in :data:`workspace_limit_bytes`.
    ``keep_cols=False`` (inference) keeps no columns and leaves ``workspace`` alone:
    ``backward`` recomputes them.  Returns y and the state for
    :func:`conv2d_backward`.

    Where Winograd's compiled transforms give a non-finite value (an input or a product beyond
    float range, or an inf meeting their sums), the call is computed again by the direct path,
    whose inf and NaN are those of the convolution's definition (and PyTorch's).
    """
    xp = get_array_module(x, W)
    fn = W.shape[0]
    if b is None:  # no bias: the paths add zeros (one small array, not a second code path each)
        b = xp.zeros((fn,), dtype=W.dtype, device=array_device(W))
    gpu_bytes = gpu_scratch_bytes(x)  # a GPU's budget is its free memory, not a CPU cache
    itemsize = xp.finfo(x.dtype).bits // 8
    budget = (workspace_limit_bytes if gpu_bytes is None else gpu_bytes) // itemsize
    name = _choose_path(x, W, stride, pad, gpu_bytes, budget if keep_cols else 0)
    if name != "winograd":
        return _forward(x, W, b, stride, pad, name, workspace, keep_cols, gpu_bytes, budget)
    try:
        with numpy.errstate(all="ignore"):  # (host arrays only: an overflow here is caught below)
            return _forward(x, W, b, stride, pad, name, workspace, keep_cols, gpu_bytes, budget)
    except native.NonFiniteResult:
        return _forward(x, W, b, stride, pad, "flat_rows", workspace, keep_cols, gpu_bytes, budget)


def _forward(
    x: Array, W: Array, b: Array, stride: Any, pad: Any, name: str, workspace: Workspace | None, keep_cols: bool,
    gpu_bytes: int | None, budget: int,
) -> tuple[Array, ConvState]:  # fmt: skip
    xp = get_array_module(x, W)
    fn, _, kh, kw = W.shape
    n = x.shape[0]
    oh, ow = window_output_shape(tuple(x.shape), kh, kw, *stride, *pad)
    itemsize = xp.finfo(x.dtype).bits // 8
    path = _PATHS[name]
    per_image = path.col_elems(tuple(x.shape), W.shape, stride, pad)
    keep = keep_cols and n * per_image <= budget
    ws = workspace if workspace is not None else Workspace()
    if not keep:
        # Inference, or a batch too big to keep its columns: chunks in a temporary buffer -- on
        # the CPU cache-sized (small enough for malloc to recycle) -- never the caller's
        # workspace, so concurrent no_grad() forwards through one layer share no scratch memory.
        budget, ws = (chunk_bytes if gpu_bytes is None else gpu_bytes) // itemsize, Workspace()
    chunk = max(1, min(n, budget // per_image))
    compact = name == "winograd" and native.accepts(x)  # products without junk tiles
    tile = _winograd_tile(tuple(x.shape), (pad[0], pad[1])) if compact else 2
    state = ConvState(
        x, (stride[0], stride[1]), (pad[0], pad[1]), chunk, name, None, ws if ws is workspace else None, compact, tile,
        tuple(int(d) for d in W.shape),
    )  # fmt: skip
    if chunk >= n:  # one chunk: the product is the output (no copy into y)
        cols = path.cols(x, kh, kw, state, ws)
        state.cols = cols if keep else None
        return path.product(cols, W, b, tuple(x.shape), state), state
    y = xp.empty((n, fn, oh, ow), dtype=x.dtype, device=array_device(x))
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        y[s:e, ...] = path.product(path.cols(x[s:e, ...], kh, kw, state, ws), W, b, (e - s, *x.shape[1:]), state)
    return y, state


@follows_input_device
def conv2d_backward(
    dy: Array, W: Array, state: ConvState, need_dx: bool = True, need_db: bool = True
) -> tuple[Array | None, Array, Array | None]:
    """(dx, dW, db) from dy (N, FN, OH, OW) and the state of the matching forward.

    ``need_dx=False`` skips the input gradient (dx is None): a network's first layer, whose
    input is data, needs only dW and db -- as PyTorch skips inputs that do not require grad.
    ``need_db=False`` skips the bias gradient (db is None; a pass over dy): a convolution
    without a bias.
    A Winograd backward that gives a non-finite value is computed again by the direct path."""
    xp = get_array_module(dy, W)
    x = state.x
    if state.w_shape and tuple(W.shape) != state.w_shape:
        raise ValueError(f"W: has shape {tuple(W.shape)} but the forward ran with {state.w_shape}")
    n, kh, kw = x.shape[0], W.shape[2], W.shape[3]
    expected = (n, W.shape[0], *window_output_shape(tuple(x.shape), kh, kw, *state.stride, *state.pad))
    if tuple(dy.shape) != expected:
        raise ValueError(f"dy: expected shape {expected} (the forward's output), got {tuple(dy.shape)}")
    db = xp.sum(dy, axis=(0, 2, 3)) if need_db else None
    if state.path == "winograd":
        try:
            with numpy.errstate(all="ignore"):
                dx, dW = _backward(dy, W, state, need_dx)
            if xp.all(xp.isfinite(dW)):  # (dW is small: a cheap look; dx's transforms counted theirs)
                return dx, dW, db
        except native.NonFiniteResult:
            pass
        state.path, state.cols, state.workspace = "flat_rows", None, None  # the direct path, from x
    dx, dW = _backward(dy, W, state, need_dx)
    return dx, dW, db


def _backward(dy: Array, W: Array, state: ConvState, need_dx: bool) -> tuple[Array | None, Array]:
    xp = get_array_module(dy, W)
    x = state.x
    n, kh, kw = x.shape[0], W.shape[2], W.shape[3]
    path = _PATHS[state.path]
    if n == 0:
        dW = xp.zeros(W.shape, dtype=W.dtype, device=array_device(W))
    # one chunk (a training step) whose dx is an array of its own: that is the batch's dx, no copy
    own_dx = n > 0 and state.chunk >= n and path.dx_is_new
    dx = xp.empty(x.shape, dtype=dy.dtype, device=array_device(dy)) if need_dx and not own_dx else None
    ws = state.workspace if state.workspace is not None else Workspace()
    for s in range(0, n, state.chunk):
        e = min(s + state.chunk, n)
        cols = state.cols if state.cols is not None else path.cols(x[s:e, ...], kh, kw, state, ws)
        dxc, dWc = path.grads(dy[s:e, ...], cols, W, (e - s, *x.shape[1:]), state, ws, need_dx)
        if own_dx:
            dx = dxc
        elif dx is not None:
            dx[s:e, ...] = dxc
        dW = dWc if s == 0 else dW + dWc  # one chunk: no zeros, no add
    if state.path == "flat_rows" and need_dx and W.shape[1] >= W.shape[0]:
        state.cols = None  # the full correlation's columns overwrote them in the workspace
    return dx, dW
