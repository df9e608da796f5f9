"""The CPU's compiled Winograd transforms: finding them, and calling them on NumPy arrays.

:mod:`cnn_xp.functions.winograd` computes its four transforms (input, output, and their
adjoints) as whole-array passes, a dozen or more per transform, each over memory.  The same
additions in C (``_winograd.c``, built at install as the extension ``_winograd_kernels``) go over
one image plane at a time while it sits in cache, with the same operations in the same order:
the results are bit for bit the NumPy passes' (``tests/functions/test_native.py``).  On
DeepConvNet's layer shapes they took 2-3x less time (see docs/benchmarks.md).

They are used for NumPy arrays of float32 or float64 only, and only where the extension was
built (an install without a C compiler goes on without it) and not turned off:
``CNN_XP_NATIVE=0`` or :func:`~cnn_xp.functions.fast_paths.numpy_transforms`.  The library is
called through :mod:`ctypes`, which lets go of the GIL for the call, so the shards of a batch
run their transforms at once.
"""

from __future__ import annotations

import ctypes
import importlib.util
from functools import cache
from typing import Any

import numpy

from .fast_paths import native_enabled

_EXTENSION = "cnn_xp.functions._winograd_kernels"
_SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
_P, _I = ctypes.c_void_p, ctypes.c_ssize_t
_SIGNATURES = {  # argument types; every function returns nothing
    "input": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # x, n, c, h, w, ph, pw, th, t1, v, scratch
    "input_grad": (_P, _I, _I, _I, _I, _I, _I, _I, _I, _P, _P),  # dv, ... the same ..., dx, scratch
    "output": (_P, _P, _I, _I, _I, _I, _I, _I, _P, _P),  # m, b, n, fn, oh, ow, th, t1, y, scratch
    "output_grad": (_P, _I, _I, _I, _I, _I, _I, _P, _P),  # dy, n, fn, oh, ow, th, t1, dm, scratch
}


@cache
def _library() -> ctypes.CDLL | None:
    """The built extension, its functions typed; None where it was not built."""
    spec = importlib.util.find_spec(_EXTENSION)
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    lib.winograd_scratch.restype, lib.winograd_scratch.argtypes = _I, (_I, _I)
    for name, argtypes in _SIGNATURES.items():
        for suffix in _SUFFIX.values():
            fn = getattr(lib, f"winograd_{name}_{suffix}")
            fn.restype, fn.argtypes = None, argtypes
    return lib


def available() -> bool:
    """True where the extension was built (whether or not it is turned off)."""
    return _library() is not None


def accepts(x: Any) -> bool:
    """Whether the compiled transforms take ``x``: a NumPy float32 or float64 array, the
    extension built and not turned off."""
    return isinstance(x, numpy.ndarray) and x.dtype in _SUFFIX and native_enabled() and available()


def _call(name: str, t: Any, first: numpy.ndarray, *args: Any) -> None:
    """Call ``winograd_<name>`` for ``first``'s dtype with (first, *args, scratch).  Arrays in
    ``args`` are passed as pointers; the caller's references keep them alive for the call."""
    lib = _library()
    assert lib is not None  # accepts() was asked first
    scratch = numpy.empty(lib.winograd_scratch(t.th, t.t1), dtype=first.dtype)  # one image plane's
    pointers = [a.ctypes.data if isinstance(a, numpy.ndarray) else a for a in (first, *args, scratch)]
    getattr(lib, f"winograd_{name}_{_SUFFIX[first.dtype]}")(*pointers)


def transform_input(x: numpy.ndarray, t: Any, out: numpy.ndarray) -> numpy.ndarray:
    """V (16, C, T) of x (n, C, H, W), written into ``out`` (16 * C * T,): as
    :func:`cnn_xp.functions.winograd.transform_input` (the junk tiles' values aside)."""
    x = numpy.ascontiguousarray(x)
    v = numpy.reshape(out, (16, t.c, t.tiles))  # out is a workspace's contiguous buffer: a view
    _call("input", t, x, t.n, t.c, t.h, t.w, t.ph, t.pw, t.th, t.t1, v)
    return v


def input_gradient(dV: numpy.ndarray, t: Any) -> numpy.ndarray:
    """dx (n, C, H, W) from dV (16, C, T): as :func:`cnn_xp.functions.winograd.input_gradient`."""
    dV = numpy.ascontiguousarray(dV)
    dx = numpy.empty((t.n, t.c, t.h, t.w), dtype=dV.dtype)
    _call("input_grad", t, dV, t.n, t.c, t.h, t.w, t.ph, t.pw, t.th, t.t1, dx)
    return dx


def transform_output(M: numpy.ndarray, b: numpy.ndarray, t: Any) -> numpy.ndarray:
    """y (n, FN, OH, OW) from M (16, FN, T) and b (FN,): as
    :func:`cnn_xp.functions.winograd.transform_output` (M is left as it is)."""
    M = numpy.ascontiguousarray(M)
    b = numpy.ascontiguousarray(b, dtype=M.dtype)
    fn = M.shape[1]
    y = numpy.empty((t.n, fn, t.oh, t.ow), dtype=M.dtype)
    _call("output", t, M, b, t.n, fn, t.oh, t.ow, t.th, t.t1, y)
    return y


def output_gradient(dy: numpy.ndarray, t: Any) -> numpy.ndarray:
    """dM (16, FN, T) from dy (n, FN, OH, OW): as :func:`cnn_xp.functions.winograd.output_gradient`."""
    dy = numpy.ascontiguousarray(dy)
    fn = dy.shape[1]
    dm = numpy.empty((16, fn, t.tiles), dtype=dy.dtype)
    _call("output_grad", t, dy, t.n, fn, t.oh, t.ow, t.th, t.t1, dm)
    return dm
