"""Winograd F(2x2, 3x3) and F(4x4, 3x3): a 3x3, stride-1 convolution with 2.25x or 4x fewer
multiplications.

Each 2x2 block of output pixels (a *tile*) is computed from the 4x4 input patch under it as
``A^T [(G g G^T) * (B^T d B)] A`` (Lavin & Gray, "Fast Algorithms for Convolutional Neural
Networks", 2015): 16 products per tile and channel pair instead of 36.  Summed over input
channels, the 16 element-wise products become 16 matrix products

    M[k] (FN, T) = U[k] (FN, C) @ V[k] (C, T),   k = 0..15,

with U the transformed filters and V the transformed input patches of all T tiles.  The
transforms are additions and subtractions; the products are where the time goes.

The backward pass is the exact adjoint of the forward's linear steps (no second algorithm):
``dM`` is the output transform's adjoint applied to ``dy``, ``dU = dM @ V^T`` gives the filter
gradient through ``G^T dU G``, and ``dV = U^T @ dM`` goes back through the input transform's
adjoint to ``dx``.

**Layout.**  Everything stays in long contiguous runs, so that each step is a few passes over
memory rather than many short loops: the zero-padded input is kept as one long row per channel
and image, its even and odd rows apart (``(C, n, 2, TH + 1, Wp)``); a tile row holds
``T1 = TW + 1`` tiles of which the last one is junk (it straddles two rows), computed and dropped
as the flat-rows im2col path drops its junk columns.  Tiles are ordered (image, tile row, tile
column).

**Accuracy.**  The transforms use only 0, +-1 and +-1/2, so the float32 result differs from the
exact one by rounding only.  On DeepConvNet's five 3x3 layer shapes (8 images, N(0, 1) inputs
and output gradients, He-scaled filters) the largest error of y, dx and dW against a float64
reference, relative to that array's largest magnitude, was 1.6e-7 to 4.8e-7; the direct path's
was 1.7e-7 to 5.7e-7.  ``tests/functions/test_winograd.py`` holds both paths to 2e-6 there.

The functions are written against the array API, but the convolution takes this path only for
host arrays: on a GPU its dozen element-wise steps would be a dozen kernel launches where the
flat-rows path needs one copy (see :mod:`cnn_xp.functions.conv2d`).  On NumPy arrays the four
transforms hand over to their compiled twins in :mod:`cnn_xp.functions.native` where those were
built: the same operations in the same order, one image plane at a time, bit for bit the same
results as the passes below (which stay the reference, and the path everywhere else).

**F(4x4, 3x3).**  The same scheme with 4x4 output tiles from 6x6 input patches: 36 products per
tile and channel pair instead of 144, so 36 matrix products with a quarter of the tiles
(``Tiling(m=4)``, ``K = 36``).  Its transforms exist only compiled (``_winograd4.c``, a group of
images at a time, tiles ordered (group, tile row, tile column, image); no junk tiles; V, M and
their gradients laid out as 36 planes a cache line past whole pages apart,
:func:`cnn_xp.functions.native.planes`, which :func:`products` writes), so the
convolution takes it only where those run, and only where it needs fewer products than
F(2x2, 3x3) (:func:`cnn_xp.functions.conv2d._winograd_tile`).  Its transforms hold +-4, +-5,
+-8 and 1/24: float32 results round more.  On the shapes above (three seeds) the error of y,
dx and dW was 1.5e-6 to 7.7e-6 of the largest magnitude, about ten times F(2x2, 3x3)'s;
``tests/functions/test_winograd4.py`` holds it to 2e-5.  ``CNN_XP_WINOGRAD=2`` or
:func:`~cnn_xp.functions.fast_paths.small_winograd_tiles` keeps to F(2x2, 3x3).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from ..backend import array_device, combine_into, get_array_module
from . import native

Array = Any

# F(2x2, 3x3) (Lavin & Gray 2015): y = A^T [(G g G^T) * (B^T d B)] A.  B^T and A^T are spelled
# out as additions in the code below.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))
# F(4x4, 3x3)'s G (points 0, 1, -1, 2, -2, infinity); its B^T and A^T are in _winograd4.c.
_G4 = (
    (1 / 4, 0.0, 0.0),
    (-1 / 6, -1 / 6, -1 / 6),
    (-1 / 6, 1 / 6, -1 / 6),
    (1 / 24, 1 / 12, 1 / 6),
    (1 / 24, -1 / 12, 1 / 6),
    (0.0, 0.0, 1.0),
)


def _kron(g: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
    """G g G^T of a filter g as one (K, 9) matrix, kron(G, G): u[r * i + j] = sum_km G[i][k] G[j][m] g[3k + m].

    All filters of a layer are then one matrix product, not thousands of tiny ones (4x3 by 3x3,
    each a BLAS call costing more than its arithmetic)."""
    r = range(len(g))
    return tuple(tuple(g[i][k] * g[j][m] for k in range(3) for m in range(3)) for i in r for j in r)


_GG = {2: _kron(_G), 4: _kron(_G4)}


@dataclass(frozen=True)
class Tiling:
    """The tile geometry of a 3x3 stride-1 convolution of x (n, C, H, W) padded by (ph, pw),
    in output tiles of m x m pixels: F(2x2, 3x3) (m = 2) or F(4x4, 3x3) (m = 4).

    ``compact``: V and M hold no junk tiles (``row_tiles = t1 - 1`` per tile row), a layout only
    the compiled transforms (:mod:`cnn_xp.functions.native`) read and write; the NumPy passes
    need the junk tiles.  F(4x4, 3x3) has compiled transforms only, always compact."""

    n: int
    c: int
    h: int
    w: int
    ph: int
    pw: int
    compact: bool = False
    m: int = 2
    group: int = 0

    def __post_init__(self) -> None:
        if self.m not in (2, 4) or (self.m == 4 and not self.compact):
            raise ValueError(f"m: expected 2, or 4 with compact=True, got m={self.m!r}, compact={self.compact!r}")

    @functools.cached_property
    def nb(self) -> int:
        """F(4x4, 3x3): images per group (``group``, or all n if 0); V and M order their tiles
        (group, tile row, tile column, image in the group)."""
        return max(1, self.group or self.n)

    @functools.cached_property
    def k(self) -> int:
        """Transformed elements per tile and channel: the (m + 2) x (m + 2) input patch."""
        return (self.m + 2) ** 2

    @functools.cached_property
    def oh(self) -> int:
        return self.h + 2 * self.ph - 2

    @functools.cached_property
    def ow(self) -> int:
        return self.w + 2 * self.pw - 2

    @functools.cached_property
    def th(self) -> int:
        """Tile rows: ceil(OH / m)."""
        return (self.oh + self.m - 1) // self.m

    @functools.cached_property
    def t1(self) -> int:
        """Tiles per tile row, the junk one included: ceil(OW / m) + 1."""
        return (self.ow + self.m - 1) // self.m + 1

    @functools.cached_property
    def wp(self) -> int:
        """Width of the padded rows, 2 * t1 >= W + 2 * pw (F(2x2, 3x3))."""
        return 2 * self.t1

    @functools.cached_property
    def row_tiles(self) -> int:
        """Tiles per tile row in V and M: t1, or t1 - 1 when compact."""
        return self.t1 - 1 if self.compact else self.t1

    @functools.cached_property
    def tiles(self) -> int:
        """Tiles per channel in V and M, over all images."""
        return self.n * self.th * self.row_tiles


def tiling(x_shape: tuple[int, ...], pad: tuple[int, int], compact: bool = False, m: int = 2) -> Tiling:
    n, c, h, w = x_shape
    return Tiling(n, c, h, w, pad[0], pad[1], compact, m)


def tile_elems(x_shape: tuple[int, ...], pad: tuple[int, int]) -> int:
    """Elements of F(2x2, 3x3)'s transformed input V per image, junk tiles included: 16 * C * TH * T1
    (at least F(4x4, 3x3)'s wherever that is used)."""
    return _tile_elems(tuple(int(d) for d in x_shape[1:]), (int(pad[0]), int(pad[1])))


@functools.lru_cache(maxsize=512)
def _tile_elems(image_shape: tuple[int, ...], pad: tuple[int, int]) -> int:  # (asked at every forward)
    t = tiling((1, *image_shape), pad)
    return 16 * t.c * t.tiles


def input_elems(t: Tiling, itemsize: int) -> int:
    """Elements of the flat buffer :func:`transform_input` writes V into: K * C * T, or for
    F(4x4, 3x3) those of its planes (:func:`cnn_xp.functions.native.planes`)."""
    return native.planes_elems(t.k, t.c, t.tiles, itemsize) if t.m == 4 else t.k * t.c * t.tiles


def products(A: Array, B: Array, t: Tiling) -> Array:
    """A @ B plane by plane, (K, P, Q) @ (K, Q, T) -> (K, P, T): M = U @ V in the forward,
    dV = U^T @ dM in the backward.  For F(4x4, 3x3) the result is laid out as its compiled
    transforms read it (:func:`cnn_xp.functions.native.planes`)."""
    if t.m == 4:
        return native.matmul_planes(A, B)
    return get_array_module(A, B).matmul(A, B)


def _row_spans(pad: int, size: int, parity: int) -> tuple[int, int, int]:
    """Padded rows of ``parity`` that hold data: half-rows [start, stop) and the first source row."""
    start = (pad - parity + 1) // 2
    stop = (pad + size - parity + 1) // 2
    return start, stop, parity + 2 * start - pad


# --------------------------------------------------------------------------- filters


@functools.lru_cache(maxsize=64)
def _gg_cached(xp: Any, m: int, dtype: Any, device: Any) -> Array:
    gg = xp.asarray(_GG[m], dtype=dtype, device=device)
    if hasattr(gg, "flags"):
        gg.flags.writeable = False  # shared by every call: nobody may change it
    return gg


def _gg(xp: Any, m: int, like: Array) -> Array:
    """The (K, 9) table of :func:`transform_filters` in ``like``'s dtype, on its device: made
    once per (dtype, device) where that is hashable (a host array: every convolution's step
    would otherwise convert the nested tuples again)."""
    device = array_device(like)
    try:
        return _gg_cached(xp, m, like.dtype, device)
    except TypeError:  # an unhashable device or dtype: made each call
        return xp.asarray(_GG[m], dtype=like.dtype, device=device)


def transform_filters(W: Array, m: int = 2) -> Array:
    """U (K, FN, C) = G g G^T of each filter g of W (FN, C, 3, 3); K = 16 (m = 2) or 36 (m = 4)."""
    xp = get_array_module(W)
    fn, c = W.shape[0], W.shape[1]
    gg = _gg(xp, m, W)
    return xp.reshape(xp.matmul(gg, xp.reshape(W, (fn * c, 9)).mT), (gg.shape[0], fn, c))


def filter_gradient(dU: Array, fn: int, c: int) -> Array:
    """dW (FN, C, 3, 3) = G^T dU G: the adjoint of :func:`transform_filters`, dU (K, FN, C)."""
    xp = get_array_module(dU)
    k = dU.shape[0]
    gg = _gg(xp, 2 if k == 16 else 4, dU)
    return xp.reshape(xp.matmul(xp.reshape(dU, (k, fn * c)).mT, gg), (fn, c, 3, 3))


# --------------------------------------------------------------------------- input


def _bt(d: list[Array], out: Array) -> None:
    """out[0..3] = B^T (d0, d1, d2, d3): d0 - d2, d1 + d2, d2 - d1, d1 - d3."""
    combine_into(out[0, ...], d[0], d[2], -1)
    combine_into(out[1, ...], d[1], d[2])
    combine_into(out[2, ...], d[2], d[1], -1)
    combine_into(out[3, ...], d[1], d[3], -1)


def _bt_adjoint(g: list[Array], even: Array, odd: Array, xp: Any, axis: int = 1) -> None:
    """The adjoint of :func:`_bt` over a row of overlapping patches, patch j reading inputs
    2j..2j+3: the gradients g0..g3 (..., P, ...) of its outputs, patch axis ``axis``, are summed
    into ``even`` and ``odd`` (..., P + 1, ...) or (..., P, ...), the gradients of inputs 2j and 2j + 1.

    Input 2j is patch j's d0 and patch j-1's d2; input 2j+1 is patch j's d1 and patch j-1's d3.
    With P + 1 places the last one takes only the last patch's d2, d3; with P (a flat row whose
    last patch is junk, its gradients zero) those fall past the end and are dropped."""
    g0, g1, g2, g3 = g
    p, places = g0.shape[axis], even.shape[axis]
    lead = (slice(None),) * axis
    # d0 = g0 and d1 = g1 - g2 + g3 go straight to their places; d2 = g1 + g2 - g0 and d3 = -g3
    # are added one place further on
    even[(*lead, slice(0, p), ...)] = g0
    d1 = odd[(*lead, slice(0, p), ...)]
    combine_into(d1, g1, g2, -1)
    combine_into(d1, d1, g3)
    d2 = xp.empty_like(g0)
    combine_into(d2, g1, g2)
    combine_into(d2, d2, g0, -1)
    if places > p:
        even[(*lead, p, ...)] = 0
        odd[(*lead, p, ...)] = 0
    later, earlier = (*lead, slice(1, places), ...), (*lead, slice(0, places - 1), ...)
    combine_into(even[later], even[later], d2[earlier])
    combine_into(odd[later], odd[later], g3[earlier], -1)


def transform_input(x: Array, t: Tiling, out: Array) -> Array:
    """V (16, C, T) = B^T d B of every 4x4 input patch d, written into ``out`` (flat,
    :func:`input_elems` elements; F(4x4, 3x3): V (36, C, T) by the compiled kernels).

    x (n, C, H, W).  Rows first (B^T d), then columns (. B), each a handful of passes."""
    if t.compact or native.accepts(x):  # compact: the compiled kernels' own layout
        return native.transform_input(x, t, out)
    xp = get_array_module(x)
    dev = array_device(x)
    c, n, th, wp = t.c, t.n, t.th, t.wp
    z = xp.zeros((c, n, 2, th + 1, wp), dtype=x.dtype, device=dev)
    xt = xp.permute_dims(x, (1, 0, 2, 3))
    for parity in (0, 1):
        start, stop, src = _row_spans(t.ph, t.h, parity)
        z[:, :, parity, start:stop, t.pw : t.pw + t.w] = xt[:, :, src::2, :]
    d = [z[:, :, k % 2, k // 2 : k // 2 + th, :] for k in range(4)]
    half = c * n * th * wp  # one row-transformed plane
    r = xp.empty((4 * half + 2,), dtype=x.dtype, device=dev)
    r[4 * half :] = 0  # read only by the last junk tile
    rows = xp.reshape(r[: 4 * half], (4, c, n, th, wp))
    _bt(d, rows)
    length = c * t.tiles
    v = xp.reshape(out, (4, 4, length))
    for a in range(4):
        _bt([r[a * half + k : a * half + k + 2 * length - 1 : 2] for k in range(4)], v[a, ...])
    return xp.reshape(out, (16, c, t.tiles))


def input_gradient(dV: Array, t: Tiling, out: Array | None = None) -> Array:
    """dx (n, C, H, W) from dV (16, C, T): the adjoint of :func:`transform_input`; written into
    ``out`` (an (n, C, H, W) array) if given."""
    if t.compact or native.accepts(dV):  # compact: the compiled kernels' own layout
        return native.input_gradient(dV, t, out)
    if out is not None:  # the passes below make their own array
        out[...] = input_gradient(dV, t)
        return out
    xp = get_array_module(dV)
    dev = array_device(dV)
    c, n, th, wp = t.c, t.n, t.th, t.wp
    length = c * t.tiles
    v = xp.reshape(dV, (4, 4, length))
    # columns: the patches' gradients through B^T's adjoint, then added where patches overlap
    r = xp.empty((4, length, 2), dtype=dV.dtype, device=dev)
    _bt_adjoint([v[:, k, :] for k in range(4)], r[:, :, 0], r[:, :, 1], xp)
    # rows: the same, down the columns of each padded plane (even rows, then odd rows)
    rows = xp.reshape(r, (4, c, n, th, wp))
    z = xp.empty((c, n, 2, th + 1, wp), dtype=dV.dtype, device=dev)
    _bt_adjoint([rows[k, ...] for k in range(4)], z[:, :, 0, ...], z[:, :, 1, ...], xp, axis=2)
    dx = xp.empty((n, c, t.h, t.w), dtype=dV.dtype, device=dev)
    dxt = xp.permute_dims(dx, (1, 0, 2, 3))
    for parity in (0, 1):
        start, stop, src = _row_spans(t.ph, t.h, parity)
        dxt[:, :, src::2, :] = z[:, :, parity, start:stop, t.pw : t.pw + t.w]
    return dx


# --------------------------------------------------------------------------- output


def _at(m: list[Array], out: Array) -> None:
    """out[0], out[1] = A^T (m0, m1, m2, m3): m0 + m1 + m2 and m1 - m2 - m3."""
    combine_into(out[0, ...], m[0], m[1])
    combine_into(out[0, ...], out[0, ...], m[2])
    combine_into(out[1, ...], m[1], m[2], -1)
    combine_into(out[1, ...], out[1, ...], m[3], -1)


def _at_adjoint(g0: Array, g1: Array, out: Array) -> None:
    """out[0..3] = the adjoint of :func:`_at` for gradients g0, g1: g0, g0 + g1, g0 - g1, -g1."""
    out[0, ...] = g0
    combine_into(out[1, ...], g0, g1)
    combine_into(out[2, ...], g0, g1, -1)
    combine_into(out[3, ...], 0, g1, -1)


def transform_output(M: Array, b: Array, t: Tiling, out: Array | None = None) -> Array:
    """y (n, FN, OH, OW) = A^T m A of every tile's 4x4 product m, plus b (FN,), written into
    ``out`` (an (n, FN, OH, OW) array) if given.  M (16, FN, T) may be overwritten (the NumPy
    passes add the bias into it)."""
    if t.compact or native.accepts(M):  # compact: the compiled kernels' own layout
        return native.transform_output(M, b, t, out)
    if out is not None:  # the passes below make their own array
        out[...] = transform_output(M, b, t)
        return out
    xp = get_array_module(M)
    dev = array_device(M)
    fn, n, th, t1 = M.shape[1], t.n, t.th, t.t1
    m = xp.reshape(M, (4, 4, fn, n, th, t1))
    m[1, 1, ...] += xp.reshape(b, (fn, 1, 1, 1))  # m[1][1] enters every output pixel once
    q = xp.empty((2, 4, fn, n, th, t1), dtype=M.dtype, device=dev)
    _at([m[k, ...] for k in range(4)], q)
    p = xp.empty((2, fn, n, th, t1, 2), dtype=M.dtype, device=dev)
    _at([q[:, k, ...] for k in range(4)], xp.permute_dims(p, (5, 0, 1, 2, 3, 4)))
    rows = xp.reshape(p, (2, fn, n, th, t.wp))
    y = xp.empty((n, fn, t.oh, t.ow), dtype=M.dtype, device=dev)
    yt = xp.permute_dims(y, (1, 0, 2, 3))
    for a in (0, 1):
        yt[:, :, a::2, :] = rows[a, :, :, : (t.oh - a + 1) // 2, : t.ow]
    return y


def output_gradient(dy: Array, t: Tiling) -> Array:
    """dM (16, FN, T) from dy (n, FN, OH, OW): the adjoint of :func:`transform_output` (junk
    tiles get zeros, so they add nothing to the gradients)."""
    if t.compact or native.accepts(dy):  # compact: the compiled kernels' own layout
        return native.output_gradient(dy, t)
    xp = get_array_module(dy)
    dev = array_device(dy)
    fn, n, th, t1 = dy.shape[1], t.n, t.th, t.t1
    p = xp.zeros((2, fn, n, th, t.wp), dtype=dy.dtype, device=dev)
    dyt = xp.permute_dims(dy, (1, 0, 2, 3))
    for a in (0, 1):
        p[a, :, :, : (t.oh - a + 1) // 2, : t.ow] = dyt[:, :, a::2, :]
    p = xp.reshape(p, (2, fn, n, th, t1, 2))
    q = xp.empty((2, 4, fn, n, th, t1), dtype=dy.dtype, device=dev)
    _at_adjoint(p[..., 0], p[..., 1], xp.permute_dims(q, (1, 0, 2, 3, 4, 5)))
    m = xp.empty((4, 4, fn, n, th, t1), dtype=dy.dtype, device=dev)
    _at_adjoint(q[0, ...], q[1, ...], m)
    return xp.reshape(m, (16, fn, t.tiles))
