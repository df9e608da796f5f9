"""The CPU's threads: how many cnn_xp may use, and the pool that runs a batch's shards.

One knob, the one NumPy users already have: the BLAS library's thread count
(``OPENBLAS_NUM_THREADS``, ``threadpoolctl``, ``cnn_xp train --threads``, or
:func:`set_num_threads`).  With N threads a network on NumPy arrays splits a large enough batch
into N shards and runs them at once, each with a single-threaded BLAS (see
:mod:`cnn_xp.models.shards`); with 1 it runs as a plain loop.  Nothing here is used for CuPy or
PyTorch arrays, which bring their own parallelism.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

_controller: Any = None
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_lock = threading.Lock()


def _blas() -> Any:
    """threadpoolctl's controller of the loaded BLAS libraries (found once: finding them scans
    every loaded shared library)."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController().select(user_api="blas")
    return _controller


def _set(lib: Any, n: int) -> None:
    """Set one BLAS library's thread count from whichever thread calls.  threadpoolctl (3.8 on)
    lets only the first thread that set OpenBLAS's process-wide count change it again, and
    silently ignores the others -- a shard's pool thread, or a user's thread calling ``predict``;
    cnn_xp coordinates its own changes (:func:`single_blas_thread`), so it sets the count itself."""
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


def blas_description() -> str:
    """The BLAS libraries NumPy runs on and the kernels each chose for this CPU, as threadpoolctl
    reports them ("openblas 0.3.31 (SkylakeX kernels)"): the same library runs several times
    slower on a kernel older than the CPU (one forced by ``OPENBLAS_CORETYPE``, say)."""
    parts = []
    for lib in _blas().lib_controllers:
        arch = getattr(lib, "architecture", None)
        parts.append(f"{lib.internal_api} {lib.version}" + (f" ({arch} kernels)" if arch else ""))
    return ", ".join(parts) or "no BLAS found"


def get_num_threads() -> int:
    """Threads cnn_xp's CPU work may use: the BLAS library's thread count (1 if none is found)."""
    return max((int(lib.num_threads) for lib in _blas().lib_controllers), default=1)


def set_num_threads(n: int) -> None:
    """Let BLAS, and the networks' shards, use ``n`` threads (as ``torch.set_num_threads``)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    for lib in _blas().lib_controllers:
        _set(lib, n)


_single_users = 0  # callers inside single_blas_thread() now, in any thread
_single_saved: list[int] = []


@contextmanager
def single_blas_thread() -> Iterator[None]:
    """BLAS runs in its caller's thread inside the block: the shards are the parallelism, and two
    threads calling a multi-threaded OpenBLAS at once would queue for its one thread pool.

    The thread count is the library's, shared by every thread: the first caller in saves it and
    the last one out restores it, so blocks entered from several threads at once (concurrent
    ``predict`` calls on one network) never leave it at 1 -- results of a matrix product may
    depend on it."""
    global _single_users, _single_saved
    libs = _blas().lib_controllers
    with _lock:
        if _single_users == 0:
            _single_saved = [int(lib.num_threads) for lib in libs]
            for lib in libs:
                _set(lib, 1)
        _single_users += 1
    try:
        yield
    finally:
        with _lock:
            _single_users -= 1
            if _single_users == 0:
                for lib, n in zip(libs, _single_saved, strict=True):
                    _set(lib, n)


def run_in_threads(fn: Callable[[int], Any], count: int, on_error: Callable[[], None]) -> list[Any]:
    """``[fn(0), ..., fn(count - 1)]``, ``fn(0)`` in the calling thread and the others in a
    shared pool, each with the caller's context (``no_grad()`` included) and a single-threaded
    BLAS.  If any call raises, ``on_error()`` runs (to release calls waiting on it), every call
    is waited for, and the first exception in shard order is raised."""

    def guarded(shard: int) -> Any:
        try:
            return fn(shard)
        except BaseException:
            on_error()
            raise

    with single_blas_thread():
        pool = _executor(count - 1)
        futures: list[Future[Any]] = [pool.submit(contextvars.copy_context().run, guarded, s) for s in range(1, count)]
        results: list[Any] = []
        error: BaseException | None = None
        try:
            results.append(guarded(0))
        except BaseException as exc:  # wait for the others before raising: none may outlive the call
            error = exc
        for future in futures:
            try:
                results.append(future.result())
            except BaseException as exc:
                error = error or exc
    if error is not None:
        raise error
    return results


def _executor(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool, _pool_size = ThreadPoolExecutor(max(1, workers), thread_name_prefix="cnn_xp-shard"), workers
        return _pool


class Turnstile:
    """What the ``count`` shards of a batch do together, for one layer:

    * :meth:`turn` lets them through one at a time, in shard order 0, 1, ..., count - 1 (then 0
      again): Dropout's shards draw their masks from one generator in the order the whole batch
      would have drawn them;
    * :meth:`sum` adds a value of every shard and gives each the total (added in shard order, so
      every shard gets the same bits): BatchNormalization's batch statistics are the batch's.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._next = 0
        self._broken = False
        self._cond = threading.Condition()
        self._barrier = threading.Barrier(count)
        # two sets of parts, used by alternate calls of sum: a shard writes the next call's part
        # while another may still be reading this call's (it cannot get two calls ahead: the
        # next call's barrier waits for every shard)
        self._parts: list[list[Any]] = [[None] * count, [None] * count]
        self._calls = [0] * count

    def reset(self) -> None:
        with self._cond:
            self._next, self._broken = 0, False
            self._calls = [0] * self.count
        if self._barrier.broken:
            self._barrier.reset()

    def abort(self) -> None:
        """Release every waiting thread with an error (a shard failed: its turn never comes)."""
        with self._cond:
            self._broken = True
            self._cond.notify_all()
        self._barrier.abort()

    @contextmanager
    def turn(self, shard: int) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: self._broken or self._next == shard)
            if self._broken:
                raise RuntimeError("another shard of this batch failed")
            try:
                yield
            finally:
                self._next = (shard + 1) % self.count
                self._cond.notify_all()

    def sum(self, shard: int, value: Any) -> Any:
        """The sum of every shard's ``value`` (arrays of one shape), added in shard order; each
        of the ``count`` shards must call it, each with its own value."""
        parts = self._parts[self._calls[shard] % 2]
        self._calls[shard] += 1
        parts[shard] = value
        try:
            self._barrier.wait()  # every part is in
        except threading.BrokenBarrierError:
            raise RuntimeError("another shard of this batch failed") from None
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total
