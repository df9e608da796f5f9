"""Softmax followed by the mean cross-entropy loss."""

from __future__ import annotations

from ..backend import array_device, get_array_module, is_host_array
from ..checks import check_rank
from ..functions.dtypes import as_float
from ..functions.softmax import log_softmax
from .base import Array, Layer


class SoftmaxWithLoss(Layer):
    """``forward(x, t)``: scores x (N, K) and targets t -> mean cross-entropy (a 0-d array
    that stays on x's device).

    ``t`` is either class labels (N,) of an integer dtype in [0, K) or one-hot /
    probability rows (N, K).  The loss uses a stable log-softmax (no ``+1e-7`` inside the
    log), so its gradient ``backward(dout=1) = (softmax(x) - t) * dout / N`` matches it exactly.

    Labels on the host are range-checked on every call; labels on a GPU are not (the check is a
    device-to-host read, a synchronisation per step): they are checked where they enter from the
    host -- the :class:`~cnn_xp.train.Trainer` checks its loaders' labels once, evaluation checks
    them with one read at the end -- or with :func:`check_labels`.
    """

    shard_safe = True  # the loss is a mean over samples: shards combine by their sizes
    is_loss = True

    def __init__(self) -> None:
        super().__init__()
        self.loss: Array | None = None
        self.y: Array | None = None  # softmax output (N, K)
        self.t: Array | None = None  # one-hot / probability targets (N, K)

    def forward(self, x: Array, t: Array) -> Array:
        check_rank("x", x, 2, "(N, K) of class scores")
        t = label_column(t, x)
        xp = get_array_module(x, t)
        n = x.shape[0]
        if n == 0:
            raise ValueError("x: empty batch (N=0); expected at least one sample")
        x = as_float(x)
        self.t = self._targets(xp, x, t)
        logp = log_softmax(x)
        self.y = xp.exp(logp)
        self.loss = -xp.sum(self.t * logp) / n
        return self.loss

    @staticmethod
    def _targets(xp, x: Array, t: Array) -> Array:
        check_targets(t, x)
        if t.ndim == 1:
            classes = xp.arange(x.shape[1], device=array_device(x))
            return xp.astype(xp.expand_dims(t, axis=1) == xp.expand_dims(classes, axis=0), x.dtype)
        return as_float(t, like=x)

    def backward(self, dout: Array | float = 1) -> Array:
        if self.y is None or self.t is None:
            raise self._not_run()
        return (self.y - self.t) * (dout / self.y.shape[0])


def label_column(t: Array, x: Array) -> Array:
    """Labels given as a column (N, 1) of an integer dtype — the book's gradient check does so —
    as (N,); anything else unchanged. (With K = 1 class a (N, 1) array is a one-hot row.)"""
    xp = get_array_module(t)
    if getattr(t, "ndim", None) == 2 and t.shape[1] == 1 and x.shape[1] != 1 and xp.isdtype(t.dtype, "integral"):
        return xp.reshape(t, (t.shape[0],))
    return t


def check_targets(t: Array, x: Array, check_range: bool | None = None) -> None:
    """Raise unless ``t`` fits the scores ``x`` (N, K): labels (N,) of an integer dtype in
    [0, K), or one-hot / probability rows (N, K).  The range of labels is checked when
    ``check_range`` is True, or when None and reading ``t`` costs no device synchronisation
    (host arrays); shapes and dtypes are always checked (they are metadata, read for free)."""
    xp = get_array_module(x, t)
    n, k = x.shape
    if getattr(t, "ndim", None) == 1:
        if t.shape[0] != n:
            raise ValueError(
                f"t: expected {n} labels to match x of shape {tuple(x.shape)}, got t of shape {tuple(t.shape)}"
            )
        if not xp.isdtype(t.dtype, "integral"):
            raise TypeError(f"t: class labels must have an integer dtype, got {t.dtype}")
        if check_range or (check_range is None and is_host_array(t)):
            check_labels(t, k)
        return
    if getattr(t, "ndim", None) == 2:
        if tuple(t.shape) != (n, k):
            raise ValueError(f"t: one-hot targets must have shape (N, K)={(n, k)}, got {tuple(t.shape)}")
        return
    raise ValueError(
        f"t: expected labels (N,)=({n},) or one-hot targets (N, K)={(n, k)}, got shape {tuple(getattr(t, 'shape', ()))}"
    )


def labels_out_of_range(t: Array, k: int) -> Array:
    """How many labels of ``t`` (N,) lie outside [0, k), as a 0-d array on t's device (no read)."""
    xp = get_array_module(t)
    return xp.sum(xp.astype((t < 0) | (t >= k), xp.int64))


def check_labels(t: Array, k: int) -> None:
    """Raise ValueError, naming the range seen, if a label of ``t`` (N,) lies outside [0, k)
    (one device-to-host read for a GPU array)."""
    xp = get_array_module(t)
    if bool(labels_out_of_range(t, k) > 0):
        lo, hi = int(xp.min(t)), int(xp.max(t))
        raise ValueError(f"t: labels must be in [0, {k}) for {k} classes, got values in [{lo}, {hi}]")


def check_outside_count(count: Array, k: int) -> None:
    """Raise ValueError if ``count`` (summed :func:`labels_out_of_range` of many batches) is not 0."""
    bad = int(count)
    if bad:
        raise ValueError(f"t: labels must be in [0, {k}) for {k} classes, got {bad} label(s) outside that range")
