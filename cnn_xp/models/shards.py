"""A batch split across the CPU's threads inside one network (NumPy arrays only).

NumPy runs every element-wise operation on one core, and a multi-threaded BLAS gains little on
the small matrix products of these networks, so one training step used about one of two cores.
With N threads (:func:`cnn_xp.threads.get_num_threads`) a :class:`~cnn_xp.models.Network` splits
a batch of at least ``N * MIN_SHARD`` samples into N shards and runs each shard through its own
copy of the layers at once, each with a single-threaded BLAS -- the data parallelism of
``mpirun -n N``, inside one process and without copying the parameters:

* the copies share the network's arrays (parameters, buffers, settings) and own only their
  per-call state (masks, im2col columns, scratch buffers: :meth:`Layer.replica_state`);
* the loss is the mean over samples, so the batch's loss and gradients are the shards' ones
  weighted by their sizes (each shard back-propagates ``dout * n_shard / n``), summed in shard
  order: deterministic for a given thread count, and equal to the unsplit batch's up to
  rounding;
* Dropout's shards draw their masks in shard order from the layer's one generator: the masks
  are those of the unsplit batch; BatchNormalization's shards add their sums before they
  normalise, so its statistics are the whole batch's (:class:`cnn_xp.threads.Turnstile`);
* composite layers (a residual block) are copied with their children;
* only networks whose every layer is ``shard_safe`` are split: a user's layer keeps the batch
  whole unless its class says it treats each sample on its own.

Inference (``predict``, evaluation under ``no_grad()``) uses a second set of copies, so an
evaluation between a forward and its backward leaves the training copies' state alone.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy

from ..functions.denormals import flushing
from ..layers.base import Layer
from ..layers.composite import Composite, iter_all
from ..layers.grad_mode import grad_enabled
from ..threads import Turnstile, get_num_threads, run_in_threads

Array = Any

MIN_SHARD = 16
"""Fewest samples per shard: below that a shard's arrays are too small to pay for a thread."""


def _patched(layer: Layer) -> bool:
    """A forward or backward set on the layer object itself (a hook, a profiler): the copies
    would share it and run this layer's own method, on this layer's state, from every thread."""
    return "forward" in layer.__dict__ or "backward" in layer.__dict__


def _splittable(layer: Layer) -> bool:
    safe = layer.shard_safe if isinstance(layer, Composite) else type(layer).shard_safe
    return bool(safe) and not _patched(layer)


class _Copies:
    """N copies of a network's layers -- composites with copies of their children -- as plain
    networks made by ``make(layers, loss)``, and what each copy owns."""

    def __init__(self, network: Any, count: int, make: Callable[[list[tuple[str, Layer]], Layer], Any]) -> None:
        top = [*network.layers.items(), ("", network.last_layer)]
        layers = [layer for _, layer in iter_all(top)]  # composites before their children
        self.key = [id(layer) for layer in layers]
        self.turnstiles = [Turnstile(count) for _ in layers]
        self.owned: list[list[dict[str, Any]]] = []
        self.clones: list[list[Layer]] = []
        self.nets: list[Any] = []
        for shard in range(count):
            clones = {id(layer): copy.copy(layer) for layer in layers}
            owned = []
            for layer, ts in zip(layers, self.turnstiles, strict=True):
                own = layer.replica_state(shard, ts)
                if isinstance(layer, Composite):
                    own.update(layer.with_children([clones[id(child)] for _, child in layer.children()]))
                clones[id(layer)].__dict__.update(own)
                owned.append(own)
            net = make([(name, clones[id(layer)]) for name, layer in top[:-1]], clones[id(network.last_layer)])
            net._shards = None  # a copy never splits again
            self.owned.append(owned)
            self.clones.append([clones[id(layer)] for layer in layers])
            self.nets.append(net)

    def sync(self, network: Any) -> None:
        """Point every copy at the network's current arrays and settings (an optimizer, ``astype``
        or ``load_state_dict`` may have replaced them since), keeping what each copy owns."""
        top = [*network.layers.items(), ("", network.last_layer)]
        layers = [layer for _, layer in iter_all(top)]
        for net, clones, owned in zip(self.nets, self.clones, self.owned, strict=True):
            net.training = network.training
            for layer, clone, own in zip(layers, clones, owned, strict=True):
                clone.__dict__.update(layer.__dict__)
                clone.__dict__.update(own)
        for ts in self.turnstiles:
            ts.reset()

    def abort(self) -> None:
        for ts in self.turnstiles:
            ts.abort()


def _flushing(fn: Callable[[Any, Any], Any], net: Any, part: Any) -> Any:
    """``fn(net, part)`` in a shard's thread, flushing subnormals as the calling thread does."""
    with flushing():
        return fn(net, part)


class Shards:
    """The split-batch execution of one :class:`Network`; see the module's docstring."""

    def __init__(self, network: Any) -> None:
        self.network = network
        self._copies: dict[bool, _Copies] = {}  # keyed by grad_enabled(): training / inference copies
        self.split_last = False  # whether the last forward that keeps state was split
        self._sizes: list[int] = []

    def __getstate__(self) -> dict[str, Any]:  # copies hold locks; a copied network makes its own
        return {"network": self.network, "_copies": {}, "split_last": False, "_sizes": []}

    def splits(self) -> bool:
        """Whether a batch of NumPy arrays large enough runs split: every layer may be split, the
        parameters are NumPy arrays and there are two threads or more."""
        net = self.network
        return (
            all(_splittable(layer) for _, layer in iter_all([*net.layers.items(), ("", net.last_layer)]))
            and all(isinstance(p, numpy.ndarray) for p in net.params.values())
            and get_num_threads() >= 2
        )

    def plan(self, x: Array, t: Array | None = None) -> list[slice] | None:
        """The shards of batch ``x`` (and labels ``t``), or None to run it whole."""
        if not isinstance(x, numpy.ndarray) or x.ndim == 0:
            return None
        n = int(x.shape[0])
        if n < 2 * MIN_SHARD:
            return None
        if t is not None and (not isinstance(t, numpy.ndarray) or t.ndim == 0 or t.shape[0] != n):
            return None  # the whole batch raises the error that names both shapes
        if not self.splits():
            return None
        count = min(get_num_threads(), n // MIN_SHARD)
        if count < 2:
            return None
        bounds = [n * i // count for i in range(count + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(count)]

    def attempt(self, x: Array, t: Array | None, train: bool) -> Any:
        """The split forward pass -- scores, or (loss, scores) given labels ``t`` -- or None when
        the batch is to run whole: not worth splitting, or it failed (a bad input: the whole
        batch then raises the error that names its shapes)."""
        shards = self.plan(x, t)
        if shards is None:
            return None
        try:
            return self.scores(x, train, shards) if t is None else self.forward(x, t, train, shards)
        except Exception:
            return None

    def _ready(self, count: int) -> _Copies:
        keep = grad_enabled()
        copies = self._copies.get(keep)
        top = [*self.network.layers.items(), ("", self.network.last_layer)]
        if copies is None or len(copies.nets) != count or copies.key != [id(layer) for _, layer in iter_all(top)]:
            copies = self._copies[keep] = _Copies(self.network, count, self.network.replica)
        copies.sync(self.network)
        return copies

    def _run(self, shards: list[slice], fn: Callable[[Any, slice], Any]) -> list[Any]:
        copies = self._ready(len(shards))
        return run_in_threads(lambda s: _flushing(fn, copies.nets[s], shards[s]), len(shards), copies.abort)

    def scores(self, x: Array, train: bool, shards: list[slice]) -> Array:
        """The forward pass, split: (N, K) scores."""
        parts = self._run(shards, lambda net, s: net._scores(x[s, ...], train))
        self._record(shards)
        return numpy.concatenate(parts, axis=0)

    def forward(self, x: Array, t: Array, train: bool, shards: list[slice]) -> tuple[Array, Array]:
        """(loss, scores), split: the loss is the size-weighted sum of the shards' mean losses."""
        parts = self._run(shards, lambda net, s: net.forward(x[s, ...], t[s, ...], train))
        self._record(shards)
        n = int(x.shape[0])
        loss = sum(part[0] * ((s.stop - s.start) / n) for part, s in zip(parts, shards, strict=True))
        return numpy.asarray(loss, dtype=parts[0][0].dtype), numpy.concatenate([p[1] for p in parts], axis=0)

    def _record(self, shards: list[slice]) -> None:
        if grad_enabled():
            self.split_last = True
            self._sizes = [s.stop - s.start for s in shards]

    def backward(self, dout: Array | float) -> None:
        """Back-propagate the last split forward; the network's layers get the summed gradients."""
        copies = self._copies[True]
        n = sum(self._sizes)
        sizes = self._sizes
        grads = run_in_threads(
            lambda s: _flushing(lambda net, _: net.backward(dout * (sizes[s] / n)), copies.nets[s], None),
            len(copies.nets),
            copies.abort,
        )
        for key, (layer, attr) in self.network._param_slots.items():
            total = grads[0][key]
            for part in grads[1:]:
                total = total + part[key]
            setattr(layer, "d" + attr, total)
