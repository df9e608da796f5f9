"""A test double of CuPy that behaves as CuPy does where cnn_xp's GPU path can go wrong.

NumPy computes underneath; what is modelled is CuPy's semantics, not its speed:

* ``cuda.runtime.getDeviceCount()`` GPUs (default 2, ``FAKE_CUPY_DEVICES``) and a *current device*
  (``with cupy.cuda.Device(i):``).  Every new array -- creation functions, ``*_like``, results of
  operations -- is placed on the current device, whatever ``device=`` says (as
  array-api-compat's CuPy creation functions do).
* An operation on an array that is not on the current device raises, as CuPy does between GPUs
  without peer access.
* Implicit conversion to NumPy (``numpy.asarray(x)``) raises TypeError; ``.get()`` and
  ``cupy.asnumpy`` are the explicit way.
* Every device-to-host read (``bool``, ``int``, ``float``, ``.item()``, ``.tolist()``, ``.get()``,
  ``asnumpy``) is counted in :data:`stats`, and raises ``cupyx.DeviceSynchronized`` inside
  ``cupyx.allow_synchronize(False)``.
* Every operation that writes device memory (a kernel launch; views and metadata are free) is
  counted.
* Streams and events: every access to device memory happens on the current stream; a stream
  that touches memory last touched on another stream must first have waited for it (an event
  of that stream recorded after the access, through ``wait_event``, or a host synchronisation),
  else :class:`StreamRace` is raised.
* Pinned host memory (``cupyx.empty_pinned``): ``ndarray.set(pinned, stream=s)`` is an
  asynchronous copy, so the host rewriting that pinned buffer before it has synchronised with
  ``s`` past the copy raises :class:`StreamRace` (pageable NumPy memory is staged at once, as
  CUDA does).
* The memory pool is per stream, as CuPy's: a freed block goes back to the pool of the stream
  that allocated it and is handed out again to an allocation of the same size on that stream,
  with the accesses it had -- so another stream's unfinished read of a freed array makes the
  reuse a :class:`StreamRace`.
* Only CuPy's ``ndarray`` methods exist (no ``to_device``, ``__index__``,
  ``__array_interface__``); copying a non-contiguous array between devices raises
  NotImplementedError; ``Device.synchronize()`` is a synchronisation; boolean-mask indexing,
  ``nonzero``, ``argwhere``, one-argument ``where`` and ``unique`` read the device (their
  output size) and are counted; float16 random draws are float32 draws cast.
"""

from __future__ import annotations

import builtins as _b
import contextlib
import functools
import os
import re
import threading
import weakref
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import numpy

__version__ = "14.0.0.fake"
_NDEV = int(os.environ.get("FAKE_CUPY_DEVICES", "2"))
# Each GPU's free memory; one allocation larger than it raises OutOfMemoryError, as CuPy's would.
_FREE = int(float(os.environ.get("FAKE_CUPY_FREE_MIB", "15360")) * 2**20)
# A GPU whose matrix products are wrong by this relative error (0: right), for checks that must fail.
_MATMUL_ERROR = float(os.environ.get("FAKE_CUPY_MATMUL_ERROR", "0"))


class StreamRace(AssertionError):  # noqa: N818 - named for what it reports
    """Memory accessed on one stream while another stream's unfinished access may still run."""


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.host_reads = 0
        self.launches = 0
        self.read_log: list[str] = []
        self.launch_log: list[str] = []  # the operation of each launch, for budgets' messages


stats = _Stats()
_state = threading.local()


def _cur() -> int:
    return getattr(_state, "device", 0)


# --------------------------------------------------------------------------- streams and events


_streams: list[Stream] = []


class Stream:
    _count = 0

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0, device: int | None = None) -> None:
        Stream._count += 1
        self.uid = Stream._count
        self.device_id = _cur() if device is None else device
        self.seq = 0  # accesses issued on this stream so far
        self.waited: dict[int, int] = {}  # other stream uid -> its seq that this stream is ordered after
        self.ptr = self.uid
        self.null = null
        _streams.append(self)  # (a device synchronisation waits for every stream ever made on it)

    def record(self, event: Event | None = None) -> Event:
        event = event or Event()
        event.stream, event.seq = self, self.seq
        return event

    def wait_event(self, event: Event) -> None:
        if event.stream is not None and event.stream is not self:
            uid = event.stream.uid
            self.waited[uid] = _b.max(self.waited.get(uid, 0), event.seq)

    def synchronize(self) -> None:
        _host_synced(self)

    def __enter__(self) -> Stream:
        stack = _state.__dict__.setdefault("streams", {}).setdefault(self.device_id, [])
        stack.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.streams[self.device_id].pop()

    def use(self) -> Stream:
        return self


class Event:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.stream: Stream | None = None
        self.seq = 0

    def synchronize(self) -> None:
        if self.stream is not None:
            _host_synced(self.stream, self.seq)

    def record(self, stream: Stream | None = None) -> None:
        (stream or get_current_stream()).record(self)

    @property
    def done(self) -> bool:
        return True


_null_streams: dict[int, Stream] = {}
_host_seen: dict[int, int] = {}  # stream uid -> seq the host has synchronised with


def _null(device: int) -> Stream:
    if device not in _null_streams:
        _null_streams[device] = Stream(null=True, device=device)
    return _null_streams[device]


def get_current_stream(device_id: int | None = None) -> Stream:
    device = _cur() if device_id is None else device_id
    stack = getattr(_state, "streams", {}).get(device, [])
    return stack[-1] if stack else _null(device)


def _host_synced(stream: Stream, seq: int | None = None) -> None:
    _host_seen[stream.uid] = _b.max(_host_seen.get(stream.uid, 0), stream.seq if seq is None else seq)


_last_access: dict[int, dict[int, tuple[Stream, int]]] = {}  # id(root buffer) -> stream uid -> (stream, seq)
# CuPy's pool keeps one free list per stream: (device, stream uid, rounded size) -> the freed
# blocks' access records, most recent last.
_free_blocks: dict[tuple[int, int, int], list[dict[int, tuple[Stream, int]]]] = {}
_POOL_DEPTH = 64  # freed blocks remembered per free list
_used: dict[int, int] = {}  # id(root buffer) -> bytes of the pool's block it holds, while it lives


def _rounded(nbytes: int) -> int:
    return -(-_b.max(nbytes, 1) // 512) * 512  # CuPy's allocation unit


def _root(a: numpy.ndarray) -> numpy.ndarray:
    while isinstance(a.base, numpy.ndarray):
        a = a.base
    return a


def _freed(key: int, pool: tuple[int, int, int]) -> None:
    """A device buffer was garbage-collected: its block returns to its stream's free list."""
    _used.pop(key, None)
    seen = _last_access.pop(key, None)
    if seen:
        blocks = _free_blocks.setdefault(pool, [])
        blocks.append(seen)
        del blocks[:-_POOL_DEPTH]


def _allocated(root: numpy.ndarray) -> None:
    """A new device buffer on the current device and stream: it may be a block freed on this
    stream, still carrying the other streams' accesses of its previous life."""
    key = id(root)
    if key in _last_access:
        return
    pool = (_cur(), get_current_stream().uid, _rounded(root.nbytes))
    blocks = _free_blocks.get(pool)
    _last_access[key] = blocks.pop() if blocks else {}
    _used[key] = pool[2]
    weakref.finalize(root, _freed, key, pool)


def _access(arrays: list[numpy.ndarray]) -> None:
    """Record that the current stream touches ``arrays``' memory, checking the ordering."""
    stream = get_current_stream()
    stream.seq += 1
    for a in arrays:
        root = _root(a)
        _allocated(root)
        seen = _last_access[id(root)]
        for uid, (_other, seq) in seen.items():
            if uid != stream.uid and _b.max(stream.waited.get(uid, 0), _host_seen.get(uid, 0)) < seq:
                raise StreamRace(
                    f"stream {stream.uid} touches memory that stream {uid} accessed at its step {seq}, "
                    f"without waiting for an event of it recorded after that access"
                )
        seen[stream.uid] = (stream, stream.seq)


# --------------------------------------------------------------------------- devices


class _Device:
    """cupy.cuda.Device: a context manager that makes GPU ``id`` current."""

    def __init__(self, device: Any = None) -> None:
        if isinstance(device, _Device):
            device = device.id
        self.id = _cur() if device is None else int(device)
        if not 0 <= self.id < _NDEV:
            raise runtime.CUDARuntimeError(f"cudaErrorInvalidDevice: invalid device ordinal {self.id}")
        self._stack: list[int] = []

    def __enter__(self) -> _Device:
        self._stack.append(_cur())
        _state.device = self.id
        return self

    def __exit__(self, *exc: Any) -> None:
        _state.device = self._stack.pop()

    def use(self) -> None:
        _state.device = self.id

    def synchronize(self) -> None:
        _host_read("Device.synchronize")  # CuPy declares it: refused inside allow_synchronize(False)
        for s in _streams:
            if s.device_id == self.id:
                _host_synced(s)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Device) and other.id == self.id

    def __hash__(self) -> int:
        return hash(("fake-gpu", self.id))

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"


class _Runtime(SimpleNamespace):
    class CUDARuntimeError(RuntimeError):
        pass

    @staticmethod
    def getDeviceCount() -> int:
        return _NDEV

    @staticmethod
    def runtimeGetVersion() -> int:
        return 12080

    @staticmethod
    def driverGetVersion() -> int:
        return 12080

    @staticmethod
    def getDeviceProperties(i: int) -> dict[str, Any]:
        return {"name": f"Fake GPU {i}".encode(), "totalGlobalMem": 16 * 2**30}

    @staticmethod
    def memGetInfo() -> tuple[int, int]:
        return _FREE, 16 * 2**30


runtime = _Runtime()


class OutOfMemoryError(MemoryError):
    def __init__(self, size: int, free: int) -> None:
        super().__init__(f"Out of memory allocating {size:,} bytes (allocated so far: {free:,} bytes).")


class _Pool:
    def free_all_blocks(self) -> None:
        pass

    def total_bytes(self) -> int:
        return 0

    def used_bytes(self) -> int:  # the blocks live arrays hold, as CuPy counts them (pinned: untracked)
        return _b.sum(_used.values()) if self is _pool else 0

    def free_bytes(self) -> int:
        return 0


_pool, _pinned_pool = _Pool(), _Pool()


def get_default_memory_pool() -> _Pool:
    return _pool


def get_default_pinned_memory_pool() -> _Pool:
    return _pinned_pool


def is_available() -> bool:
    return True


# --------------------------------------------------------------------------- pinned host memory


class _Pinned(numpy.ndarray):
    """Page-locked host memory (``cupyx.empty_pinned``): a NumPy array whose asynchronous copies
    to the device (``ndarray.set(pinned, stream=s)``) read it later, when ``s`` runs them; a host
    write to it before the host has synchronised with ``s`` past the copy is a race."""

    pending: ClassVar[dict[int, tuple[Stream, int]]] = {}  # id(root pinned buffer) -> (stream, seq of its copy)

    def __setitem__(self, key: Any, value: Any) -> None:
        root = _root(self)
        pending = _Pinned.pending.get(id(root))
        if pending is not None:
            stream, seq = pending
            if _host_seen.get(stream.uid, 0) < seq:
                raise StreamRace(
                    f"the host rewrites pinned memory whose copy to the device (stream {stream.uid}, its step "
                    f"{seq}) may not have run yet: synchronise with that copy first"
                )
            del _Pinned.pending[id(root)]
        super().__setitem__(key, value)


def _empty_pinned(shape: Any, dtype: Any = float, order: str = "C") -> numpy.ndarray:
    a = _Pinned(shape, dtype, order=order)  # owns its memory: its own root
    weakref.finalize(a, _Pinned.pending.pop, id(a), None)
    return a


# --------------------------------------------------------------------------- arrays


def _host_read(what: str) -> None:
    import cupyx

    if not cupyx._sync_allowed():
        raise cupyx.DeviceSynchronized(f"synchronisation ({what}) inside cupyx.allow_synchronize(False)")
    stats.host_reads += 1
    stats.read_log.append(what)
    _host_synced(get_current_stream())  # a read waits for its own stream, not for the others


class _Data:
    def __init__(self, a: numpy.ndarray) -> None:
        self.ptr = _root(a).__array_interface__["data"][0] + (
            a.__array_interface__["data"][0] - _root(a).__array_interface__["data"][0]
        )
        self.device_id = 0


def _check_here(x: ndarray) -> None:
    if x._dev != _cur():
        raise ValueError(
            f"The device where the array resides ({x._dev}) is different from the current device ({_cur()}). "
            "Peer access is unavailable between these devices."
        )


def _unwrap(obj: Any, touched: list[numpy.ndarray]) -> Any:
    if isinstance(obj, ndarray):
        _check_here(obj)
        touched.append(obj._a)
        return obj._a
    if isinstance(obj, numpy.ndarray) and obj.ndim > 0:
        raise TypeError("Unsupported type <class 'numpy.ndarray'>: a host array mixed with device arrays")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unwrap(o, touched) for o in obj)
    if isinstance(obj, dict):
        return {k: _unwrap(v, touched) for k, v in obj.items()}
    return obj


def _shares(result: numpy.ndarray, touched: list[numpy.ndarray]) -> bool:
    return _b.any(numpy.may_share_memory(result, t) for t in touched)


def _launched(name: str) -> None:
    stats.launches += 1
    stats.launch_log.append(name)


def _wrap(result: Any, touched: list[numpy.ndarray], write: bool, name: str = "?") -> Any:
    """Results on the current device; a launch is counted if device memory is written."""
    if isinstance(result, (tuple, list)):
        wrapped = [_wrap_one(r, touched) for r in result]
        new = [r._a for r in wrapped if isinstance(r, ndarray) and not _shares(r._a, touched)]
    else:
        wrapped = _wrap_one(result, touched)
        new = [wrapped._a] if isinstance(wrapped, ndarray) and not _shares(wrapped._a, touched) else []
    if new or write:
        _launched(name)
        _access(touched + new)
    return type(result)(wrapped) if isinstance(result, (tuple, list)) else wrapped


def _wrap_one(r: Any, touched: list[numpy.ndarray]) -> Any:
    if isinstance(r, numpy.ndarray):
        return ndarray._of(r)
    if isinstance(r, numpy.generic):  # CuPy returns 0-d device arrays, never host scalars
        return ndarray._of(numpy.asarray(r))
    return r


def _op(fn: Any, name: str) -> Any:
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("device", None)  # array-api-compat passes none; CuPy has no such argument
        touched: list[numpy.ndarray] = []
        a, k = _unwrap(args, touched), _unwrap(kwargs, touched)
        result = fn(*a, **k)
        if _MATMUL_ERROR and name == "matmul":
            result = result * result.dtype.type(1 + _MATMUL_ERROR)
        return _wrap(result, touched, write="out" in kwargs, name=name)

    run.__name__ = name
    return run


class ndarray:  # noqa: N801 - CuPy's name
    __array_priority__ = 100

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        """NumPy's ufuncs on device arrays run as CuPy's (``numpy.abs(x)`` is ``cupy.abs(x)``)."""
        mine = globals().get(ufunc.__name__)
        if method != "__call__" or mine is None:
            return NotImplemented
        return mine(*inputs, **kwargs)

    def __init__(self, shape: Any, dtype: Any = float) -> None:
        self._a = numpy.empty(shape, dtype)
        self._dev = _cur()

    @classmethod
    def _of(cls, a: numpy.ndarray, dev: int | None = None) -> ndarray:
        if a.base is None and a.nbytes > _FREE:
            raise OutOfMemoryError(a.nbytes, _FREE)
        obj = cls.__new__(cls)
        obj._a, obj._dev = a, _cur() if dev is None else dev
        if a.base is None:
            _allocated(a)
        return obj

    # metadata: free
    @property
    def shape(self) -> tuple[int, ...]:
        return self._a.shape

    @shape.setter
    def shape(self, value: tuple[int, ...]) -> None:  # in place, no copy, as CuPy's (and NumPy's)
        self._a.shape = value

    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: _Device(self._dev))
    data = property(lambda self: _Data(self._a))
    base = property(lambda self: None)

    @property
    def T(self) -> ndarray:
        return self._view(self._a.T)

    @property
    def mT(self) -> ndarray:
        return self._view(numpy.swapaxes(self._a, -1, -2))

    def _view(self, a: numpy.ndarray) -> ndarray:
        _check_here(self)
        return ndarray._of(a, self._dev)

    def __len__(self) -> int:
        return len(self._a)

    def __repr__(self) -> str:  # as CuPy's: the values, read from the device
        _host_read("repr")
        return repr(self._a)

    def __str__(self) -> str:
        _host_read("str")
        return str(self._a)

    def __format__(self, spec: str) -> str:
        _host_read("format")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # host reads: counted
    def get(self, stream: Any = None, order: str = "C", out: Any = None) -> numpy.ndarray:
        _host_read("get")
        return self._a.copy()

    def item(self) -> Any:
        _host_read("item")
        return self._a.item()

    def tolist(self) -> Any:
        _host_read("tolist")
        return self._a.tolist()

    def __bool__(self) -> bool:
        _host_read("bool")
        return _b.bool(self._a)

    def __float__(self) -> float:
        _host_read("float")
        return float(self._a)

    def __int__(self) -> int:
        _host_read("int")
        return int(self._a)

    def __array__(self, *args: Any, **kwargs: Any) -> numpy.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array explicitly."
        )

    def __iter__(self) -> Any:
        return (self[i] for i in range(len(self)))

    def __dlpack_device__(self) -> tuple[int, int]:
        return (2, self._dev)

    # host -> device: an explicit copy
    def set(self, arr: numpy.ndarray, stream: Stream | None = None) -> None:
        _check_here(self)
        ctx = stream if stream is not None else contextlib.nullcontext()
        with ctx:
            self._a[...] = arr
            _launched("set")
            _access([self._a])
            if isinstance(arr, _Pinned):  # asynchronous: the host must not rewrite it until synced
                stream_ = get_current_stream()
                _Pinned.pending[id(_root(arr))] = (stream_, stream_.seq)

    # indexing
    def __getitem__(self, key: Any) -> ndarray:
        touched = [self._a]
        _check_here(self)
        if _b.any(
            isinstance(k, ndarray) and k.dtype == numpy.bool_ for k in (key if isinstance(key, tuple) else (key,))
        ):
            _host_read("boolean mask")  # the output's size is read from the device first
        return _wrap(self._a[_unwrap(key, touched)], touched, write=False, name="getitem")

    def __setitem__(self, key: Any, value: Any) -> None:
        touched = [self._a]
        _check_here(self)
        k = _unwrap(key, touched)
        v = _unwrap(value, touched)
        self._a[k] = v
        _wrap(None, touched, write=True, name="setitem")

    # methods CuPy arrays have (array-api-compat and cnn_xp call some)
    def astype(self, dtype: Any, copy: bool = True, **kwargs: Any) -> ndarray:
        if not copy and numpy.dtype(dtype) == self.dtype:
            return self
        return _op(lambda a: a.astype(dtype, **kwargs), "astype")(self)

    def reshape(self, *shape: Any, order: str = "C") -> ndarray:
        return _op(lambda a: a.reshape(*shape, order=order), "reshape")(self)

    def transpose(self, *axes: Any) -> ndarray:
        return _op(lambda a: a.transpose(*axes), "transpose")(self)

    def copy(self, order: str = "C") -> ndarray:
        return _op(lambda a: a.copy(order=order), "copy")(self)

    def fill(self, value: Any) -> None:
        _check_here(self)
        self._a.fill(value)
        _wrap(None, [self._a], write=True, name="fill")

    def view(self, *args: Any) -> ndarray:
        return _op(lambda a: a.view(*args), "view")(self)

    def ravel(self) -> ndarray:
        return _op(lambda a: a.ravel(), "ravel")(self)

    def __getattr__(self, name: str) -> Any:
        if name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute {name!r}")
        if name == "nonzero":
            _host_read("nonzero")
        return functools.partial(_op(getattr(numpy.ndarray, name), name), self)


# The rest of cupy.ndarray's array methods (CuPy 14): anything else -- NumPy's ``to_device``,
# ``__array_interface__`` -- is an AttributeError, as on a real GPU.
_METHODS = frozenset(
    [
        "all",
        "any",
        "argmax",
        "argmin",
        "argpartition",
        "argsort",
        "choose",
        "clip",
        "compress",
        "conj",
        "conjugate",
        "cumprod",
        "cumsum",
        "diagonal",
        "dot",
        "flatten",
        "max",
        "mean",
        "min",
        "nonzero",
        "partition",
        "prod",
        "ptp",
        "put",
        "repeat",
        "round",
        "sort",
        "squeeze",
        "std",
        "sum",
        "swapaxes",
        "take",
        "trace",
        "var",
    ]
)


class ElementwiseKernel:
    """cupy.ElementwiseKernel for bodies in the part of C that is also Python statements
    (``m += a * (g - m);``, ``sqrt``), run as NumPy passes: one launch. As CuPy's: its arguments
    are the inputs then the outputs; every ``T`` argument shares one dtype (scalars are cast to
    it, two array dtypes are a TypeError); arrays on another device are a ValueError; given outputs
    must have the inputs' broadcast shape and are written in place."""

    def __init__(self, in_params: str, out_params: str, operation: str, name: str = "kernel", **kwargs: Any) -> None:
        self.ins = [p.split() for p in in_params.split(",")]
        self.outs = [p.split() for p in out_params.split(",")]
        self.name = name
        self.lines = [line.strip() for line in operation.split(";") if line.strip()]

    def __call__(self, *args: Any) -> None:
        params = self.ins + self.outs
        if len(args) != len(params):
            raise TypeError(f"Wrong number of arguments for {self.name!r}: {len(args)} given, {len(params)} expected")
        for a in args:
            if isinstance(a, numpy.ndarray):
                raise TypeError("Unsupported type <class 'numpy.ndarray'>")
            if isinstance(a, ndarray):
                _check_here(a)
        dtypes = {a.dtype for a, (t, _) in zip(args, params, strict=True) if isinstance(a, ndarray) and t == "T"}
        if len(dtypes) != 1:
            raise TypeError(f"Type is mismatched. {self.name!r}: T is {sorted(map(str, dtypes))}")
        (t_dtype,) = dtypes
        shape = numpy.broadcast_shapes(*(a.shape for a in args if isinstance(a, ndarray)))
        space: dict[str, Any] = {"sqrt": numpy.sqrt, "exp": numpy.exp, "log": numpy.log}
        for a, (t, n) in zip(args, params, strict=True):
            if isinstance(a, ndarray):
                space[n] = a._a
            else:
                space[n] = (t_dtype if t == "T" else numpy.dtype(t)).type(a)
        for a, (_, n) in zip(args[len(self.ins) :], self.outs, strict=True):
            if a.shape != shape:
                raise ValueError(f"{self.name!r}: output {n} has shape {a.shape}, the inputs broadcast to {shape}")
        with numpy.errstate(all="ignore"):  # a GPU kernel computes on: inf and nan, no warnings
            for line in self.lines:
                statement = re.fullmatch(r"(\w+)\s*([-+*/]?=)\s*(.+)", line)
                if statement is None:
                    raise NotImplementedError(f"{self.name!r}: the double runs only assignments, not {line!r}")
                target, op, expr = statement.groups()
                if op == "=":  # a plain assignment writes the output's elements
                    space[target][...] = eval(expr, space)  # the kernel's own body
                else:
                    exec(line, space)  # an augmented assignment, in place
        _launched(self.name)
        _access([a._a for a in args if isinstance(a, ndarray)])


def _binary(name: str) -> Any:
    ufunc = getattr(numpy.ndarray, name)

    def method(self: ndarray, other: Any) -> Any:
        touched = [self._a]
        _check_here(self)
        if isinstance(other, numpy.ndarray) and other.ndim > 0:
            raise TypeError("Unsupported type <class 'numpy.ndarray'>")
        o = _unwrap(other, touched)
        result = ufunc(self._a, o)
        if result is NotImplemented:
            return NotImplemented
        if name.startswith("__i"):
            _wrap(None, touched, write=True, name=name)
            return self
        return _wrap(result, touched, write=False, name=name)

    method.__name__ = name
    return method


for _name in [
    "add",
    "sub",
    "mul",
    "truediv",
    "floordiv",
    "mod",
    "pow",
    "matmul",
    "and",
    "or",
    "xor",
    "lshift",
    "rshift",
    "lt",
    "le",
    "gt",
    "ge",
    "eq",
    "ne",
    "radd",
    "rsub",
    "rmul",
    "rtruediv",
    "rfloordiv",
    "rmod",
    "rpow",
    "rmatmul",
    "rand",
    "ror",
    "rxor",
    "iadd",
    "isub",
    "imul",
    "itruediv",
    "ifloordiv",
    "imod",
    "ipow",
    "iand",
    "ior",
    "ixor",
]:
    setattr(ndarray, f"__{_name}__", _binary(f"__{_name}__"))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__", (lambda n: lambda self: _op(getattr(numpy.ndarray, f"__{n}__"), n)(self))(_name))
ndarray.__hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- the module's functions

_CREATION = {
    "empty",
    "zeros",
    "ones",
    "full",
    "arange",
    "eye",
    "linspace",
    "identity",
    "empty_like",
    "zeros_like",
    "ones_like",
    "full_like",
    "tri",
}


def asarray(obj: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    if isinstance(obj, ndarray):
        if obj._dev != _cur():  # CuPy copies between devices (peer copy)
            _peer_copyable(obj)
            out = ndarray._of(numpy.array(obj._a, dtype=dtype))
            _launched("peer copy")
            _access([out._a])
            return out
        return obj if dtype is None or numpy.dtype(dtype) == obj.dtype else obj.astype(dtype)
    out = ndarray._of(numpy.array(obj, dtype=dtype, order=order or "K"))  # host -> device: explicit
    _launched("host to device")
    _access([out._a])
    return out


def _peer_copyable(x: ndarray) -> None:
    if not (x._a.flags.c_contiguous or x._a.flags.f_contiguous):
        raise NotImplementedError("CuPy cannot copy non-contiguous array between devices.")


def array(obj: Any, dtype: Any = None, copy: Any = True, order: Any = "K", ndmin: int = 0, **kwargs: Any) -> ndarray:
    if isinstance(obj, ndarray) and copy is not False:  # a copy on the *current* device, as CuPy makes
        if obj._dev != _cur():
            _peer_copyable(obj)
        out = ndarray._of(numpy.array(obj._a, dtype=dtype, copy=True, order=order, ndmin=ndmin))
        _launched("copy" if obj._dev == _cur() else "peer copy")
        _access([out._a])
        return out
    return asarray(obj, dtype=dtype)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> numpy.ndarray:
    return a.get() if isinstance(a, ndarray) else numpy.asarray(a)


def ascontiguousarray(a: ndarray, dtype: Any = None) -> ndarray:
    return _op(numpy.ascontiguousarray, "ascontiguousarray")(a, dtype=dtype)


def from_dlpack(x: Any) -> ndarray:
    raise TypeError("the fake CuPy imports no DLPack arrays")


def get_array_module(*args: Any) -> ModuleType:
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else numpy


def _reading(fn: Any, name: str) -> Any:
    """Functions whose output size depends on the data: CuPy reads it from the device first."""

    def run(*args: Any, **kwargs: Any) -> Any:
        if name != "where" or len(args) + len(kwargs) == 1:
            _host_read(name)
        return fn(*args, **kwargs)

    run.__name__ = name
    return run


_READS = {"nonzero", "flatnonzero", "argwhere", "where", "unique", "extract"}


def _create(name: str) -> Any:
    fn = getattr(numpy, name)

    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("device", None)
        touched: list[numpy.ndarray] = []
        a, k = None, _unwrap(kwargs, touched)
        if name.endswith("_like") and args and isinstance(args[0], ndarray):
            a = (args[0]._a, *_unwrap(args[1:], touched))  # only its shape and dtype are read: any device
        a = _unwrap(args, touched) if a is None else a
        out = ndarray._of(fn(*a, **k))  # on the current device, like CuPy
        if name not in ("empty", "empty_like"):  # an allocation launches nothing, touches nothing
            _launched(name)
            _access([out._a])
        return out

    run.__name__ = name
    return run


_SKIP = {
    "asarray",
    "array",
    "ndarray",
    "asnumpy",
    "ascontiguousarray",
    "get_array_module",
    "from_dlpack",
    "random",
    "linalg",
    "fft",
    "testing",
    "ma",
    "lib",
    "char",
    "rec",
    "ctypeslib",
    "polynomial",
    "emath",
    "typing",
    "exceptions",
    "dtypes",
    "f2py",
    "show_config",
    "show_runtime",
    "info",
    "test",
}
_names: list[str] = []
for _n in dir(numpy):
    if _n.startswith("_") or _n in _SKIP:
        continue
    _obj = getattr(numpy, _n)
    if isinstance(_obj, (type, int, float, str, numpy.dtype)) or _obj is None:
        globals()[_n] = _obj  # dtypes, constants, classes (dtype, integer, floating, ...)
    elif callable(_obj):
        globals()[_n] = _create(_n) if _n in _CREATION else _op(_obj, _n)
        if _n in _READS:
            globals()[_n] = _reading(globals()[_n], _n)
    else:
        continue
    _names.append(_n)
bool_ = numpy.bool_
__all__ = sorted(
    set(_names)
    | {"asarray", "array", "ndarray", "asnumpy", "ascontiguousarray", "get_array_module", "from_dlpack", "bool_"}
)


def _submodule(name: str, source: Any) -> ModuleType:
    module = ModuleType(f"cupy.{name}")
    names = [n for n in dir(source) if not n.startswith("_") and callable(getattr(source, n))]
    for n in names:
        setattr(module, n, _op(getattr(source, n), n))
    module.__all__ = names  # type: ignore[attr-defined]
    return module


linalg = _submodule("linalg", numpy.linalg)
fft = _submodule("fft", numpy.fft)


class _Generator:
    """cupy.random.Generator: draws on the current device (from a NumPy generator underneath)."""

    def __init__(self, seed: Any) -> None:
        self._rng = numpy.random.default_rng(seed)

    def random(self, size: Any = None, dtype: Any = numpy.float64, out: Any = None) -> ndarray:
        dtype = numpy.dtype(dtype)
        if dtype.kind != "f":
            raise TypeError(f"Unsupported dtype {dtype.name} for random")
        drawn = numpy.float32 if dtype == numpy.float16 else dtype  # float16: drawn as float32, then cast
        out_ = ndarray._of(self._rng.random(size, dtype=drawn))
        _launched("random")
        _access([out_._a])
        return out_ if drawn == dtype else out_.astype(dtype)


def _as_strided(x: ndarray, shape: Any = None, strides: Any = None) -> ndarray:
    """cupy.lib.stride_tricks.as_strided: a view, no launch."""
    _check_here(x)
    return ndarray._of(numpy.lib.stride_tricks.as_strided(x._a, shape=shape, strides=strides), x._dev)


lib = ModuleType("cupy.lib")
lib.stride_tricks = SimpleNamespace(as_strided=_as_strided)  # type: ignore[attr-defined]

random = ModuleType("cupy.random")
random.default_rng = _Generator  # type: ignore[attr-defined]

cuda = ModuleType("cupy.cuda")
cuda.Device = _Device  # type: ignore[attr-defined]
cuda.Stream = Stream  # type: ignore[attr-defined]
cuda.Event = Event  # type: ignore[attr-defined]
cuda.get_current_stream = get_current_stream  # type: ignore[attr-defined]
cuda.runtime = runtime  # type: ignore[attr-defined]
cuda.memory = SimpleNamespace(OutOfMemoryError=OutOfMemoryError)  # type: ignore[attr-defined]
cuda.device = SimpleNamespace(Device=_Device)  # type: ignore[attr-defined]
cuda.is_available = is_available  # type: ignore[attr-defined]


def _install_submodules() -> None:
    import sys

    for name, module in (("cuda", cuda), ("random", random), ("linalg", linalg), ("fft", fft)):
        sys.modules[f"cupy.{name}"] = module
    sys.modules["cupy.cuda.device"] = cuda.device  # type: ignore[assignment]
    sys.modules["cupy.cuda.runtime"] = runtime  # type: ignore[assignment]
    sys.modules["cupy.cuda.memory"] = cuda.memory  # type: ignore[assignment]


_install_submodules()
