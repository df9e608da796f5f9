"""The CPU's compiled kernels: finding them, and calling them on NumPy arrays.

Computations that NumPy can only do as many whole-array passes over memory are written in C as
well, and go over one image plane (or one array) at a time while it sits in cache:

* the four Winograd transforms of :mod:`cnn_xp.functions.winograd` (``_winograd.c``): the same
  additions in the same order, so bit for bit the NumPy passes' results;
* the four transforms of F(4x4, 3x3) (``_winograd4.c``), which have no NumPy twin: the tests
  hold them to PyTorch's convolution and to the adjoint identities;
* max pooling of :class:`cnn_xp.layers.Pooling` (``_pooling.c``): the same maxima and the same
  winners (the first maximum in row-major order; NaN and padding as NumPy's passes treat them),
  the forward keeping each output's winner (one byte) for the backward;
* ReLU of :class:`cnn_xp.layers.Relu` (``_relu.c``): output and mask in one pass, the gradient
  in one, bit for bit the NumPy passes';
* Adam's update of :class:`cnn_xp.optim.Adam` (``_adam.c``): parameter and moments in one pass
  instead of a dozen, bit for bit the NumPy passes'.

``tests/functions/test_native.py`` holds each kernel to its NumPy passes; docs/benchmarks.md has
the timings.  The extension ``_kernels`` is built at install where there is a C compiler (an
install without one goes on without it).  The kernels are used for NumPy arrays of float32 or
float64 only, where the extension was built and not turned off: ``CNN_XP_NATIVE=0`` or
:func:`~cnn_xp.functions.fast_paths.numpy_kernels`.  The library is called through
:mod:`ctypes`, which lets go of the GIL for the call, so the shards of a batch run them at once.
"""

from __future__ import annotations

import ctypes
import importlib.util
import warnings
from functools import cache
from typing import Any

import numpy  # host arrays only: these kernels run on NumPy's memory

from .fast_paths import native_enabled

_EXTENSION = "cnn_xp.functions._kernels"
_ABI = 3  # cnn_xp_kernels_abi() of a build whose functions take the arguments below
_SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
_P, _I, _D = ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_double
_SIGNATURES = {  # argument types; every function returns nothing
    "winograd_input": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # x, n, c, h, w, ph, pw, th, t1, tw, v, scratch
    "winograd_input_grad": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # dv, ... the same ..., dx, scratch
    "winograd_output": (_P, _P, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # m, b, n, fn, oh, ow, th, t1, tw, y, scratch
    "winograd_output_grad": (_P, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # dy, n, fn, oh, ow, th, t1, tw, dm, scratch
    # x, n, c, h, w, ph, pw, th, tw, nb, v, scratch
    "winograd4_input": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),
    "winograd4_input_grad": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # dv, ... the same ..., dx, scratch
    "winograd4_output": (_P, _P, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # m, b, n, fn, oh, ow, th, tw, nb, y, scratch
    "winograd4_output_grad": (_P, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # dy, n, fn, oh, ow, th, tw, nb, dm, scratch
    # x, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow, y, winners
    "max_pool": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),
    # dy, winners, planes, h, w, kh, kw, sh, sw, ph, pw, oh, ow, dx
    "max_pool_grad": (_P, _P, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _I, _P),
    "relu": (_P, _I, _P, _P),  # x, size, y, mask
    "relu_grad": (_P, _P, _I, _P),  # dy, mask, size, dx
    "adam": (_P, _P, _P, _P, _I, _D, _D, _D, _D),  # p, g, m, v, size, 1 - beta1, 1 - beta2, lr, eps
}
_NO_WINNER = 255  # in a max pooling's winners: no element equals the max (it is NaN)


@cache
def _library() -> ctypes.CDLL | None:
    """The built extension, its functions typed; None where it was not built, or was built from
    older sources (an editable install not rebuilt since), with a warning saying so."""
    spec = importlib.util.find_spec(_EXTENSION)
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    try:
        lib.cnn_xp_kernels_abi.restype, lib.cnn_xp_kernels_abi.argtypes = ctypes.c_int, ()
        if lib.cnn_xp_kernels_abi() != _ABI:
            raise AttributeError(f"their arguments are version {lib.cnn_xp_kernels_abi()}, not {_ABI}")
        lib.winograd_scratch.restype, lib.winograd_scratch.argtypes = _I, (_I, _I)
        lib.winograd4_scratch.restype, lib.winograd4_scratch.argtypes = _I, (_I, _I, _I)
        for name, argtypes in _SIGNATURES.items():
            for suffix in _SUFFIX.values():
                fn = getattr(lib, f"{name}_{suffix}")
                fn.restype, fn.argtypes = None, argtypes
    except AttributeError as exc:
        warnings.warn(
            f"cnn_xp's compiled kernels ({spec.origin}) are older than its sources ({exc}); "
            "running the NumPy passes instead. Rebuild them: pip install -e . (or reinstall cnn_xp)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return lib


def available() -> bool:
    """True where the extension was built (whether or not it is turned off)."""
    return _library() is not None


def accepts(x: Any) -> bool:
    """Whether the compiled transforms take ``x``: a NumPy float32 or float64 array, the
    extension built and not turned off."""
    return isinstance(x, numpy.ndarray) and x.dtype in _SUFFIX and native_enabled() and available()


def _call(name: str, dtype: Any, *args: Any) -> None:
    """Call ``<name>`` for ``dtype`` with ``args``, arrays passed as pointers (the caller's
    references keep them alive for the call)."""
    lib = _library()
    assert lib is not None  # accepts() was asked first
    pointers = [a.ctypes.data if isinstance(a, numpy.ndarray) else a for a in args]
    getattr(lib, f"{name}_{_SUFFIX[numpy.dtype(dtype)]}")(*pointers)


def _winograd(name: str, t: Any, first: numpy.ndarray, *args: Any) -> None:
    """A Winograd transform of tiling ``t``: ``winograd_<name>`` (F(2x2, 3x3)) or
    ``winograd4_<name>`` (F(4x4, 3x3)) with ``(first, *args, <tile grid>, <out>, scratch)``,
    the last of ``args`` being the output."""
    lib = _library()
    assert lib is not None
    if t.m == 2:  # scratch: one plane's
        prefix, grid, size = "winograd", (t.th, t.t1, t.row_tiles), lib.winograd_scratch(t.th, t.t1)
    else:  # no junk tiles, images in groups of t.nb; scratch: one group's plane
        prefix, grid = "winograd4", (t.th, t.row_tiles, t.nb)
        size = lib.winograd4_scratch(*grid)
    scratch = numpy.empty(size, dtype=first.dtype)
    _call(f"{prefix}_{name}", first.dtype, first, *args[:-1], *grid, args[-1], scratch)


def transform_input(x: numpy.ndarray, t: Any, out: numpy.ndarray) -> numpy.ndarray:
    """V (K, C, T) of x (n, C, H, W), written into ``out`` (K * C * T,), K = t.k: as
    :func:`cnn_xp.functions.winograd.transform_input` (the junk tiles' values aside)."""
    x = numpy.ascontiguousarray(x)
    size = t.k * t.c * t.tiles
    if not (out.flags.c_contiguous and out.size == size):
        raise ValueError(f"out: expected a contiguous buffer of {size} elements, got shape {out.shape}")
    v = numpy.reshape(out, (t.k, t.c, t.tiles))  # a view: the kernel writes into out
    _winograd("input", t, x, t.n, t.c, t.h, t.w, t.ph, t.pw, v)
    return v


def input_gradient(dV: numpy.ndarray, t: Any) -> numpy.ndarray:
    """dx (n, C, H, W) from dV (K, C, T): as :func:`cnn_xp.functions.winograd.input_gradient`."""
    dV = numpy.ascontiguousarray(dV)
    dx = numpy.empty((t.n, t.c, t.h, t.w), dtype=dV.dtype)
    _winograd("input_grad", t, dV, t.n, t.c, t.h, t.w, t.ph, t.pw, dx)
    return dx


def transform_output(M: numpy.ndarray, b: numpy.ndarray, t: Any) -> numpy.ndarray:
    """y (n, FN, OH, OW) from M (K, FN, T) and b (FN,): as
    :func:`cnn_xp.functions.winograd.transform_output` (M is left as it is)."""
    M = numpy.ascontiguousarray(M)
    b = numpy.ascontiguousarray(b, dtype=M.dtype)
    fn = M.shape[1]
    y = numpy.empty((t.n, fn, t.oh, t.ow), dtype=M.dtype)
    _winograd("output", t, M, b, t.n, fn, t.oh, t.ow, y)
    return y


def output_gradient(dy: numpy.ndarray, t: Any) -> numpy.ndarray:
    """dM (K, FN, T) from dy (n, FN, OH, OW): as :func:`cnn_xp.functions.winograd.output_gradient`."""
    dy = numpy.ascontiguousarray(dy)
    fn = dy.shape[1]
    dm = numpy.empty((t.k, fn, t.tiles), dtype=dy.dtype)
    _winograd("output_grad", t, dy, t.n, fn, t.oh, t.ow, dm)
    return dm


# --------------------------------------------------------------------------- max pooling


def pool_accepts(x: Any, kh: int, kw: int) -> bool:
    """Whether :func:`max_pool` takes ``x`` with a kh x kw window (its winners fit in a byte)."""
    return accepts(x) and kh * kw < _NO_WINNER


def max_pool(
    x: numpy.ndarray, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """y (N, C, OH, OW), the max of each window of x (N, C, H, W) padded with -inf, and each
    output's winner (uint8 (N, C, OH, OW): i * kw + j of the first maximum in row-major order,
    255 where the max is NaN)."""
    x = numpy.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    winners = numpy.empty((n, c, oh, ow), dtype=numpy.uint8)
    _call("max_pool", x.dtype, x, n * c, h, w, kh, kw, *stride, *pad, oh, ow, y, winners)
    return y, winners


def max_pool_grad(
    dy: numpy.ndarray, winners: numpy.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: Any, pad: Any
) -> numpy.ndarray:
    """dx (N, C, H, W): each output's gradient dy (N, C, OH, OW) at its winner, summed where
    windows overlap (offset by offset, in row-major order)."""
    dy = numpy.ascontiguousarray(dy)
    n, c, h, w = x_shape
    dx = numpy.empty((n, c, h, w), dtype=dy.dtype)
    oh, ow = winners.shape[2], winners.shape[3]
    _call("max_pool_grad", dy.dtype, dy, winners, n * c, h, w, kh, kw, *stride, *pad, oh, ow, dx)
    return dx


# --------------------------------------------------------------------------- ReLU


def accepts_mask(mask: Any) -> bool:
    """Whether :func:`relu_grad` takes ``mask``: a NumPy bool array (as :func:`relu` makes)."""
    return isinstance(mask, numpy.ndarray) and mask.dtype == numpy.bool_


def relu(x: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(numpy.maximum(x, 0), x <= 0) in one pass; x any shape."""
    x = numpy.ascontiguousarray(x)
    y = numpy.empty(x.shape, dtype=x.dtype)
    mask = numpy.empty(x.shape, dtype=numpy.bool_)
    _call("relu", x.dtype, x, x.size, y, mask)
    return y, mask


def relu_grad(dy: numpy.ndarray, mask: numpy.ndarray) -> numpy.ndarray:
    """dy * (1 - mask) in one pass, in dy's dtype."""
    dy = numpy.ascontiguousarray(dy)
    mask = numpy.ascontiguousarray(mask)
    dx = numpy.empty(dy.shape, dtype=dy.dtype)
    _call("relu_grad", dy.dtype, dy, mask, dy.size, dx)
    return dx


# --------------------------------------------------------------------------- Adam


def adam_accepts(p: Any, g: Any, m: Any, v: Any) -> bool:
    """Whether :func:`adam` takes these: NumPy arrays of one float dtype and shape, C-contiguous
    (it updates p, m and v in place)."""
    arrays = (p, g, m, v)
    return (
        accepts(p)
        and all(isinstance(a, numpy.ndarray) and a.dtype == p.dtype and a.shape == p.shape for a in arrays)
        and all(a.flags.c_contiguous for a in arrays)
    )


def adam(
    p: numpy.ndarray, g: numpy.ndarray, m: numpy.ndarray, v: numpy.ndarray, a1: float, a2: float, lr: float, eps: float
) -> None:
    """Adam's update of p with gradient g and moments m, v, all in place (see ``_adam.c``)."""
    _call("adam", p.dtype, p, g, m, v, p.size, a1, a2, lr, eps)
