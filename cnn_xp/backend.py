"""The one place where NumPy (CPU) and CuPy (CUDA GPU) differ.

Everything above this module (functions, layers, models, optimizers) computes with the
namespace returned by :func:`get_array_module`, which is taken from the arrays themselves,
and creates new arrays on ``array_device(x)`` of an input.  This module alone knows which
library is behind an array, how to move arrays between devices, whether a GPU is usable,
and how to draw random numbers on each device.

CuPy is optional: it is imported lazily, and a CuPy that is installed but has no usable
driver or GPU is treated as "no GPU" (``gpu_available()`` is False and never raises).
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import array_api_compat
import numpy  # host-side conversions only; array math goes through get_array_module()

__all__ = [
    "AGREEMENT",
    "RNG",
    "Device",
    "GPUUnavailableError",
    "HostToDevice",
    "adopt_like",
    "array_device",
    "device_of",
    "dlpack_device",
    "follows_input_device",
    "from_dlpack",
    "get_array_module",
    "gpu_available",
    "gpu_elementwise",
    "gpu_name",
    "gpu_scratch_bytes",
    "gpu_unavailable_reason",
    "is_gpu_array",
    "is_host_array",
    "is_out_of_memory",
    "on_device",
    "parse_device",
    "release_gpu_memory",
    "strided_view",
    "synchronize",
    "to_device",
    "to_numpy",
]

ENV_DEVICE = "CNN_XP_DEVICE"

AGREEMENT: dict[str, tuple[float, float]] = {"float64": (1e-10, 1e-12), "float32": (2e-4, 1e-5)}
"""(rtol, atol) within which a GPU result must equal the CPU's, per dtype: the same function
computed with another BLAS and other reduction orders.  The tests and ``cnn_xp.doctor`` use these."""
_INSTALL_HINT = "install CuPy with `pip install 'cnn_xp[cuda12]'` (CUDA 12) or `'cnn_xp[cuda13]'` (CUDA 13)"


class GPUUnavailableError(RuntimeError):
    """A GPU was asked for but cannot be used; the message says why and what to do."""


# --------------------------------------------------------------------------- CuPy, lazily

_cupy: ModuleType | None = None
_cupy_error: str | None = None
_cupy_tried = False


def _get_cupy() -> ModuleType | None:
    """Import CuPy once; return None (and remember why) when it cannot be imported."""
    global _cupy, _cupy_error, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            import cupy

            _cupy = cupy
        except Exception as exc:  # ImportError, or a broken CUDA install raising at import
            _cupy_error = f"{type(exc).__name__}: {exc}"
    return _cupy


def is_gpu_array(x: Any) -> bool:
    """True if ``x`` is a CuPy array (checked without importing CuPy)."""
    return array_api_compat.is_cupy_array(x)


def gpu_unavailable_reason(index: int = 0) -> str | None:
    """Why GPU ``index`` cannot be used, or None if it can. Never raises."""
    cupy = _get_cupy()
    if cupy is None:
        detail = f" ({_cupy_error})" if _cupy_error and "No module named" not in _cupy_error else ""
        return f"CuPy is not installed{detail}; {_INSTALL_HINT}"
    try:
        if not cupy.is_available():
            return (
                "CuPy is installed but finds no usable CUDA driver or GPU "
                "(cupy.is_available() is False); check `nvidia-smi` and the driver"
            )
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError and friends
        return f"CuPy cannot reach the CUDA driver ({type(exc).__name__}: {exc})"
    if index >= count:
        return f"there is no GPU {index}: this machine has {count} CUDA device(s) (0..{count - 1})"
    return None


def gpu_name(index: int = 0) -> str:
    """The name CUDA gives GPU ``index`` ("NVIDIA H200"); the GPU must be usable."""
    cupy = _get_cupy()
    assert cupy is not None
    name = cupy.cuda.runtime.getDeviceProperties(index)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


def gpu_available(index: int = 0) -> bool:
    """True if CuPy is installed and CUDA device ``index`` is usable. Never raises."""
    try:
        return gpu_unavailable_reason(index) is None
    except Exception:
        return False


# --------------------------------------------------------------------------- devices


@dataclass(frozen=True)
class Device:
    """A compute device: ``Device("cpu")`` or ``Device("gpu", index)``."""

    kind: str
    index: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("cpu", "gpu"):
            raise ValueError(f"Device kind must be 'cpu' or 'gpu', got {self.kind!r}")
        if not isinstance(self.index, int) or self.index < 0:
            raise ValueError(f"Device index must be an int >= 0, got {self.index!r}")

    @property
    def is_gpu(self) -> bool:
        return self.kind == "gpu"

    def __str__(self) -> str:
        return "cpu" if self.kind == "cpu" else f"gpu:{self.index}"


CPU = Device("cpu")
_DEVICE_RE = re.compile(r"^(cpu|gpu|cuda)(?::(\d+))?$")


def parse_device(spec: str | Device | Any | None = None) -> Device | Any:
    """Turn a device spec into a :class:`Device`, checking that a GPU asked for is usable.

    Accepted: ``"cpu"``, ``"gpu"``, ``"gpu:N"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (GPU 0
    if usable, else CPU), a :class:`Device`, or None (the ``CNN_XP_DEVICE`` environment
    variable, else ``"cpu"``).  The device object of another array-API library --
    ``torch.device("cpu")``, an ``array_api_strict.Device`` -- is returned as it is: arrays placed
    there are that library's (PyTorch tensors in, PyTorch tensors out).  Raises ValueError for an unknown spec and
    :class:`GPUUnavailableError` for a GPU that cannot be used.
    """
    if spec is None:
        spec = os.environ.get(ENV_DEVICE) or "cpu"
    if isinstance(spec, Device):
        device = spec
    elif _is_foreign_device(spec) and type(spec).__module__.split(".")[0] in _FOREIGN_LIBRARIES:
        return spec
    elif isinstance(spec, str):
        text = spec.strip().lower()
        if text == "auto":
            return Device("gpu", 0) if gpu_available(0) else CPU
        m = _DEVICE_RE.match(text)
        if m is None or (m.group(1) == "cpu" and m.group(2) not in (None, "0")):
            raise ValueError(
                f"device: unknown device {spec!r}; expected 'cpu', 'gpu', 'gpu:N', 'cuda', 'cuda:N' or 'auto'"
            )
        device = CPU if m.group(1) == "cpu" else Device("gpu", int(m.group(2) or 0))
    else:
        raise TypeError(
            f"device: expected a str, a cnn_xp.Device or a torch/array_api_strict device, got {type(spec).__name__}"
        )
    if device.is_gpu:
        reason = gpu_unavailable_reason(device.index)
        if reason is not None:
            raise GPUUnavailableError(f"device {str(device)!r} is not available: {reason}. Use device 'cpu' or 'auto'.")
    return device


def device_of(x: Any) -> Device:
    """The :class:`Device` holding array ``x`` (NumPy arrays and scalars are on the CPU)."""
    if is_gpu_array(x):
        return Device("gpu", int(x.device.id))
    if array_api_compat.is_numpy_array(x) or isinstance(x, (int, float, bool)):
        return CPU
    raise TypeError(f"device_of: {type(x).__name__} is not a NumPy or CuPy array")


def _is_foreign_device(device: Any) -> bool:
    """An array-API device object of a library other than NumPy/CuPy (PyTorch, array_api_strict)."""
    return (
        not isinstance(device, (str, Device)) and device is not None and type(device).__module__.split(".")[0] != "cupy"
    )


def to_numpy(x: Any) -> numpy.ndarray:
    """Copy ``x`` to a NumPy array on the host (no copy if it already is one, or if it is
    another library's CPU array: PyTorch, JAX, ... are viewed through DLPack)."""
    if isinstance(x, numpy.ndarray):
        return x
    if is_gpu_array(x):
        return x.get()
    if _is_strict(x):
        # array_api_strict on a non-default device: move explicitly, then view.
        xp = array_api_compat.array_namespace(x)
        return numpy.asarray(x.to_device(xp.__array_namespace_info__().default_device()))
    dev = dlpack_device(x)
    if dev is not None:
        return from_dlpack(x) if not dev.is_gpu else from_dlpack(x).get()
    return numpy.asarray(x)


def to_device(x: Any, device: str | Device | Any) -> Any:
    """Return ``x`` on ``device``; no copy when it is already there.

    ``x`` may be any DLPack-capable array (PyTorch, JAX, CuPy, NumPy, ...): a CPU array goes to
    ``"cpu"`` as a NumPy view of the same memory, a CUDA array to its own GPU as a CuPy view;
    only a real change of device copies.

    ``device`` is anything :func:`parse_device` accepts, or the device object of another
    array-API library (used by the tests to place arrays on ``array_api_strict``'s fake
    ``Device("device1")``).
    """
    if _is_foreign_device(device):
        if _is_strict(x):
            return x if array_api_compat.device(x) == device else x.to_device(device)
        xp = _namespace_of_device(device)
        return xp.asarray(to_numpy(x), device=device)
    dev = parse_device(device)
    if not dev.is_gpu:
        return to_numpy(x)
    cupy = _get_cupy()
    assert cupy is not None  # parse_device checked
    if is_gpu_array(x) and x.device.id == dev.index:
        return x
    if not is_gpu_array(x) and not _is_strict(x) and dlpack_device(x) == dev:
        return from_dlpack(x)  # e.g. a PyTorch CUDA tensor on that GPU: a view, no copy
    with cupy.cuda.Device(dev.index):
        return cupy.asarray(x if is_gpu_array(x) else to_numpy(x))


# --------------------------------------------------------------------------- DLPack exchange

_DLPACK_CPU, _DLPACK_CUDA = 1, 2  # DLDeviceType codes (dlpack.h): kDLCPU, kDLCUDA


def _is_strict(x: Any) -> bool:
    """array_api_strict arrays model devices that DLPack cannot see (its fake ``device1``
    reports itself as the CPU), so they are never imported implicitly."""
    return type(x).__module__.startswith("array_api_strict")


def dlpack_device(x: Any) -> Device | None:
    """The :class:`Device` of a DLPack-capable array, read from ``x.__dlpack_device__()``;
    None if ``x`` has no such method or lives on a device cnn_xp does not run on (ROCm, Metal, ...)."""
    query = getattr(x, "__dlpack_device__", None)
    if query is None:
        return None
    kind, index = query()
    if int(kind) == _DLPACK_CPU:
        return CPU
    if int(kind) == _DLPACK_CUDA:
        return Device("gpu", int(index))
    return None


def from_dlpack(x: Any) -> Any:
    """View a DLPack-capable array (PyTorch, JAX, CuPy, NumPy, ...) as cnn_xp's own array type on
    the same device, without a copy: a NumPy array for a CPU array, a CuPy array for a CUDA one.

    NumPy and CuPy arrays are returned as they are.  The result shares memory with ``x``: writing
    one changes the other.  The way back is the DLPack protocol of the result, e.g.
    ``torch.from_dlpack(scores)`` (also without a copy).  Raises TypeError for an object that is not
    a DLPack array or lives on another kind of device, and ValueError when the producer refuses
    to export (e.g. a PyTorch tensor that requires grad: pass ``t.detach()``).
    """
    if isinstance(x, numpy.ndarray) or is_gpu_array(x):
        return x
    dev = dlpack_device(x)
    if dev is None:
        raise TypeError(
            f"x: expected a DLPack-capable array on the CPU or a CUDA GPU (with __dlpack__ and __dlpack_device__), "
            f"got {type(x).__name__}"
        )
    try:
        if not dev.is_gpu:
            return numpy.from_dlpack(x)
        parse_device(dev)  # a clear GPUUnavailableError if CuPy or that GPU is missing
        cupy = _get_cupy()
        assert cupy is not None
        with cupy.cuda.Device(dev.index):
            return cupy.from_dlpack(x)
    except (BufferError, RuntimeError) as exc:
        if isinstance(exc, GPUUnavailableError):
            raise
        raise ValueError(f"x: its library refused to export it through DLPack ({type(exc).__name__}: {exc})") from None


def adopt_like(x: Any, like: Any) -> Any:
    """``x`` as an array of ``like``'s library when ``like`` is a NumPy/CuPy array and ``x`` is another
    library's DLPack array on the same device (a view, no copy); otherwise ``x`` unchanged, so
    that the caller's own check reports arrays of other devices.  Nothing ever moves between devices."""
    if type(x) is type(like) or not (isinstance(like, numpy.ndarray) or is_gpu_array(like)):
        return x
    if isinstance(x, numpy.ndarray) or is_gpu_array(x) or _is_strict(x):
        return x
    dev = dlpack_device(x)
    if dev is None or dev != device_of(like):
        return x
    return from_dlpack(x)


_FOREIGN_LIBRARIES = ("torch", "array_api_strict")  # whose device objects cnn_xp places arrays on


def _namespace_of_device(device: Any) -> ModuleType:
    module = type(device).__module__.split(".")[0]
    if module == "array_api_strict":
        import array_api_strict

        return array_api_strict
    if module == "torch":
        import array_api_compat.torch

        return array_api_compat.torch  # type: ignore[no-any-return]
    raise TypeError(f"device: unsupported device object {device!r} of type {type(device).__name__}")


# --------------------------------------------------------------------------- namespaces


def get_array_module(*arrays: Any) -> ModuleType:
    """The array-API namespace to compute with, taken from the arrays (None is ignored).

    NumPy arrays give ``array_api_compat.numpy``, CuPy arrays ``array_api_compat.cupy``,
    array-API libraries their own namespace.  Arrays of different libraries raise TypeError.
    """
    given = [a for a in arrays if a is not None]
    if given and all(type(a) is numpy.ndarray for a in given):
        # the common case, answered without array_namespace's checks: a training step asks
        # about 160 times per shard, and each check holds the GIL the other shard needs
        return _numpy_namespace()
    if given and _cupy is not None and all(type(a) is _cupy.ndarray for a in given):
        return _cupy_namespace()  # likewise on a GPU, where the checks are host time between launches
    return array_api_compat.array_namespace(*given)


@functools.cache
def _numpy_namespace() -> ModuleType:
    return array_api_compat.array_namespace(numpy.empty(0))


@functools.cache
def _cupy_namespace() -> ModuleType:
    import array_api_compat.cupy

    return array_api_compat.cupy


def array_device(x: Any) -> Any:
    """The native device object of array ``x``, to pass as ``device=`` when creating arrays."""
    return array_api_compat.device(x)


# --------------------------------------------------------------------------- the current device

_NO_CONTEXT = contextlib.nullcontext()


def on_device(where: Any) -> contextlib.AbstractContextManager[Any]:
    """A context that makes the device of ``where`` current while its block runs.

    CuPy allocates every new array, and launches every kernel, on the *current* CUDA device,
    whatever device the inputs live on (array-api-compat's CuPy ``zeros``/``empty``/``arange``
    ignore ``device=``).  Code working on arrays of GPU 1 must therefore run with GPU 1 current:
    ``with on_device(x): ...``.  ``where`` is an array, a :class:`Device`, a device string or a
    ``cupy.cuda.Device``; for the CPU, and for libraries whose operations follow their inputs'
    device (PyTorch, array_api_strict), this does nothing.
    """
    if where is None or isinstance(where, (numpy.ndarray, numpy.generic, int, float, bool)):
        return _NO_CONTEXT
    if isinstance(where, Device):
        if not where.is_gpu:
            return _NO_CONTEXT
        cupy = _get_cupy()
        assert cupy is not None, "a GPU Device exists only when CuPy is usable (parse_device checks)"
        return cupy.cuda.Device(where.index)
    if isinstance(where, str):
        return on_device(parse_device(where))
    if is_gpu_array(where):
        return where.device  # type: ignore[no-any-return]  # a cupy.cuda.Device: a context manager
    if type(where).__module__.split(".")[0] == "cupy" and hasattr(where, "__enter__"):
        return where  # type: ignore[no-any-return]  # a cupy.cuda.Device given as it is
    return _NO_CONTEXT


def follows_input_device(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Decorator: run ``fn`` with the device of its first array argument current (see
    :func:`on_device`), so a pure array function works on any GPU it is given."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with on_device(next((a for a in args if hasattr(a, "shape")), None)):
            return fn(*args, **kwargs)

    return run


def indexes_by_arrays(device: Any) -> bool:
    """Whether arrays on ``device`` take indexing by integer arrays (a gather), as NumPy, CuPy and
    PyTorch do; array_api_strict, which keeps to the standard, does not."""
    return not (_is_foreign_device(device) and type(device).__module__.startswith("array_api_strict"))


def is_host_array(x: Any) -> bool:
    """True if reading ``x`` from Python (``bool``, ``float``, ``.item()``) costs no
    device-to-host transfer: NumPy arrays and scalars, and other libraries' CPU arrays that DLPack
    reports on the CPU (PyTorch CPU tensors).  Such a read of a GPU array is a synchronisation."""
    if isinstance(x, (numpy.ndarray, numpy.generic, int, float, bool)):
        return True
    if is_gpu_array(x) or _is_strict(x):
        return _is_strict(x) and array_api_compat.device(x) == _strict_default_device(x)
    try:
        return dlpack_device(x) == CPU
    except Exception:  # a library whose __dlpack_device__ refuses (not ours to judge): assume not
        return False


def _strict_default_device(x: Any) -> Any:
    return array_api_compat.array_namespace(x).__array_namespace_info__().default_device()


# --------------------------------------------------------------------------- strided views


def strided_view(flat: Any, offset: int, shape: tuple[int, ...], strides: tuple[int, ...]) -> Any | None:
    """A read-only view of the 1-D contiguous array ``flat`` starting at element ``offset``, of
    ``shape`` with ``strides`` counted in elements; None for a library without such views (the
    caller then falls back to slices).  Copying such a view is one kernel on a GPU where the
    equivalent slices are one per window offset: it is how im2col's columns are built."""
    if flat.ndim != 1:
        raise ValueError(f"flat: expected a 1-D contiguous array, got shape {tuple(flat.shape)}")
    # The view's reach is checked against the array: as_strided reads wherever it is told.
    if any(n < 0 for n in shape) or any(s < 0 for s in strides) or offset < 0:
        raise ValueError(f"strided_view: negative shape {shape}, strides {strides} or offset {offset}")
    last = offset + sum((n - 1) * s for n, s in zip(shape, strides, strict=True)) if all(shape) else -1
    if last >= flat.shape[0]:
        raise ValueError(f"strided_view: shape {shape} with strides {strides} from {offset} reaches element "
                         f"{last} of an array of {flat.shape[0]}")  # fmt: skip
    if isinstance(flat, numpy.ndarray) or is_gpu_array(flat):
        lib = numpy if isinstance(flat, numpy.ndarray) else _get_cupy()
        assert lib is not None
        item = flat.itemsize
        if flat.strides[0] != item:  # a reshape may give a view that steps over elements
            flat = lib.ascontiguousarray(flat)  # (the strides below count in elements)
        return lib.lib.stride_tricks.as_strided(flat[offset:], shape=shape, strides=tuple(s * item for s in strides))
    if array_api_compat.is_torch_array(flat):
        import torch

        flat = flat.contiguous()  # as_strided counts from the storage, whatever the tensor's own stride
        return torch.as_strided(flat, shape, strides, flat.storage_offset() + offset)
    return None


def combine_into(out: Any, a: Any, b: Any, sign: int = 1) -> Any:
    """``out[...] = a + b`` (``sign=1``) or ``a - b`` (``sign=-1``), written into ``out``.

    NumPy and CuPy write the result straight into ``out`` (``out=``: one pass over memory);
    other libraries go through a temporary.  ``a`` may be ``out`` itself (an accumulation)."""
    if isinstance(out, numpy.ndarray) or is_gpu_array(out):
        xp = get_array_module(out)  # NumPy's / CuPy's own ufuncs, which take out=
        (xp.add if sign > 0 else xp.subtract)(a, b, out=out)
        return out
    out[...] = a + b if sign > 0 else a - b
    return out


# --------------------------------------------------------------------------- host -> device copies


class HostToDevice:
    """Copies host batches to ``device``, one batch ahead of use.

    ``submit(arrays)`` starts the copy and returns a ticket; ``receive(ticket)`` returns the
    arrays on the device.  On the CPU both are free (the arrays are returned as they are, no
    copy).  On a GPU the copies run on a side stream into a ring of :attr:`slots` preallocated
    buffer sets (pinned host staging + device memory), so the copy of batch k+1 overlaps the
    compute of batch k without a race:

    * before a slot is written again, the copy stream waits (on the GPU, not the host) for an
      event recorded on the compute stream after every kernel that read the slot's last batch
      was queued;
    * ``receive`` makes the compute stream wait for the copy's event -- the host never waits
      for a copy, and never for the compute stream;
    * the host rewrites a slot's pinned staging buffer only after that slot's previous copy is
      done (the copy of ``slots`` batches ago: long finished in a training loop).

    The arrays ``receive`` returns live in a slot and are overwritten ``slots`` batches later:
    :attr:`recycles` tells callers to copy (or cast) them before handing them on; the
    :class:`~cnn_xp.data.DataLoader` does.
    """

    slots = 2

    def __init__(self, device: str | Device | None = "cpu") -> None:
        self.device = parse_device(device)
        self._stream = None
        self._ring: list[dict[str, Any]] = []
        self._next = 0
        self._foreign = _is_foreign_device(self.device)  # another library's device: its own copies
        if isinstance(self.device, Device) and self.device.is_gpu:
            cupy = _get_cupy()
            assert cupy is not None
            with cupy.cuda.Device(self.device.index):
                self._stream = cupy.cuda.Stream(non_blocking=True)
            self._ring = [{"pinned": [], "dev": [], "copied": None} for _ in range(self.slots)]

    @property
    def recycles(self) -> bool:
        """True if received arrays are reused buffers (on a GPU), False if they are the caller's own."""
        return self._stream is not None

    def submit(self, arrays: tuple[numpy.ndarray, ...]) -> Any:
        if self._foreign:
            return tuple(to_device(a, self.device) for a in arrays)
        if self._stream is None:
            return arrays
        cupy = _get_cupy()
        assert cupy is not None
        slot = self._ring[self._next]
        self._next = (self._next + 1) % self.slots
        with cupy.cuda.Device(self.device.index):
            if slot["copied"] is not None:
                slot["copied"].synchronize()  # the host may now rewrite the pinned staging buffer
            # every kernel queued so far on the compute stream -- the readers of this slot's last
            # batch among them -- finishes before the copy stream writes the slot again
            self._stream.wait_event(cupy.cuda.get_current_stream().record())
            views = []
            for i, a in enumerate(arrays):
                pinned, dev = self._buffers(slot, i, a)
                host = pinned[: a.size].reshape(a.shape)
                host[...] = a
                out = dev[: a.size].reshape(a.shape)
                out.set(host, stream=self._stream)
                views.append(out)
            slot["copied"] = self._stream.record()
        return tuple(views), slot["copied"]

    def _buffers(self, slot: dict[str, Any], i: int, a: numpy.ndarray) -> tuple[Any, Any]:
        """Slot ``slot``'s flat pinned and device buffers for array ``i``, grown to hold ``a``."""
        cupy = _get_cupy()
        assert cupy is not None
        import cupyx

        pinned, dev = slot["pinned"], slot["dev"]
        if i == len(pinned) or pinned[i].size < a.size or pinned[i].dtype != a.dtype:
            # (allocated after the copy stream's wait above: memory the pool hands back is not
            # read by any kernel the copy can overtake)
            buffers = (cupyx.empty_pinned((a.size,), a.dtype), cupy.empty((a.size,), a.dtype))
            if i == len(pinned):
                pinned.append(buffers[0])
                dev.append(buffers[1])
            else:
                pinned[i], dev[i] = buffers
        return pinned[i], dev[i]

    def close(self) -> None:
        """Wait for the copies still in flight, so that their pinned staging memory may be
        freed and reused (a no-op on the CPU)."""
        for slot in self._ring:
            if slot["copied"] is not None:
                slot["copied"].synchronize()
        self._ring = []

    def receive(self, ticket: Any) -> tuple[Any, ...]:
        if self._stream is None:
            return tuple(ticket)
        arrays, copied = ticket
        cupy = _get_cupy()
        assert cupy is not None
        with cupy.cuda.Device(self.device.index):
            cupy.cuda.get_current_stream().wait_event(copied)  # the GPU waits, not the host
        return arrays


def synchronize(x: Any) -> None:
    """Wait until the device holding ``x`` has finished all queued work (no-op on the CPU);
    needed before reading a clock, since GPU kernels run asynchronously."""
    if is_gpu_array(x):
        with x.device:
            x.device.synchronize()


# --------------------------------------------------------------------------- GPU memory


def is_out_of_memory(exc: BaseException) -> bool:
    """True if ``exc`` is CuPy's out-of-memory error (never imports CuPy itself)."""
    cupy = _cupy if _cupy_tried else None
    return cupy is not None and isinstance(exc, cupy.cuda.memory.OutOfMemoryError)


def release_gpu_memory() -> None:
    """Give the blocks cached by CuPy's memory pools back to the driver (no-op without CuPy or a
    usable GPU: with no driver, CuPy raises on touching its pool)."""
    cupy = _cupy if _cupy_tried else None
    if cupy is not None and gpu_available():
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()


_scratch: dict[int, int] = {}


def gpu_scratch_bytes(x: Any) -> int | None:
    """Bytes a convolution on ``x``'s GPU may use for its im2col columns: an eighth of what that
    GPU had free (in CUDA and in CuPy's pool) when first asked, at least 64 MiB; None for arrays
    that are not on a GPU (their limits are the CPU cache's: see ``cnn_xp.functions.conv2d``)."""
    if not is_gpu_array(x):
        return None
    index = int(x.device.id)
    if index not in _scratch:
        cupy = _get_cupy()
        assert cupy is not None
        with cupy.cuda.Device(index):
            free, _ = cupy.cuda.runtime.memGetInfo()
            pooled = cupy.get_default_memory_pool().free_bytes()
        _scratch[index] = max(64 * 2**20, (int(free) + int(pooled)) // 8)
    return _scratch[index]


# --------------------------------------------------------------------------- fused element-wise kernels

_elementwise: dict[str, Any] = {}


def gpu_elementwise(x: Any, name: str, in_params: str, out_params: str, body: str) -> Callable[..., Any] | None:
    """CuPy's ``ElementwiseKernel(in_params, out_params, body, name)``, built once per name, when
    ``x`` is a CuPy array; None otherwise (the caller then takes its array operations).

    On a GPU every array operation is a kernel launch and its Python call, which outweigh the
    arithmetic of small arrays: a fused kernel does a chain of them in one.  The body is written
    in the part of C that is also Python statements (``m += a * (g - m);``, ``sqrt``), so that
    CuPy's test double can run it.  Call it as ``kernel(*inputs, *outputs)`` with the outputs
    given: they are updated in place."""
    if not is_gpu_array(x):
        return None
    kernel = _elementwise.get(name)
    if kernel is None:
        cupy = _get_cupy()
        assert cupy is not None
        kernel = _elementwise[name] = cupy.ElementwiseKernel(in_params, out_params, body, name)
    return kernel


# --------------------------------------------------------------------------- randomness


class RNG:
    """A seeded source of uniform random numbers on whatever device an array lives on.

    Host draws come from a NumPy ``Generator``; each GPU gets its own CuPy generator seeded
    from it, so the CPU stream is reproducible from the seed alone.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.host = numpy.random.default_rng(seed)
        self._gpu: dict[int, Any] = {}

    def uniform(self, shape: tuple[int, ...], like: Any) -> Any:
        """Uniform [0, 1) samples of ``shape`` with the floating dtype and device of ``like``."""
        if is_gpu_array(like):
            cupy = _get_cupy()
            assert cupy is not None
            dev = int(like.device.id)
            if dev not in self._gpu:
                with cupy.cuda.Device(dev):
                    self._gpu[dev] = cupy.random.default_rng(int(self.host.integers(2**63)))
            with cupy.cuda.Device(dev):
                return self._gpu[dev].random(shape, dtype=like.dtype)
        xp = get_array_module(like)
        host_dtype = numpy.float32 if like.dtype == xp.float32 else numpy.float64
        sample = self.host.random(shape, dtype=host_dtype)
        if isinstance(like, numpy.ndarray):
            return sample
        return xp.asarray(sample, device=array_device(like))

    def get_state(self) -> dict[str, Any]:
        """The host generator's state (JSON-serialisable)."""
        return dict(self.host.bit_generator.state)

    def set_state(self, state: dict[str, Any]) -> None:
        self.host.bit_generator.state = state
        self._gpu.clear()
