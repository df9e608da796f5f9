"""The CPU's compiled kernels: finding them, and calling them safely on NumPy arrays.

Computations that NumPy can only do as many whole-array passes over memory are written in C as
well, and go over one image plane (or one array) at a time while it sits in cache:

* the four Winograd F(2x2, 3x3) transforms of :mod:`cnn_xp.functions.winograd` (``_winograd.c``):
  the same additions in the same order, so bit for bit the NumPy passes' results;
* the four transforms of F(4x4, 3x3) (``_winograd4.c``), which have no NumPy twin: the tests hold
  them to PyTorch's convolution and to the adjoint identities;
* a strided convolution's columns and their gradient added back (``_im2col.c``): the values
  and sums of the NumPy passes of :mod:`cnn_xp.functions.conv2d`'s strided path, bit for bit;
* max pooling (``_pooling.c``), ReLU (``_relu.c``) and Adam's update (``_adam.c``): the same
  values as their NumPy passes (:mod:`cnn_xp.functions.pooling`, :mod:`~cnn_xp.functions.activations`,
  :mod:`~cnn_xp.functions.adam`), in one pass each way;
* the per-thread switch that flushes subnormal floats (``_module.c``).

**Safety.**  The kernels trust their caller: they read and write exactly the elements their
size arguments say.  So every function here checks, before each call, every array it hands over
-- a NumPy array of the kernel's dtype, C-contiguous, aligned, writeable where the kernel
writes, of exactly the size the other arguments imply -- and that no array written overlaps
another argument; a call that does not fit raises :class:`KernelArgumentError` (a ValueError)
and the kernel is not run.  Callers that can take the NumPy passes instead ask :func:`fits`
first.  The arguments' C types come from ``_kernels.h``, which each kernel file includes (so the
compiler checks the definitions against it) and which this module reads to type every call.

The extension ``_kernels`` is built at install where a C compiler works; it is used for NumPy
arrays of float32 or float64 unless turned off (``CNN_XP_NATIVE=0``,
:func:`~cnn_xp.functions.fast_paths.numpy_kernels`).  ctypes lets go of the GIL for each call,
so the shards of a batch run them at once.
"""

from __future__ import annotations

import ctypes
import importlib.util
import re
import warnings
from collections.abc import Mapping
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy  # host arrays only: these kernels run on NumPy's memory

from .fast_paths import native_enabled

_EXTENSION = "cnn_xp.functions._kernels"
_HEADER = Path(__file__).with_name("_kernels.h")
_SUFFIX = {numpy.dtype(numpy.float32): "f32", numpy.dtype(numpy.float64): "f64"}
NO_WINNER = 255  # in a max pooling's winners: no element equals the max (it is NaN)


class KernelArgumentError(ValueError):
    """An array handed to a compiled kernel does not fit what the kernel reads or writes."""


# --------------------------------------------------------------------------- the header


_C_TYPES = {"idx": ctypes.c_ssize_t, "double": ctypes.c_double, "int": ctypes.c_int, "void": None}


def _argtype(text: str) -> Any:
    text = text.strip()
    if "*" in text:
        return ctypes.c_void_p
    return _C_TYPES[text.split()[0]]


@cache
def header() -> tuple[int, dict[str, tuple[Any, tuple[Any, ...]]]]:
    """(the ABI version ``_kernels.h`` states, {function: (restype, argtypes)}) -- every kernel of
    both dtypes under its suffixed name, read from the header the kernels are compiled against."""
    text = _HEADER.read_text()
    abi = int(re.search(r"#define CNN_XP_KERNELS_ABI (\d+)", text).group(1))  # type: ignore[union-attr]
    table: dict[str, tuple[Any, tuple[Any, ...]]] = {}
    for ret, name, args in re.findall(r"^(int|idx|void) (\w+)\(([^)]*)\);", text, re.M):
        table[name] = (_C_TYPES[ret], () if args.strip() == "void" else tuple(_argtype(a) for a in args.split(",")))
    body = text[text.index("#define CNN_XP_KERNELS(") :]
    for ret, name, args in re.findall(r"(void|idx) (\w+)_##S_\(([^)]*)\);", body):
        for suffix in _SUFFIX.values():
            table[f"{name}_{suffix}"] = (_C_TYPES[ret], tuple(_argtype(a) for a in args.split(",")))
    return abi, table


@cache
def _library() -> ctypes.CDLL | None:
    """The built extension, its functions typed from the header; None where it was not built,
    or was built from other sources (an editable install not rebuilt since), with a warning."""
    spec = importlib.util.find_spec(_EXTENSION)
    if spec is None or spec.origin is None:
        return None
    lib = ctypes.CDLL(spec.origin)
    abi, table = header()
    try:
        lib.cnn_xp_kernels_abi.restype, lib.cnn_xp_kernels_abi.argtypes = ctypes.c_int, ()
        built = lib.cnn_xp_kernels_abi()
        if built != abi:
            raise AttributeError(f"their arguments are version {built}, the sources' {abi}")
        for name, (restype, argtypes) in table.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
    except AttributeError as exc:
        warnings.warn(
            f"cnn_xp's compiled kernels ({spec.origin}) do not match its sources ({exc}); running the NumPy passes "
            "instead. Rebuild them: pip install -e . (or reinstall cnn_xp)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    return lib


def available() -> bool:
    """True where the extension was built (whether or not it is turned off)."""
    return _library() is not None


def accepts(x: Any) -> bool:
    """Whether the compiled kernels are in use for ``x``: a NumPy float32 or float64 array, the
    extension built and not turned off."""
    return isinstance(x, numpy.ndarray) and x.dtype in _SUFFIX and native_enabled() and available()


# --------------------------------------------------------------------------- checked calls


def _require(name: str, a: Any, dtype: Any, size: int | tuple[int, int, int], writes: bool) -> None:
    if not isinstance(a, numpy.ndarray):
        raise KernelArgumentError(f"{name}: expected a NumPy array, got {type(a).__name__}")
    if a.dtype != dtype:
        raise KernelArgumentError(f"{name}: expected dtype {numpy.dtype(dtype)}, got {a.dtype}")
    flags = a.flags
    if writes and not flags.writeable:
        raise KernelArgumentError(f"{name}: the kernel writes it, but the array is read-only")
    if isinstance(size, tuple):
        plane_stride_of(name, a, size)
        return
    if not (flags.c_contiguous and flags.aligned):
        raise KernelArgumentError(f"{name}: expected a C-contiguous, aligned array")
    if a.size != size:
        raise KernelArgumentError(f"{name}: expected {size} elements for these sizes, got {a.size} (shape {a.shape})")


def plane_stride_of(name: str, a: numpy.ndarray, shape: tuple[int, int, int]) -> int:
    """The plane stride (elements) of ``a``, a (K, rows, tiles) array whose planes are each a
    C-contiguous (rows, tiles) matrix, any whole number of elements apart, no closer than a
    plane's size (:func:`planes`); raises KernelArgumentError for any other shape or layout.
    A kernel given this stride touches exactly the array's elements."""
    if tuple(a.shape) != tuple(shape):
        raise KernelArgumentError(f"{name}: expected shape {tuple(shape)} for these sizes, got {a.shape}")
    k, rows, tiles = shape
    item, (s0, s1, s2) = a.itemsize, a.strides
    laid_out = (
        a.flags.aligned
        and (tiles < 2 or s2 == item)
        and (rows < 2 or s1 == tiles * item)
        and (k < 2 or (s0 % item == 0 and s0 >= rows * tiles * item))
    )
    if not laid_out:
        raise KernelArgumentError(
            f"{name}: expected aligned planes of C-contiguous ({rows}, {tiles}) matrices, got strides {a.strides}"
        )
    return s0 // item if k > 1 else rows * tiles


def check_call(
    reads: Mapping[str, tuple[Any, Any, int | tuple[int, int, int]]],
    writes: Mapping[str, tuple[Any, Any, int | tuple[int, int, int]]],
) -> None:
    """Check the arrays of one kernel call: ``{name: (array, dtype, elements)}`` read and written;
    in place of ``elements`` a shape (K, rows, tiles) asks for an array of planes
    (:func:`plane_stride_of`).  Raises KernelArgumentError for a wrong type, dtype, layout,
    size, a read-only output, or an output that overlaps any other argument."""
    for name, (a, dtype, size) in reads.items():
        _require(name, a, dtype, size, False)
    for name, (a, dtype, size) in writes.items():
        _require(name, a, dtype, size, True)
    every = (*reads.items(), *writes.items())
    for name, (a, _, _) in writes.items():
        if not a.size:
            continue
        for other, (b, _, _) in every:
            if other != name and b.size and numpy.may_share_memory(a, b):
                raise KernelArgumentError(f"{name}: the kernel writes it, but it overlaps {other}")


def fits(reads: Mapping[str, tuple[Any, Any, int]], writes: Mapping[str, tuple[Any, Any, int]]) -> bool:
    """Whether :func:`check_call` would pass (callers with NumPy passes to fall back on)."""
    try:
        check_call(reads, writes)
    except KernelArgumentError:
        return False
    return True


_functions: dict[tuple[Any, str, Any], Any] = {}  # (library, name, dtype): its typed function


def _function(name: str, dtype: Any) -> Any:
    """The library's ``<name>_<f32|f64>``, looked up once per library, name and dtype."""
    lib = _library()
    key = (lib, name, dtype)
    fn = _functions.get(key)
    if fn is None:
        dt = numpy.dtype(dtype)
        if lib is None or dt not in _SUFFIX:
            raise KernelArgumentError(f"{name}: the compiled kernels are not available for {dtype}")
        fn = _functions[key] = getattr(lib, f"{name}_{_SUFFIX[dt]}")
    return fn


_Byte = ctypes.c_char


def _pointer(a: numpy.ndarray) -> int:
    """The address of ``a``'s first element.  A writeable C-contiguous array lends its buffer
    (a third of the time of ``a.ctypes.data``, which every call pays for each array); any other
    (read-only, strided planes, empty) is asked through ``a.ctypes``."""
    flags = a.flags
    if flags.writeable and flags.c_contiguous and a.size:
        try:
            return ctypes.addressof(_Byte.from_buffer(a))  # type: ignore[arg-type]  # (an ndarray is a buffer)
        except (TypeError, ValueError, BufferError):  # a buffer numpy will not lend writeable
            pass
    return int(a.ctypes.data)


def _call(name: str, dtype: Any, *args: Any) -> Any:
    """Call ``<name>`` for ``dtype``: arrays as pointers (the caller's references keep them
    alive), everything else as its C type; returns what the kernel returns.  The caller has run
    :func:`check_call`."""
    fn = _function(name, dtype)
    return fn(*[_pointer(a) if isinstance(a, numpy.ndarray) else a for a in args])


class NonFiniteResult(ArithmeticError):  # noqa: N818 - an outcome the caller handles, not an error
    """A Winograd transform wrote non-finite values: its products overflowed, or an inf or NaN
    input met the transforms' sums (inf - inf), which the direct path would not; the
    convolution computes this call with the direct path instead."""


# --------------------------------------------------------------------------- denormals


def set_flush_denormals(on: bool) -> int:
    """Flush subnormal floats to zero in the calling thread (``on``) or restore IEEE behaviour;
    returns the previous setting (1, 0), or -1 where the kernels or the switch are missing."""
    lib = _library()
    if lib is None:
        return -1
    return int(lib.cnn_xp_flush_denormals(1 if on else 0))


# --------------------------------------------------------------------------- Winograd


def _scratch(t: Any, dtype: Any) -> numpy.ndarray:
    return numpy.empty(_scratch_size(_library(), t.m, t.th, t.t1 if t.m == 2 else t.row_tiles, t.nb), dtype=dtype)


@lru_cache(maxsize=512)
def _scratch_size(lib: Any, m: int, th: int, tw: int, nb: int) -> int:
    """Elements of a transform's scratch, as the kernels' library states them (asked once per
    shape: each ctypes call lets go of the GIL and waits to take it back)."""
    assert lib is not None
    return int(lib.winograd_scratch(th, tw) if m == 2 else lib.winograd4_scratch(th, tw, nb))


def _grid(t: Any) -> tuple[str, tuple[int, ...]]:
    """The kernel family and tile-grid arguments of tiling ``t``."""
    if t.m == 2:
        return "winograd", (t.th, t.t1, t.row_tiles)
    return "winograd4", (t.th, t.row_tiles, t.nb)


def _check_tiling(t: Any) -> None:
    """A tiling must describe a real convolution: sizes in range, tiles covering the output (an
    empty batch, n = 0, is a real one: the kernels then touch nothing)."""
    if t.n < 0 or min(t.c, t.h, t.w) < 1 or min(t.ph, t.pw) < 0 or t.oh < 1 or t.ow < 1:
        raise KernelArgumentError(f"tiling: not a 3x3 convolution's ({t})")
    if t.m == 4 and t.nb < 1:
        raise KernelArgumentError(f"tiling: images per group {t.nb}, expected at least 1")


_PAGE, _LINE = 4096, 64


def plane_stride(rows: int, tiles: int, itemsize: int) -> int:
    """Elements from one plane to the next of a (K, rows, tiles) F(4x4, 3x3) array (V, M and
    their gradients): at least a plane's rows * tiles, and one 64-byte line more than a whole
    number of 4 KiB pages.  Each transform reads or writes all 36 planes at once; planes a whole
    number of pages apart (as a batch's planes often are: 16 channels of 8x8 tiles are 4 KiB)
    fall into the same few sets of a core's L1 cache and evict each other; one line more
    spreads them over all the sets."""
    pages = -(-max(rows * tiles * itemsize - _LINE, 0) // _PAGE)
    return (pages * _PAGE + _LINE) // itemsize


def planes_elems(k: int, rows: int, tiles: int, itemsize: int) -> int:
    """Elements a buffer needs for :func:`planes` of this shape."""
    return k * plane_stride(rows, tiles, itemsize)


def planes(buffer: numpy.ndarray, k: int, rows: int, tiles: int) -> numpy.ndarray:
    """A (k, rows, tiles) view of the flat ``buffer`` (at least :func:`planes_elems` elements)
    with its planes :func:`plane_stride` apart: each plane a C-contiguous (rows, tiles) matrix,
    as matmul takes them."""
    ld = plane_stride(rows, tiles, buffer.itemsize)
    if buffer.ndim != 1 or buffer.shape[0] < k * ld:
        raise KernelArgumentError(f"buffer: expected a flat array of at least {k * ld} elements, got {buffer.shape}")
    if not buffer.flags.c_contiguous:  # (a reshape would copy it: the kernel would write the copy)
        raise KernelArgumentError("buffer: expected a contiguous flat array")
    return numpy.reshape(numpy.reshape(buffer[: k * ld], (k, ld))[:, : rows * tiles], (k, rows, tiles))


def empty_planes(k: int, rows: int, tiles: int, dtype: Any) -> numpy.ndarray:
    """A new uninitialised (k, rows, tiles) array of :func:`planes`."""
    return planes(numpy.empty(planes_elems(k, rows, tiles, numpy.dtype(dtype).itemsize), dtype), k, rows, tiles)


def matmul_planes(a: numpy.ndarray, b: numpy.ndarray) -> numpy.ndarray:
    """a (K, P, Q) @ b (K, Q, T) into a new (K, P, T) array of :func:`planes`."""
    out = empty_planes(a.shape[0], a.shape[1], b.shape[2], numpy.result_type(a, b))
    return numpy.matmul(a, b, out=out)


def _transformed(
    name: str, a: numpy.ndarray, t: Any, rows: int
) -> tuple[numpy.ndarray, dict[str, Any], tuple[int, ...]]:
    """A (K, rows, T) array read by a transform of tiling ``t``: (the array, its check, the
    plane-stride argument the kernel takes).  F(4x4, 3x3)'s kernels take planes any stride apart
    (:func:`planes`); F(2x2, 3x3)'s a C-contiguous array."""
    if t.m == 4:
        return a, {name: (a, a.dtype, (t.k, rows, t.tiles))}, (plane_stride_of(name, a, (t.k, rows, t.tiles)),)
    a = numpy.ascontiguousarray(a)
    return a, {name: (a, a.dtype, t.k * rows * t.tiles)}, ()


def transform_input(x: numpy.ndarray, t: Any, out: numpy.ndarray) -> numpy.ndarray:
    """V (K, C, T) of x (n, C, H, W), written into ``out``: as
    :func:`cnn_xp.functions.winograd.transform_input` (the junk tiles' values aside).  ``out``
    is flat: K * C * T elements (F(2x2, 3x3)), or at least :func:`planes_elems` of them for the
    :func:`planes` V of F(4x4, 3x3)."""
    _check_tiling(t)
    x = numpy.ascontiguousarray(x)
    if t.m == 4:
        v = planes(out, t.k, t.c, t.tiles)
        check_call({"x": (x, x.dtype, t.n * t.c * t.h * t.w)}, {"out": (v, x.dtype, (t.k, t.c, t.tiles))})
        ld: tuple[int, ...] = (plane_stride_of("out", v, (t.k, t.c, t.tiles)),)
    else:
        check_call({"x": (x, x.dtype, t.n * t.c * t.h * t.w)}, {"out": (out, x.dtype, t.k * t.c * t.tiles)})
        v, ld = numpy.reshape(out, (t.k, t.c, t.tiles)), ()  # a view: the kernel writes into out
    family, grid = _grid(t)
    _call(f"{family}_input", x.dtype, x, t.n, t.c, t.h, t.w, t.ph, t.pw, *grid, *ld, v, _scratch(t, x.dtype))
    return v


def _output(out: numpy.ndarray | None, shape: tuple[int, ...], dtype: Any) -> numpy.ndarray:
    """``out``, or a new array of ``shape``: the array a transform writes its result into (the
    caller checks it with the call's other arguments)."""
    if out is None:
        return numpy.empty(shape, dtype=dtype)
    if tuple(getattr(out, "shape", ())) != shape:
        raise KernelArgumentError(f"out: expected shape {shape}, got {getattr(out, 'shape', type(out).__name__)}")
    return out


def input_gradient(dV: numpy.ndarray, t: Any, out: numpy.ndarray | None = None) -> numpy.ndarray:
    """dx (n, C, H, W) from dV (K, C, T): as :func:`cnn_xp.functions.winograd.input_gradient`;
    into ``out`` (C-contiguous, of that shape) if given."""
    _check_tiling(t)
    dV, reads, ld = _transformed("dV", dV, t, t.c)
    dx = _output(out, (t.n, t.c, t.h, t.w), dV.dtype)
    check_call(reads, {"dx": (dx, dV.dtype, t.n * t.c * t.h * t.w)})
    family, grid = _grid(t)
    if _call(
        f"{family}_input_grad", dV.dtype, dV, t.n, t.c, t.h, t.w, t.ph, t.pw, *grid, *ld, dx, _scratch(t, dV.dtype)
    ):
        raise NonFiniteResult("input gradient")
    return dx


def transform_output(M: numpy.ndarray, b: numpy.ndarray, t: Any, out: numpy.ndarray | None = None) -> numpy.ndarray:
    """y (n, FN, OH, OW) from M (K, FN, T) and b (FN,): as
    :func:`cnn_xp.functions.winograd.transform_output` (M is left as it is); into ``out``
    (C-contiguous, of that shape) if given."""
    _check_tiling(t)
    fn = int(M.shape[1]) if M.ndim == 3 else 0
    M, reads, ld = _transformed("M", M, t, fn)
    b = numpy.ascontiguousarray(b, dtype=M.dtype)
    y = _output(out, (t.n, fn, t.oh, t.ow), M.dtype)
    check_call({**reads, "b": (b, M.dtype, fn)}, {"y": (y, M.dtype, t.n * fn * t.oh * t.ow)})
    family, grid = _grid(t)
    if _call(f"{family}_output", M.dtype, M, b, t.n, fn, t.oh, t.ow, *grid, *ld, y, _scratch(t, M.dtype)):
        raise NonFiniteResult("output")
    return y


def output_gradient(dy: numpy.ndarray, t: Any) -> numpy.ndarray:
    """dM (K, FN, T) from dy (n, FN, OH, OW): as :func:`cnn_xp.functions.winograd.output_gradient`
    (F(4x4, 3x3): a new array of :func:`planes`)."""
    _check_tiling(t)
    dy = numpy.ascontiguousarray(dy)
    fn = int(dy.shape[1]) if dy.ndim == 4 else 0
    if t.m == 4:
        dm = empty_planes(t.k, fn, t.tiles, dy.dtype)
        spec: Any = (t.k, fn, t.tiles)
        ld: tuple[int, ...] = (plane_stride_of("dm", dm, spec),)
    else:
        dm, spec, ld = numpy.empty((t.k, fn, t.tiles), dtype=dy.dtype), t.k * fn * t.tiles, ()
    check_call({"dy": (dy, dy.dtype, t.n * fn * t.oh * t.ow)}, {"dm": (dm, dy.dtype, spec)})
    family, grid = _grid(t)
    _call(f"{family}_output_grad", dy.dtype, dy, t.n, fn, t.oh, t.ow, *grid, *ld, dm, _scratch(t, dy.dtype))
    return dm


# --------------------------------------------------------------------------- strided columns


def _check_columns(x_shape: tuple[int, ...], kh: int, kw: int, stride: Any, pad: Any) -> tuple[int, ...]:
    """(n, c, h, w, oh, ow) of a window of ``(kh, kw)``, ``stride`` and ``pad`` over x_shape."""
    (sh, sw), (ph, pw) = stride, pad
    if len(x_shape) != 4 or min(x_shape) < 0 or min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise KernelArgumentError(f"im2col: window ({kh}, {kw}), stride {stride}, pad {pad} over shape {x_shape}")
    n, c, h, w = (int(v) for v in x_shape)
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    if min(c, h, w, oh, ow) < 1:
        raise KernelArgumentError(f"im2col: window ({kh}, {kw}), stride {stride}, pad {pad} over shape {x_shape}")
    return n, c, h, w, oh, ow


def im2col(x: numpy.ndarray, kh: int, kw: int, stride: Any, pad: Any, out: numpy.ndarray) -> numpy.ndarray:
    """The columns (C, KH, KW, N, OH, OW) of x (N, C, H, W) zero-padded by ``pad``, windows
    ``stride`` apart, written into ``out`` (C-contiguous, of that shape), which is returned."""
    n, c, h, w, oh, ow = _check_columns(tuple(x.shape), kh, kw, stride, pad)
    x = numpy.ascontiguousarray(x)
    if tuple(out.shape) != (c, kh, kw, n, oh, ow):
        raise KernelArgumentError(f"out: expected shape {(c, kh, kw, n, oh, ow)}, got {out.shape}")
    check_call({"x": (x, x.dtype, x.size)}, {"out": (out, x.dtype, out.size)})
    _call("im2col", x.dtype, x, n, c, h, w, kh, kw, *stride, *pad, oh, ow, out)
    return out


def col2im(cols: numpy.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: Any, pad: Any) -> numpy.ndarray:
    """dx (N, C, H, W), a new array: the columns' gradient ``cols`` (C, KH, KW, N, OH, OW)
    added back to the pixels each column read (padding dropped), offset by offset in row-major
    order."""
    n, c, h, w, oh, ow = _check_columns(tuple(x_shape), kh, kw, stride, pad)
    if tuple(cols.shape) != (c, kh, kw, n, oh, ow):
        raise KernelArgumentError(f"cols: expected shape {(c, kh, kw, n, oh, ow)}, got {cols.shape}")
    cols = numpy.ascontiguousarray(cols)
    dx = numpy.empty((n, c, h, w), dtype=cols.dtype)
    check_call({"cols": (cols, cols.dtype, cols.size)}, {"dx": (dx, cols.dtype, dx.size)})
    _call("col2im", cols.dtype, cols, n, c, h, w, kh, kw, *stride, *pad, oh, ow, dx)
    return dx


# --------------------------------------------------------------------------- max pooling


def _check_window(h: int, w: int, kh: int, kw: int, stride: Any, pad: Any, oh: int, ow: int) -> None:
    (sh, sw), (ph, pw) = stride, pad
    if min(h, w, kh, kw, sh, sw) < 1 or min(ph, pw) < 0 or kh * kw >= NO_WINNER:
        raise KernelArgumentError(f"max_pool: window ({kh}, {kw}), stride {stride}, pad {pad} over {h}x{w}")
    if (oh, ow) != ((h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1) or min(oh, ow) < 1:
        raise KernelArgumentError(f"max_pool: output {oh}x{ow} is not the window's over {h}x{w}")


def max_pool(
    x: numpy.ndarray, kh: int, kw: int, stride: tuple[int, int], pad: tuple[int, int], out_hw: tuple[int, int]
) -> tuple[numpy.ndarray, numpy.ndarray]:
    """y (N, C, OH, OW), the max of each window of x (N, C, H, W) padded with -inf, and each
    output's winner (uint8 (N, C, OH, OW): i * kw + j of the first maximum in row-major order,
    255 where the max is NaN)."""
    x = numpy.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    _check_window(h, w, kh, kw, stride, pad, oh, ow)
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    winners = numpy.empty((n, c, oh, ow), dtype=numpy.uint8)
    check_call({"x": (x, x.dtype, x.size)}, {"y": (y, x.dtype, y.size), "winners": (winners, numpy.uint8, y.size)})
    _call("max_pool", x.dtype, x, n * c, h, w, kh, kw, *stride, *pad, oh, ow, y, winners)
    return y, winners


def max_pool_grad(
    dy: numpy.ndarray, winners: numpy.ndarray, x_shape: tuple[int, ...], kh: int, kw: int, stride: Any, pad: Any
) -> numpy.ndarray:
    """dx (N, C, H, W): each output's gradient dy (N, C, OH, OW) at its winner, summed where
    windows overlap (offset by offset, in row-major order)."""
    dy = numpy.ascontiguousarray(dy)
    n, c, h, w = x_shape
    oh, ow = (int(winners.shape[2]), int(winners.shape[3])) if winners.ndim == 4 else (0, 0)
    _check_window(h, w, kh, kw, stride, pad, oh, ow)
    dx = numpy.empty((n, c, h, w), dtype=dy.dtype)
    outputs = n * c * oh * ow
    check_call(
        {"dy": (dy, dy.dtype, outputs), "winners": (winners, numpy.uint8, outputs)}, {"dx": (dx, dy.dtype, dx.size)}
    )
    _call("max_pool_grad", dy.dtype, dy, winners, n * c, h, w, kh, kw, *stride, *pad, oh, ow, dx)
    return dx


# --------------------------------------------------------------------------- ReLU


def relu(x: numpy.ndarray) -> tuple[numpy.ndarray, numpy.ndarray]:
    """(numpy.maximum(x, 0), x <= 0) in one pass; x any shape."""
    x = numpy.ascontiguousarray(x)
    y = numpy.empty(x.shape, dtype=x.dtype)
    mask = numpy.empty(x.shape, dtype=numpy.bool_)
    check_call({"x": (x, x.dtype, x.size)}, {"y": (y, x.dtype, x.size), "mask": (mask, numpy.bool_, x.size)})
    _call("relu", x.dtype, x, x.size, y, mask)
    return y, mask


def relu_grad(dy: numpy.ndarray, mask: numpy.ndarray) -> numpy.ndarray:
    """dy * (1 - mask) in one pass, in dy's dtype."""
    dy = numpy.ascontiguousarray(dy)
    mask = numpy.ascontiguousarray(mask)
    dx = numpy.empty(dy.shape, dtype=dy.dtype)
    check_call({"dy": (dy, dy.dtype, dy.size), "mask": (mask, numpy.bool_, dy.size)}, {"dx": (dx, dy.dtype, dy.size)})
    _call("relu_grad", dy.dtype, dy, mask, dy.size, dx)
    return dx


# --------------------------------------------------------------------------- Adam


def adam_arguments(p: Any, g: Any, m: Any, v: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (reads, writes) of Adam's kernel for these arrays (:func:`check_call`'s arguments)."""
    dtype, size = getattr(p, "dtype", None), getattr(p, "size", -1)
    return {"g": (g, dtype, size)}, {"p": (p, dtype, size), "m": (m, dtype, size), "v": (v, dtype, size)}


def adam(
    p: numpy.ndarray, g: numpy.ndarray, m: numpy.ndarray, v: numpy.ndarray, a1: float, a2: float, lr: float, eps: float
) -> None:
    """Adam's update of p with gradient g and moments m, v, all in place (see ``_adam.c``)."""
    check_call(*adam_arguments(p, g, m, v))
    _call("adam", p.dtype, p, g, m, v, p.size, a1, a2, lr, eps)


# --------------------------------------------------------------------------- batch normalisation


def _bn_shape(x: numpy.ndarray) -> tuple[int, int, int]:
    if x.ndim != 4:
        raise KernelArgumentError(f"x: expected (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    return n, c, h * w


def bn_sum(x: numpy.ndarray) -> numpy.ndarray:
    """Per channel, the sum of x (N, C, H, W), in float64 (C,)."""
    n, c, hw = _bn_shape(x)
    out = numpy.empty(c, numpy.float64)
    check_call({"x": (x, x.dtype, x.size)}, {"out": (out, numpy.float64, c)})
    _call("bn_sum", x.dtype, x, n, c, hw, out)
    return out


def bn_sqdev(x: numpy.ndarray, mean: numpy.ndarray) -> numpy.ndarray:
    """Per channel, the sum of (x - mean)^2, in float64 (C,); mean float64 (C,)."""
    n, c, hw = _bn_shape(x)
    out = numpy.empty(c, numpy.float64)
    check_call({"x": (x, x.dtype, x.size), "mean": (mean, numpy.float64, c)}, {"out": (out, numpy.float64, c)})
    _call("bn_sqdev", x.dtype, x, n, c, hw, mean, out)
    return out


def bn_affine(x: numpy.ndarray, scale: numpy.ndarray, shift: numpy.ndarray) -> numpy.ndarray:
    """y = x * scale + shift per channel, x (N, C, H, W), scale and shift (C,) of x's dtype."""
    n, c, hw = _bn_shape(x)
    y = numpy.empty(x.shape, x.dtype)
    check_call(
        {"x": (x, x.dtype, x.size), "scale": (scale, x.dtype, c), "shift": (shift, x.dtype, c)},
        {"y": (y, x.dtype, x.size)},
    )
    _call("bn_affine", x.dtype, x, n, c, hw, scale, shift, y)
    return y


def bn_grad_sums(dy: numpy.ndarray, x: numpy.ndarray, mean: numpy.ndarray) -> numpy.ndarray:
    """Per channel, [sum dy, sum dy * (x - mean)] in float64 (2, C)."""
    n, c, hw = _bn_shape(x)
    out = numpy.empty((2, c), numpy.float64)
    check_call(
        {"dy": (dy, x.dtype, x.size), "x": (x, x.dtype, x.size), "mean": (mean, numpy.float64, c)},
        {"out": (out, numpy.float64, 2 * c)},
    )
    _call("bn_grad_sums", x.dtype, dy, x, n, c, hw, mean, out)
    return out


def bn_grad_apply(
    dy: numpy.ndarray, x: numpy.ndarray, a: numpy.ndarray, b: numpy.ndarray, k: numpy.ndarray
) -> numpy.ndarray:
    """dx = a dy + b x + k per channel; dy, x (N, C, H, W); a, b, k (C,) of x's dtype."""
    n, c, hw = _bn_shape(x)
    dx = numpy.empty(x.shape, x.dtype)
    vectors = {"a": (a, x.dtype, c), "b": (b, x.dtype, c), "k": (k, x.dtype, c)}
    check_call({"dy": (dy, x.dtype, x.size), "x": (x, x.dtype, x.size), **vectors}, {"dx": (dx, x.dtype, x.size)})
    _call("bn_grad_apply", x.dtype, dy, x, n, c, hw, a, b, k, dx)
    return dx
