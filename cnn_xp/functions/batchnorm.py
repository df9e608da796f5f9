"""Batch normalisation as a pair of pure functions, per channel of (N, C, H, W) or per feature of
(N, C): the compiled kernels for NumPy float arrays of four dimensions, else array passes.

``reduce`` makes the statistics a whole batch's when the batch runs split across threads: it
is given each shard's per-channel sums (host float arrays) and returns the sums over all shards
(:meth:`cnn_xp.threads.Turnstile.sum`); None for a batch that runs whole.  Parameter gradients
stay the shard's own (the shards' are added afterwards, as every layer's are); the input
gradient uses the batch's sums.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy  # host scalars and the kernels' per-channel factors

from ..backend import array_device, get_array_module, gpu_elementwise, to_numpy
from . import native

Array = Any
Reduce = Callable[[Any], Any] | None

# On a GPU the element-wise passes below are single kernels (cnn_xp.backend.gpu_elementwise): a
# training step's batch normalisation takes 7 launches forward (the running averages included)
# and 4 backward instead of 18 and 14. The per-channel sums stay CuPy's reductions; mean and
# inv_std are (1, C, 1, 1) there.
_INV_STD = ("cnn_xp_bn_inv_std", "T var, T eps", "T inv_std", "inv_std = 1 / sqrt(var + eps);")
_NORMALIZE = (
    "cnn_xp_bn_normalize",
    "T x, T mean, T inv_std, T gamma, T beta",
    "T xn, T y",
    "xn = (x - mean) * inv_std; y = gamma * xn + beta;",
)
_AFFINE = (
    "cnn_xp_bn_affine",
    "T x, T mean, T inv_std, T gamma, T beta",
    "T y",
    "y = gamma * ((x - mean) * inv_std) + beta;",
)
# dx = inv_std (dxn - mean(dxn) - xn mean(dxn xn)) with dxn = gamma dy, whose sums are gamma
# times dbeta's and dgamma's
_BACKWARD = (
    "cnn_xp_bn_backward",
    "T dy, T xn, T gamma, T inv_std, T dbeta, T dgamma, T n",
    "T dx",
    "dx = inv_std * (dy * gamma - gamma * dbeta / n - xn * (gamma * dgamma / n));",
)
_RUNNING = (
    "cnn_xp_bn_running",
    "T old_mean, T old_var, T mean, T var, T m, T a, T k",
    "T new_mean, T new_var",
    "new_mean = m * old_mean + a * mean; new_var = m * old_var + a * var * k;",
)


@dataclass
class BatchNormState:
    """What :func:`batch_norm_backward` needs from the forward."""

    train: bool
    count: float  # values per channel in the whole batch
    inv_std: Array  # (C,) float64 on the host (kernels), else broadcastable like x
    x: Array | None = None  # kernels: the input (its normalised values are recomputed)
    mean: Array | None = None  # kernels: (C,) float64
    xn: Array | None = None  # array passes: the normalised input
    axes: tuple[int, ...] = ()
    shape: tuple[int, ...] = ()


def _kernels_take(x: Array, *vectors: Array) -> bool:
    return (
        native.accepts(x)
        and x.ndim == 4
        and x.flags.c_contiguous
        and all(isinstance(v, numpy.ndarray) and v.dtype == x.dtype for v in vectors)
    )


def _layout(x: Array) -> tuple[tuple[int, ...], tuple[int, ...]]:
    c = x.shape[1]
    return ((0, 2, 3), (1, c, 1, 1)) if x.ndim == 4 else ((0,), (1, c))


def _combined(reduce: Any, mean: numpy.ndarray, sq: numpy.ndarray, local: int) -> tuple[Any, Any, float]:
    """The whole batch's per-channel mean and biased variance (float64) from each part's count,
    mean and squared deviations from its own mean, in one reduction (one wait for the other
    parts): sum x = n mean, sum x^2 = sq + n mean^2, summed over the parts."""
    c = mean.shape[0]
    packed = reduce(numpy.concatenate([local * mean, sq + local * mean * mean, [float(local)]]))
    count = float(packed[2 * c])
    total_mean = packed[:c] / count
    var = numpy.maximum(packed[c : 2 * c] / count - total_mean * total_mean, 0.0)
    return total_mean, var, count


def batch_norm_forward(
    x: Array,
    gamma: Array,
    beta: Array,
    eps: float,
    *,
    train: bool,
    running_mean: Array,
    running_var: Array,
    reduce: Reduce = None,
    keep: bool = True,
) -> tuple[Array, BatchNormState | None, Array | None, Array | None, float]:
    """(y, state, batch mean, biased batch variance, count): y = gamma (x - mean) / sqrt(var + eps)
    + beta with the batch's statistics (``train``) or the running ones.  The batch mean and
    variance (for the running statistics) are None in inference; ``state`` is None unless ``keep``."""
    axes, shape = _layout(x)
    c = x.shape[1]
    local = math.prod(x.shape) // c
    if _kernels_take(x, gamma, beta):
        return _forward_kernels(x, gamma, beta, eps, train, running_mean, running_var, reduce, keep, local)
    xp = get_array_module(x, gamma)
    if (
        reduce is None
        and gpu_elementwise(x, *_INV_STD) is not None
        and _one_dtype(x, gamma, beta, running_mean, running_var)
    ):
        return _forward_gpu(xp, x, gamma, beta, eps, train, running_mean, running_var, keep, local)
    if train:
        mean = xp.sum(x, axis=axes) / local
        xc = x - xp.reshape(mean, shape)
        sq = xp.sum(xc * xc, axis=axes)  # this part's squared deviations from its own mean
        if reduce is None:
            var, count = sq / local, float(local)
        else:
            m64, sq64 = (numpy.asarray(to_numpy(a), dtype=numpy.float64) for a in (mean, sq))
            mean64, var64, count = _combined(reduce, m64, sq64, local)
            mean = xp.asarray(mean64.astype(x.dtype), device=array_device(x))
            var = xp.asarray(var64.astype(x.dtype), device=array_device(x))
            xc = x - xp.reshape(mean, shape)
    else:
        mean, var, count = None, None, float(local)
        xc = x - xp.reshape(running_mean, shape)
    inv_std = xp.reshape(1.0 / xp.sqrt((var if train else running_var) + eps), shape)
    xn = xc * inv_std
    y = xp.reshape(gamma, shape) * xn + xp.reshape(beta, shape)
    state = BatchNormState(train, count, inv_std, xn=xn, axes=axes, shape=shape) if keep else None
    return y, state, mean, var, count


def _one_dtype(*arrays: Array) -> bool:
    return len({a.dtype for a in arrays}) == 1


def _launch(x: Any, spec: tuple[str, str, str, str], *args: Any) -> None:
    kernel = gpu_elementwise(x, *spec)
    assert kernel is not None  # (x is a GPU array)
    kernel(*args)


def _forward_gpu(
    xp: Any, x: Any, gamma: Any, beta: Any, eps: float, train: bool, running_mean: Any, running_var: Any,
    keep: bool, local: int,
) -> tuple[Any, BatchNormState | None, Any, Any, float]:  # fmt: skip
    axes, shape = _layout(x)
    if train:
        mean = xp.mean(x, axis=axes)
        xc = x - xp.reshape(mean, shape)
        var = xp.mean(xc * xc, axis=axes)
    else:
        mean, var = running_mean, running_var
    inv_std = xp.empty_like(var)
    _launch(x, _INV_STD, var, eps, inv_std)
    inv_std = xp.reshape(inv_std, shape)
    args = (x, xp.reshape(mean, shape), inv_std, xp.reshape(gamma, shape), xp.reshape(beta, shape))
    y = xp.empty_like(x)
    state = None
    if keep:
        xn = xp.empty_like(x)
        _launch(x, _NORMALIZE, *args, xn, y)
        state = BatchNormState(train, float(local), inv_std, xn=xn, axes=axes, shape=shape)
    else:
        _launch(x, _AFFINE, *args, y)
    return y, state, (mean if train else None), (var if train else None), float(local)


def running_average(
    running_mean: Array, running_var: Array, mean: Array, var: Array, momentum: float, correction: float
) -> tuple[Array, Array]:
    """New running statistics (C,): ``momentum * running + (1 - momentum) * batch``, the batch
    variance times ``correction`` (n / (n - 1) for the unbiased estimate)."""
    kernel = gpu_elementwise(running_mean, *_RUNNING)
    if kernel is None or not _one_dtype(running_mean, running_var, mean, var):
        return (
            momentum * running_mean + (1 - momentum) * mean,
            momentum * running_var + (1 - momentum) * var * correction,
        )
    xp = get_array_module(running_mean)
    new_mean, new_var = xp.empty_like(running_mean), xp.empty_like(running_var)
    kernel(running_mean, running_var, mean, var, momentum, 1 - momentum, correction, new_mean, new_var)
    return new_mean, new_var


def _forward_kernels(
    x: Any, gamma: Any, beta: Any, eps: float, train: bool, running_mean: Any, running_var: Any,
    reduce: Reduce, keep: bool, local: int,
) -> tuple[Any, BatchNormState | None, Any, Any, float]:  # fmt: skip
    if train:
        mean = native.bn_sum(x) / local
        sq = native.bn_sqdev(x, mean)  # this part's squared deviations from its own mean
        if reduce is None:
            var, count = sq / local, float(local)
        else:
            mean, var, count = _combined(reduce, mean, sq, local)
    else:
        mean, var, count = running_mean.astype(numpy.float64), running_var.astype(numpy.float64), float(local)
    inv_std = 1.0 / numpy.sqrt(var + eps)
    g = gamma.astype(numpy.float64)
    scale = g * inv_std
    y = native.bn_affine(x, scale.astype(x.dtype), (beta - mean * scale).astype(x.dtype))
    state = BatchNormState(train, count, inv_std, x=x, mean=mean) if keep else None
    return y, state, (mean if train else None), (var if train else None), count


def batch_norm_backward(
    dy: Array, gamma: Array, state: BatchNormState, reduce: Reduce = None
) -> tuple[Array, Array, Array]:
    """(dx, dgamma, dbeta) from dy (the forward output's gradient); dgamma and dbeta are this
    part of the batch's own, dx is the whole batch's gradient at this part's inputs."""
    if state.x is not None:
        return _backward_kernels(dy, gamma, state, reduce)
    xp = get_array_module(dy, gamma)
    xn, axes, shape, inv_std = state.xn, state.axes, state.shape, state.inv_std
    dbeta = xp.sum(dy, axis=axes)
    dgamma = xp.sum(dy * xn, axis=axes)
    kernel = gpu_elementwise(dy, *_BACKWARD)
    if state.train and reduce is None and kernel is not None and _one_dtype(dy, xn, gamma, inv_std):
        dx = xp.empty_like(dy)
        args = (xp.reshape(gamma, shape), inv_std, xp.reshape(dbeta, shape), xp.reshape(dgamma, shape))
        kernel(dy, xn, *args, state.count, dx)
        return dx, dgamma, dbeta
    dxn = dy * xp.reshape(gamma, shape)
    if not state.train:
        return dxn * inv_std, dgamma, dbeta
    sum_dxn = xp.sum(dxn, axis=axes, keepdims=True)
    sum_dxn_xn = xp.sum(dxn * xn, axis=axes, keepdims=True)
    if reduce is not None:
        c = gamma.shape[0]
        both = reduce(numpy.concatenate([sum_dxn.reshape(c), sum_dxn_xn.reshape(c)]))
        sum_dxn, sum_dxn_xn = (xp.reshape(xp.asarray(both[i * c : (i + 1) * c], dtype=dy.dtype), shape) for i in (0, 1))
    n = state.count
    return inv_std * (dxn - sum_dxn / n - xn * (sum_dxn_xn / n)), dgamma, dbeta


def _backward_kernels(dy: Any, gamma: Any, state: BatchNormState, reduce: Reduce) -> tuple[Any, Any, Any]:
    x, mean, inv_std = state.x, state.mean, state.inv_std
    assert x is not None and mean is not None  # (the kernels' state)
    dy = numpy.ascontiguousarray(dy, dtype=x.dtype)
    local = native.bn_grad_sums(dy, x, mean)  # (2, C): sum dy, sum dy (x - mean)
    dbeta, dgamma = local[0].astype(x.dtype), (local[1] * inv_std).astype(x.dtype)
    g = gamma.astype(numpy.float64)
    a = g * inv_std
    if state.train:
        s1, s2 = reduce(local) if reduce is not None else local
        m = state.count
        b = -g * inv_std**3 * s2 / m
        k = -b * mean - a * s1 / m
    else:
        b = k = numpy.zeros_like(a)
    dx = native.bn_grad_apply(dy, x, a.astype(x.dtype), b.astype(x.dtype), k.astype(x.dtype))
    return dx, dgamma, dbeta
