"""The book's trained weights (``params.pkl``, ``deep_convnet_params.pkl``) into cnn_xp.

The book saves its parameters with ``pickle``; loading a pickle normally runs whatever code
it names. :func:`read_book_pickle` reads one with an unpickler that accepts exactly one
shape of data — a dict of str to NumPy arrays — and constructs nothing else: the few NumPy
names such a pickle uses are answered by inert stand-ins that only record their arguments,
and the arrays are rebuilt from the recorded bytes with ``numpy.frombuffer``. Any other
global, any out-of-band buffer or any other top-level shape is refused, and nothing named in
the file is ever called.

:func:`book_network` then finds which of the book's networks the arrays fit (SimpleConvNet or
DeepConvNet, and its input size), and folds in what the book's non-inverted Dropout implies:
the book scales activations by ``1 - ratio`` at test time, cnn_xp scales by ``1 / (1 - ratio)``
while training, so the converted DeepConvNet's last affine layer takes the two factors of 0.5
(W8 by 0.25, b8 by 0.5) and gives the book's test-time outputs.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy

from ..models import DeepConvNet, Network, SimpleConvNet
from ..models.spec import check_spec

MAX_PICKLE_BYTES = 2**31  # the book's files are 1 MB and 3.4 MB
_ARRAY_DTYPES = {"f2", "f4", "f8", "<f2", "<f4", "<f8", ">f2", ">f4", ">f8"}


class BookPickleError(ValueError):
    """The file is not a pickle of a dict of NumPy float arrays (nothing in it was run)."""


class _Ndarray:
    """Stands for ``numpy.ndarray`` when a pickle names it: a marker, never a constructor."""


class _Dtype:
    """Stands for ``numpy.dtype(name, align, copy)``: records the name and byte order."""

    def __init__(self, name: Any, align: Any = False, copy: Any = False) -> None:
        if not isinstance(name, str) or name not in _ARRAY_DTYPES:
            raise BookPickleError(f"only float16/32/64 arrays are accepted, got dtype {name!r}")
        self.name, self.order = name, "<"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise BookPickleError("malformed dtype state")
        self.order = state[1]

    def numpy(self) -> numpy.dtype:
        order: Any = self.order if self.order in "<>" else "="
        return numpy.dtype(self.name.lstrip("<>")).newbyteorder(order)


class _Array:
    """Stands for an ndarray being unpickled: collects shape, dtype and raw bytes."""

    def __init__(self) -> None:
        self.shape: tuple[int, ...] | None = None
        self.dtype: _Dtype | None = None
        self.fortran = False
        self.data = b""

    def __setstate__(self, state: Any) -> None:  # (version, shape, dtype, is_fortran, raw bytes)
        if not (isinstance(state, tuple) and len(state) == 5):
            raise BookPickleError("malformed array state")
        _, shape, dtype, fortran, data = state
        self._set(shape, dtype, bool(fortran), data)

    def _set(self, shape: Any, dtype: Any, fortran: bool, data: Any) -> None:
        if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise BookPickleError("malformed array shape")
        if not isinstance(dtype, _Dtype) or not isinstance(data, (bytes, bytearray)):
            raise BookPickleError("malformed array data")
        if math.prod(shape) * dtype.numpy().itemsize != len(data):
            raise BookPickleError(f"an array of shape {shape} does not match its {len(data)} bytes")
        self.shape, self.dtype, self.fortran, self.data = shape, dtype, fortran, bytes(data)

    def numpy(self) -> numpy.ndarray:
        if self.shape is None or self.dtype is None:
            raise BookPickleError("an array without data")
        flat = numpy.frombuffer(self.data, dtype=self.dtype.numpy())
        return numpy.array(
            flat.reshape(self.shape, order="F" if self.fortran else "C"), dtype=flat.dtype.newbyteorder("=")
        )


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _Array:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty array to be filled by BUILD."""
    if cls is not _Ndarray:
        raise BookPickleError("only numpy.ndarray may be reconstructed")
    return _Array()


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> _Array:
    """``numpy.core.numeric._frombuffer(buf, dtype, shape, order)`` (pickle protocol 5)."""
    array = _Array()
    data = buffer.raw() if isinstance(buffer, pickle.PickleBuffer) else buffer
    array._set(shape, dtype, order == "F", bytes(data) if isinstance(data, memoryview) else data)
    return array


def _latin1(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(text, 'latin1')``: how pickle protocols 0-2 spell a bytes object."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise BookPickleError("only latin-1 text may be encoded to bytes")
    return text.encode("latin-1")


_ALLOWED = {
    ("_codecs", "encode"): _latin1,
    ("numpy", "ndarray"): _Ndarray,
    ("numpy", "dtype"): _Dtype,
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _frombuffer for core in ("core", "_core")},
}


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise BookPickleError(f"refers to {module}.{name}, which is not part of an array (refused)") from None

    def persistent_load(self, pid: Any) -> Any:
        raise BookPickleError("uses persistent references (refused)")


MAX_DEPTH = 64  # nesting of containers: the book's files nest 3 deep (dict, array state tuple, dtype)
MAX_MEMO = 1 << 16  # memo entries: a few per array
MAX_OPCODES = 1 << 20  # the book's files have a few hundred


def _check_opcodes(data: bytes) -> None:
    """Walk the pickle's opcodes without building anything (pickletools), tracking the stack's
    nesting and the memo, so that what the unpickler would allocate is bounded first: a deep
    nesting (the interpreter's recursion), a memo index far beyond the entries stored (the
    unpickler grows its memo to the index), or a declared length beyond the file are refused."""
    import pickletools

    stack: list[int | None] = []  # the nesting depth of each value; None: a mark
    memo: dict[int, int] = {}
    count = 0
    try:
        for op, raw, _ in pickletools.genops(io.BytesIO(data)):
            arg: Any = raw
            count += 1
            if count > MAX_OPCODES:
                raise BookPickleError(f"has more than {MAX_OPCODES} opcodes")
            if op.name in ("BINPUT", "LONG_BINPUT", "PUT", "MEMOIZE"):
                index = len(memo) if op.name == "MEMOIZE" else int(arg)
                if index > MAX_MEMO or len(memo) >= MAX_MEMO:
                    raise BookPickleError(f"stores memo entry {index} (at most {MAX_MEMO} are accepted)")
                memo[index] = (stack[-1] or 0) if stack else 0
                continue
            if op.name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) not in memo:
                    raise BookPickleError(f"reads memo entry {arg}, which was never stored")
                stack.append(memo[int(arg)])
                continue
            taken: list[int] = []
            for item in reversed(op.stack_before):
                if item is pickletools.stackslice:
                    while stack and stack[-1] is not None:
                        taken.append(stack.pop())  # type: ignore[arg-type]
                    if not stack:
                        raise BookPickleError("a mark is missing (malformed pickle)")
                    stack.pop()
                elif item is pickletools.markobject:
                    continue  # taken with its slice
                elif stack:
                    value = stack.pop()
                    if value is None:
                        raise BookPickleError("a mark where a value belongs (malformed pickle)")
                    taken.append(value)
                else:
                    raise BookPickleError("an opcode with too few values on the stack (malformed pickle)")
            depth = 1 + max(taken, default=-1)
            if depth > MAX_DEPTH:
                raise BookPickleError(f"nests more than {MAX_DEPTH} deep")
            for item in op.stack_after:
                stack.append(None if item is pickletools.markobject else depth)
            if len(stack) > MAX_OPCODES:
                raise BookPickleError("its stack grows beyond bounds")
    except BookPickleError:
        raise
    except (ValueError, pickle.UnpicklingError, EOFError) as exc:  # a declared length beyond the file, ...
        raise BookPickleError(f"not a pickle of named arrays ({exc})") from None


def read_book_pickle(path: str | os.PathLike[str]) -> dict[str, numpy.ndarray]:
    """The dict of arrays in a pickle as the book writes one, read without running anything.
    Raises BookPickleError (a ValueError) naming the file for anything else."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise BookPickleError(f"is {size} bytes; the book's weight files are a few MB")
        data = path.read_bytes()
        _check_opcodes(data)  # bounded before the unpickler allocates anything
        obj = _Unpickler(io.BytesIO(data)).load()
        if not isinstance(obj, dict) or not obj:
            raise BookPickleError(f"holds a {type(obj).__name__}, not a dict of arrays")
        arrays = {}
        for key, value in obj.items():
            if not isinstance(key, str) or not isinstance(value, _Array):
                raise BookPickleError(f"entry {key!r} is not a named array")
            arrays[key] = value.numpy()
            if not numpy.isfinite(arrays[key]).all():
                raise BookPickleError(
                    f"array {key!r} holds non-finite values (NaN or inf); a network of them would predict nothing"
                )
        return arrays
    except BookPickleError as exc:
        raise BookPickleError(f"{path}: {exc}") from None
    except OSError as exc:
        raise BookPickleError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        OverflowError,
        RecursionError,
    ) as exc:
        raise BookPickleError(f"{path}: not a pickle of named arrays ({type(exc).__name__}: {exc})") from None


BOOK_DROPOUT = 0.5  # the book's DeepConvNet: Dropout(0.5) after its two affine layers


def book_network(params: dict[str, numpy.ndarray], dtype: str | None = None) -> Network:
    """The cnn_xp network (SimpleConvNet or DeepConvNet, with the book's layer settings) whose
    parameters have these names and shapes, holding these values — for DeepConvNet with the
    book's test-time dropout scaling folded into W8 and b8. ``dtype`` defaults to the arrays'
    (the book's files are float64). Raises ValueError if the arrays fit neither network."""
    shapes = {k: tuple(v.shape) for k, v in params.items()}
    net = _matching_network(shapes, dtype or str(next(iter(params.values())).dtype))
    values = dict(params)
    if isinstance(net, DeepConvNet):
        keep = 1.0 - BOOK_DROPOUT
        values["W8"] = values["W8"] * keep * keep  # Dropout1 before Affine2, Dropout2 after it
        values["b8"] = values["b8"] * keep
    net.load_state_dict(values)
    return net


def _matching_network(shapes: dict[str, tuple[int, ...]], dtype: str) -> Network:
    """Find the book network and square input size (H = W) whose parameter shapes are ``shapes``."""
    keys = set(shapes)
    if keys == {f"{k}{i}" for k in "Wb" for i in range(1, 4)} and len(shapes["W1"]) == 4:
        fn, c, fs, _ = shapes["W1"]
        cls: Any = SimpleConvNet
        base = {"conv_param": {"filter_num": fn, "filter_size": fs, "pad": 0, "stride": 1}}
        extra = {"hidden_size": shapes["W2"][1], "output_size": shapes["W3"][1]}
    elif keys == {f"{k}{i}" for k in "Wb" for i in range(1, 9)} and len(shapes["W1"]) == 4:
        c = shapes["W1"][1]
        cls, base = DeepConvNet, {}
        extra = {"hidden_size": shapes["W7"][1], "output_size": shapes["W8"][1]}
    else:
        raise ValueError(
            f"the arrays {sorted(shapes)} are neither the book's SimpleConvNet (W1..W3, b1..b3) nor its "
            "DeepConvNet (W1..W8, b1..b8)"
        )
    for size in range(1, 1025):
        try:
            kwargs, _ = cls.layer_configs(input_dim=(c, size, size), **base, **extra)
        except ValueError:
            continue  # too small for the network's filters and pooling
        _, net_shapes = check_spec({"name": cls.__name__, "kwargs": kwargs})
        if net_shapes == shapes:
            return cls(input_dim=(c, size, size), **base, **extra, dtype=dtype, device="cpu")
    raise ValueError(f"the arrays have the names of the book's {cls.__name__} but fit no square input size")
