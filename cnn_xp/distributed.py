"""Data-parallel training over MPI (mpi4py), with NCCL for GPU arrays (``cupy.cuda.nccl``).

Launch the same program on several processes (``mpirun -n 4 python -m cnn_xp.train
--distributed``). Every rank holds a full copy of the network; each takes its own slice of
every *global* batch, computes gradients on it, and :func:`allreduce_gradients` averages them
over all ranks, weighted by the samples each rank saw, so that every rank applies the same
update a single process would apply to the whole global batch.

Host (NumPy) arrays travel through MPI. GPU (CuPy) arrays travel through NCCL on each rank's
GPU (``gpu:local_rank``), with MPI used only to hand out the NCCL id. mpi4py is optional
(``pip install 'cnn_xp[mpi]'``); nothing here is imported by a single-process run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

import numpy

from .backend import Device, array_device, get_array_module, is_gpu_array, on_device, to_numpy

__all__ = [
    "DistributedUnavailableError",
    "abort",
    "agree",
    "allreduce_gradients",
    "allreduce_step",
    "allreduce_sum",
    "broadcast_params",
    "init",
    "is_initialized",
    "local_rank",
    "local_size",
    "rank",
    "set_timeout",
    "size",
]

_comm: Any = None
_local_rank = 0
_local_size = 1
DEFAULT_TIMEOUT = 300.0  # seconds a rank waits in a collective for the others (see set_timeout)
_timeout = DEFAULT_TIMEOUT
_nccl: dict[int, Any] = {}


class DistributedUnavailableError(RuntimeError):
    """mpi4py (and an MPI library) is needed for distributed training."""


def init() -> Any:
    """Initialise MPI once and return the world communicator (idempotent)."""
    global _comm, _local_rank, _local_size
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise DistributedUnavailableError(
                f"distributed training needs mpi4py ({exc}); install it with `pip install 'cnn_xp[mpi]'` "
                "(or `pip install mpi4py mpich`) and launch with mpirun"
            ) from None
        _comm = MPI.COMM_WORLD
        node = _comm.Split_type(MPI.COMM_TYPE_SHARED, key=_comm.rank)
        _local_rank, _local_size = node.rank, node.size
    return _comm


def is_initialized() -> bool:
    return _comm is not None


def rank() -> int:
    """This process's rank in [0, size()); 0 when not initialised."""
    return 0 if _comm is None else int(_comm.rank)


def size() -> int:
    """Number of processes; 1 when not initialised."""
    return 1 if _comm is None else int(_comm.size)


def local_rank() -> int:
    """Rank among the processes on this node: the GPU index a rank uses."""
    return _local_rank


def local_size() -> int:
    """Number of processes on this node (they share its cores); 1 when not initialised."""
    return _local_size


def set_timeout(seconds: float) -> None:
    """How long a rank waits in a collective (MPI) for the other ranks before it ends the whole
    job with a message: a rank that stalled (stopped, a hung file system) or died without a word
    would otherwise hang its peers forever.  Collectives over NCCL (GPU arrays) are not timed."""
    global _timeout
    if not seconds > 0:
        raise ValueError(f"seconds: expected a positive number, got {seconds!r}")
    _timeout = float(seconds)


def _wait(request: Any, what: str) -> None:
    """Wait for a non-blocking MPI request; past the timeout, end the job with one line."""
    deadline = time.monotonic() + _timeout
    while not request.Test():
        if time.monotonic() > deadline:
            abort(
                f"rank {rank()}: no answer from the other ranks for {_timeout:g} s in {what} "
                "(a rank stalled or died); ending the job (--collective-timeout sets the wait)"
            )


def agree(status: dict[str, Any]) -> list[dict[str, Any]]:
    """Every rank's ``status`` (small, JSON-like), gathered on every rank after all have arrived
    (or the job ends after the timeout): how ranks decide together whether to go on."""
    if size() == 1:
        return [status]
    _wait(_comm.Ibarrier(), "the start-up check")
    return list(_comm.allgather(status))


def abort(message: str, code: int = 1) -> None:
    """Print ``message`` and bring the whole job down, so no other rank waits forever in a collective."""
    print(message, file=sys.stderr, flush=True)
    if _comm is not None and _comm.size > 1:
        time.sleep(0.5)  # let mpirun forward the message before it tears the job down
        _comm.Abort(code)
        os._exit(code)  # MPI_Abort may return before the process manager kills this process


def _mpi_dtype(dtype: numpy.dtype) -> Any:
    from mpi4py import MPI

    return {numpy.dtype("float32"): MPI.FLOAT, numpy.dtype("float64"): MPI.DOUBLE}[numpy.dtype(dtype)]


def _nccl_comm(device_id: int) -> Any:
    """One NCCL communicator per GPU, its id broadcast from rank 0 over MPI.  NCCL binds a
    communicator to the device current when it is made: GPU ``device_id``, made current here."""
    if device_id not in _nccl:
        from cupy.cuda import nccl

        uid = nccl.get_unique_id() if rank() == 0 else None
        uid = _comm.bcast(uid, root=0)
        with on_device(Device("gpu", device_id)):
            _nccl[device_id] = nccl.NcclCommunicator(size(), uid, rank())
    return _nccl[device_id]


def _nccl_dtype(dtype: Any) -> int:
    from cupy.cuda import nccl

    return {numpy.dtype("float32"): nccl.NCCL_FLOAT32, numpy.dtype("float64"): nccl.NCCL_FLOAT64}[numpy.dtype(dtype)]


def allreduce_sum(buffer: Any) -> Any:
    """Element-wise sum of a 1-D float buffer over all ranks, in place; returns it."""
    if size() == 1:
        return buffer
    if is_gpu_array(buffer):
        import cupy

        with on_device(buffer):  # the buffer's GPU, and that GPU's current stream
            comm = _nccl_comm(int(buffer.device.id))
            stream = cupy.cuda.get_current_stream()
            comm.allReduce(
                buffer.data.ptr, buffer.data.ptr, buffer.size, _nccl_dtype(buffer.dtype), 0, stream.ptr
            )  # 0: ncclSum
        return buffer
    from mpi4py import MPI

    _wait(_comm.Iallreduce(MPI.IN_PLACE, [buffer, _mpi_dtype(buffer.dtype)], op=MPI.SUM), "an all-reduce")
    return buffer


def allreduce_gradients(grads: Mapping[str, Any], count: int | None = None) -> dict[str, Any]:
    """The mean of ``grads`` over all ranks (new arrays, same keys, shapes and device).

    With ``count`` (this rank's samples in the global batch) the mean is weighted by it, so
    uneven slices of a global batch still give exactly the global-batch mean gradient; a rank
    with 0 samples contributes nothing. All gradients travel in one message.
    """
    return allreduce_step(grads, count)[0]


def allreduce_step(
    grads: Mapping[str, Any], count: int | None = None, extra: tuple[float, ...] = ()
) -> tuple[dict[str, Any], list[float]]:
    """:func:`allreduce_gradients` plus ``extra`` scalars (e.g. a stop flag) summed over ranks
    in the same message; returns ``(grads, extra_sums)``."""
    keys = list(grads)
    if size() == 1 and count is None:
        return dict(grads), list(extra)
    first = grads[keys[0]]
    xp = get_array_module(first)
    weight = 1.0 if count is None else float(count)
    with on_device(first):
        flat = xp.concat([xp.reshape(grads[k], (-1,)) * weight for k in keys])
        tail = xp.asarray([weight, *extra], dtype=flat.dtype, device=array_device(flat))
        buffer = allreduce_sum(xp.concat([flat, tail]))
        # the summed weights (sum of counts, or size()) divide on the device: no read for them
        total = xp.clip(buffer[flat.shape[0]], 1.0, None)
        sums = [float(v) for v in to_numpy(buffer[flat.shape[0] + 1 :])] if extra else []
        out, offset = {}, 0
        for k in keys:
            n = math.prod(grads[k].shape)
            out[k] = xp.reshape(buffer[offset : offset + n], grads[k].shape) / total
            offset += n
    return out, sums


def broadcast_params(model: Any, root: int = 0) -> None:
    """Make every rank's parameters and buffers equal to rank ``root``'s."""
    if size() == 1:
        return
    state = model.state_dict()
    for key, value in state.items():
        if is_gpu_array(value):
            import cupy

            with on_device(value):
                buf = cupy.ascontiguousarray(value)
                _nccl_comm(int(buf.device.id)).bcast(
                    buf.data.ptr, buf.size, _nccl_dtype(buf.dtype), root, cupy.cuda.get_current_stream().ptr
                )
        else:
            buf = numpy.ascontiguousarray(value)
            _wait(_comm.Ibcast([buf, _mpi_dtype(buf.dtype)], root=root), "the broadcast of the weights")
        state[key] = buf
    model.load_state_dict(state)
