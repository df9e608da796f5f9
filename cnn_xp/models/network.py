"""``Network``: an ordered stack of layers ending in a loss layer, with the book's API
(``params``, ``predict``, ``loss``, ``gradient``, ``accuracy``, ``save_params``/``load_params``)
and what framework users expect (``state_dict``, ``to_device``, ``astype``, ``train``/``eval``).
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy

from .._version import __version__
from ..backend import (
    Device,
    adopt_like,
    array_device,
    device_of,
    get_array_module,
    is_gpu_array,
    on_device,
    to_device,
    to_numpy,
)
from ..checks import float_dtype_name, resolve_float_dtype
from ..functions.denormals import flushing
from ..functions.numerical_gradient import numerical_gradient
from ..layers.base import Layer
from ..layers.composite import iter_all, iter_leaves
from ..layers.grad_mode import grad_enabled, no_grad
from ..layers.registry import is_registered
from ..layers.softmax_with_loss import (
    SoftmaxWithLoss,
    check_outside_count,
    check_targets,
    label_column,
    labels_out_of_range,
)
from ..serialization import (
    CHECKPOINT_FORMAT,
    FLOAT_TENSOR_DTYPES,
    FORMAT_VERSION,
    PARAMS_FORMAT,
    load_arrays,
    save_arrays,
)
from .naming import slot_keys
from .params import ParamView, Slot
from .shards import Shards
from .spec import read_described_file
from .torch_names import is_torch_style, torch_to_cnn_xp

Array = Any


class LayerDict(OrderedDict[str, Layer]):
    """A network's layers by name, in order — and by position as well, as the book's
    DeepConvNet keeps them in a list: ``layers['Conv1']`` and ``layers[0]`` are the same layer."""

    def __getitem__(self, key: str | int) -> Layer:  # type: ignore[override]
        if isinstance(key, int) and not isinstance(key, bool):
            layers = list(self.values())
            if not -len(layers) <= key < len(layers):
                raise IndexError(f"layers[{key}]: this network has {len(layers)} layers")
            return layers[key]
        return super().__getitem__(key)  # type: ignore[index]


def _on_params_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a :class:`Network` method with its parameters' device current (see
    :func:`cnn_xp.backend.on_device`): what it allocates and launches lands there; and with
    subnormal floats flushed on the CPU (:mod:`cnn_xp.functions.denormals`)."""

    @functools.wraps(method)
    def run(self: Network, *args: Any, **kwargs: Any) -> Any:
        with on_device(next(iter(self.params.values()), None)), flushing():
            return method(self, *args, **kwargs)

    return run


class Network:
    """A feed-forward network: ``layers`` in order, then ``last_layer`` (the loss).

    Parameters are named by kind and position as in the book: the weights of the first,
    second, ... layer that has a ``W`` are ``W1``, ``W2``, ...; likewise ``b``, ``gamma``,
    ``beta`` and the BatchNorm buffers ``running_mean``/``running_var``.
    """

    def __init__(
        self,
        layers: Mapping[str, Layer] | Iterable[tuple[str, Layer]],
        last_layer: Layer | None = None,
        config: dict[str, Any] | None = None,
        input_dim: tuple[int, ...] | None = None,
    ) -> None:
        self.layers: LayerDict = LayerDict(layers)
        if not self.layers:
            raise ValueError("layers: expected at least one layer")
        self.last_layer = last_layer if last_layer is not None else SoftmaxWithLoss()
        self.config: dict[str, Any] = config or {"name": type(self).__name__}
        self.input_dim = input_dim  # (C, H, W) of one sample, when known (the Trainer records it)
        self.training = True
        param_slots: dict[str, Slot] = {}
        buffer_slots: dict[str, Slot] = {}
        self.leaves: dict[str, Layer] = dict(iter_leaves(self.layers.items()))  # every leaf layer by dotted path
        for key, path, attr, trainable in slot_keys(
            [(p, leaf.param_names, leaf.buffer_names) for p, leaf in self.leaves.items()]
        ):
            (param_slots if trainable else buffer_slots)[key] = (self.leaves[path], attr)
        self._param_slots, self._buffer_slots = param_slots, buffer_slots
        self.params = ParamView(param_slots)
        self.buffers = ParamView(buffer_slots, kind="buffer")
        self._shards: Shards | None = Shards(self)  # a large NumPy batch runs split across threads

    # ------------------------------------------------------------------ mode

    def train(self, mode: bool = True) -> Network:
        """Training mode (Dropout active, BatchNorm uses batch statistics); returns self."""
        self.training = bool(mode)
        for layer in self.layers.values():
            layer.train(mode)
        return self

    def eval(self) -> Network:
        """Inference mode; returns self."""
        return self.train(False)

    # ------------------------------------------------------------------ the book's API

    def _adopt(self, a: Array) -> Array:
        """Another library's array (PyTorch, JAX, ...) on this network's device, viewed as the
        parameters' kind through DLPack (no copy); anything else is left for the layers to check."""
        like = next(iter(self.params.values()), None)
        return a if like is None else adopt_like(a, like)

    @_on_params_device
    def predict(self, x: Array, train_flg: bool = False) -> Array:
        """Scores (N, output_size) for x, in inference mode as in the book (Dropout off,
        BatchNorm's running statistics); ``train_flg=True`` runs the training-mode forward.
        :meth:`loss`, :meth:`forward` and :meth:`gradient` follow :meth:`train`/:meth:`eval`.

        ``x`` may be any DLPack-capable array on the network's device (a PyTorch CPU tensor for a
        CPU network, say): it is read in place, and the scores come back as the network's own
        array type (``torch.from_dlpack(scores)`` hands them back, again without a copy)."""
        return self._scores(x, bool(train_flg))

    def _scores(self, x: Array, train: bool, split: bool = True) -> Array:
        """The forward pass through every layer (what :meth:`predict`, :meth:`forward` and
        :meth:`tally` share, so that a subclass may change what ``predict`` returns); split
        across threads unless ``split`` is False (see :mod:`cnn_xp.models.shards`)."""
        x = self._adopt(x)
        shards = self._splitter() if split else None
        scores = shards.attempt(x, None, train) if shards is not None else None
        if scores is not None:
            return scores
        self._whole()
        for layer in self.layers.values():
            x = layer.forward(x, train_flg=train) if layer.uses_mode else layer.forward(x)
        return x

    def loss(self, x: Array, t: Array, train_flg: bool | None = None) -> Array:
        """Loss on (x, t) as a 0-d array on x's device (no host synchronisation)."""
        return self.forward(x, t, train_flg)[0]

    @_on_params_device
    def forward(self, x: Array, t: Array, train_flg: bool | None = None) -> tuple[Array, Array]:
        """(loss, scores) on (x, t): the 0-d mean loss and the (N, K) scores, both on the device;
        :meth:`backward` then back-propagates this loss."""
        train = self.training if train_flg is None else bool(train_flg)
        x, t = self._adopt(x), self._adopt(t)
        shards = self._splitter()
        result = shards.attempt(x, t, train) if shards is not None else None
        if result is not None:
            return result  # type: ignore[no-any-return]
        scores = self._scores(x, train, split=False)
        return self.last_layer.forward(scores, t), scores

    def replica(self, layers: list[tuple[str, Layer]], last_layer: Layer) -> Network:
        """A plain network of ``layers`` (copies of this one's) for one thread of a split batch."""
        return Network(layers, last_layer, config=self.config, input_dim=self.input_dim)

    def _splitter(self) -> Shards | None:
        """This network's :class:`~cnn_xp.models.shards.Shards` (None for a shard's own copy)."""
        shards = getattr(self, "_shards", None)
        if shards is not None and shards.network is not self:  # a copy.copy() of a network
            shards = self._shards = Shards(self)
        return shards

    @property
    def splits_batches(self) -> bool:
        """Whether this network runs a large NumPy batch as one shard per thread (see
        :mod:`cnn_xp.models.shards`); if not, its matrix products use BLAS's own threads."""
        shards = self._splitter()
        return shards is not None and shards.splits()

    def _whole(self) -> None:
        """A forward pass runs unsplit: a following backward runs through these layers."""
        shards = self._splitter()
        if shards is not None and grad_enabled():
            shards.split_last = False

    @_on_params_device
    def backward(self, dout: Array | float = 1) -> dict[str, Array]:
        """Back-propagate from the last ``loss`` call; return the gradients keyed like ``params``."""
        shards = self._splitter()
        if shards is not None and shards.split_last:
            shards.backward(dout)
            return self.grads()
        dout = self.last_layer.backward(dout)
        for _, layer, kwargs in self.backward_order():
            dout = layer.backward(dout, **kwargs)
        return self.grads()

    def backward_order(self) -> list[tuple[str, Layer, dict[str, Any]]]:
        """(name, layer, backward keyword arguments) in the order :meth:`backward` runs them, after
        the loss: the first layer's input is data, so it computes no input gradient when it can."""
        layers = list(self.layers.items())
        order: list[tuple[str, Layer, dict[str, Any]]] = [(name, layer, {}) for name, layer in reversed(layers[1:])]
        first_name, first = layers[0]
        order.append((first_name, first, {"need_dx": False} if first.can_skip_dx else {}))
        return order

    def grads(self) -> dict[str, Array]:
        """The gradients the last :meth:`backward` filled in, keyed like ``params``."""
        return {key: getattr(layer, "d" + attr) for key, (layer, attr) in self._param_slots.items()}

    @_on_params_device
    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients of the loss on (x, t) by back-propagation, keyed like ``params``."""
        self.loss(x, t)
        return self.backward()

    @_on_params_device
    def numerical_gradient(self, x: Array, t: Array, h: float = 1e-4) -> dict[str, Array]:
        """Gradients of :meth:`loss` by central differences for every element of every
        parameter, keyed like ``params`` (the book's gradient check; see
        :func:`cnn_xp.functions.numerical_gradient`): slow, for small float64 networks."""
        return {key: numerical_gradient(lambda _: self.loss(x, t), p, h) for key, p in self.params.items()}

    @_on_params_device
    def accuracy(self, x: Array, t: Array, batch_size: int = 100) -> float:
        """Fraction of correct predictions, in inference mode, over *all* N samples
        (the last partial batch included). ``t`` is labels (N,) of an integer dtype in [0, K)
        or one-hot rows (N, K), checked as :meth:`loss` checks them."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
        x, t = self._adopt(x), self._adopt(t)
        n = x.shape[0]
        if n == 0 or getattr(t, "ndim", 0) not in (1, 2) or t.shape[0] != n:
            raise ValueError(
                "x, t: expected a non-empty batch and labels (N,) or one-hot targets (N, K), one per sample; "
                f"got x {tuple(x.shape)} and t {tuple(getattr(t, 'shape', ()))}"
            )
        batches = (
            (x[i : min(i + batch_size, n), ...], t[i : min(i + batch_size, n), ...]) for i in range(0, n, batch_size)
        )
        return int(self.tally(batches).hits) / n

    @_on_params_device
    def tally(
        self, batches: Iterable[tuple[Array, Array]], with_loss: bool = False, keep_predicted: bool = False
    ) -> Tally:
        """Count correct predictions over (x, t) batches in inference mode (the one loop that
        evaluation, :meth:`accuracy` and ``cnn_xp.evaluate`` share). Sums stay on the device
        until the caller reads them; targets are checked as :meth:`loss` checks them."""
        result = Tally()
        was_training = self.training
        outside: Array | None = None  # labels outside [0, K), summed on the device
        self.eval()
        try:
            for xb, tb in batches:
                if xb.shape[0] == 0:  # a distributed rank's share of a small final batch
                    continue
                with no_grad():
                    scores = self._scores(xb, False)
                    if with_loss:
                        loss = self.last_layer.forward(scores, tb) * xb.shape[0]
                        result.loss = loss if result.loss is None else result.loss + loss
                tb = label_column(tb, scores)
                check_targets(tb, scores, check_range=False)  # the range: one read at the end
                if tb.ndim == 1:
                    out = labels_out_of_range(tb, int(scores.shape[1]))
                    outside = out if outside is None else outside + out
                hits = count_hits(scores, tb)
                result.hits = hits if result.hits is None else result.hits + hits
                result.n += int(xb.shape[0])
                result.classes = int(scores.shape[1])
                if keep_predicted:
                    result.predicted.append(get_array_module(scores).argmax(scores, axis=1))
            if outside is not None:
                check_outside_count(outside, result.classes)
        finally:
            self.train(was_training)
        if result.hits is None:
            result.hits = 0
        return result

    # ------------------------------------------------------------------ state

    def state_dict(self) -> OrderedDict[str, Array]:
        """Parameters then buffers, by name (the arrays themselves, on their device)."""
        state: OrderedDict[str, Array] = OrderedDict(self.params.items())
        state.update(self.buffers.items())
        return state

    def load_state_dict(self, state: Mapping[str, Array], strict: bool = True) -> None:
        """Replace parameters and buffers from ``state`` (arrays of any device/dtype: they are
        moved to this network's device and cast to its dtype).  Everything is checked first;
        on error nothing is changed.

        ``state`` may also be a PyTorch-style state dict (``conv1.weight``, ``fc.weight`` of
        shape (out, in), ...; tensors or arrays) of a model with the same layers: its modules
        are matched in order to this network's Convolution, Affine and BatchNormalization layers
        and Linear weights are transposed (the mapping: :mod:`cnn_xp.models.torch_names`).

        The network keeps copies: training it never changes the arrays or tensors given (nor
        does anything done to them later change the network), and read-only or memory-mapped
        arrays load as writeable ones."""
        if not isinstance(state, Mapping):
            raise TypeError(f"state: expected a mapping of names to arrays (a state dict), got {type(state).__name__}")
        not_arrays = [k for k, v in state.items() if not (hasattr(v, "shape") and hasattr(v, "dtype"))]
        if not_arrays:
            kinds = ", ".join(f"{k!r}: {type(state[k]).__name__}" for k in not_arrays[:4])
            raise TypeError(f"state: expected arrays or tensors as values, got {kinds}")
        slots = {**self._param_slots, **self._buffer_slots}
        if is_torch_style(state):
            key_of = {(id(layer), attr): key for key, (layer, attr) in slots.items()}
            converted = torch_to_cnn_xp(self.leaves, state)
            state = {key_of[(id(self.leaves[path]), attr)]: value for (path, attr), value in converted.items()}
        missing = [k for k in slots if k not in state]
        unexpected = [k for k in state if k not in slots]
        if strict and (missing or unexpected):
            raise ValueError(
                f"state: does not match this {self.config.get('name', type(self).__name__)} "
                f"(missing keys {missing}, unexpected keys {unexpected})"
            )
        bad = [
            f"{k}: expected {tuple(getattr(*slots[k]).shape)}, got {tuple(state[k].shape)}"
            for k in slots
            if k in state and tuple(state[k].shape) != tuple(getattr(*slots[k]).shape)
        ]
        if bad:
            raise ValueError("state: shapes do not match this network (another architecture?): " + "; ".join(bad))
        new = {}
        for key in slots:
            if key in state:
                current = getattr(*slots[key])
                value = _to_place_of(state[key], current)
                new[key] = get_array_module(current).astype(value, current.dtype, copy=True)  # the network's own
        for key, value in new.items():
            layer, attr = slots[key]
            setattr(layer, attr, value)

    def _apply(self, fn: Any) -> Network:
        """Replace every parameter and buffer ``a`` by ``fn(a)`` (all computed before any is set)."""
        slots = {**self._param_slots, **self._buffer_slots}
        new = {key: fn(getattr(layer, attr)) for key, (layer, attr) in slots.items()}
        for key, value in new.items():
            layer, attr = slots[key]
            setattr(layer, attr, value)
        return self

    def to_device(self, device: str | Device | Any) -> Network:
        """Move all parameters and buffers to ``device`` (``'cpu'``, ``'gpu:0'``, ...); returns self."""
        if isinstance(device, (str, Device)) or device is None:
            from ..backend import parse_device

            device = parse_device(device)
        return self._apply(lambda a: to_device(a, device))

    def astype(self, dtype: Any) -> Network:
        """Cast all parameters and buffers to ``dtype`` (``'float32'`` or ``'float64'``); returns self."""
        name = float_dtype_name(dtype)
        self._apply(lambda a: get_array_module(a).astype(a, resolve_float_dtype(dtype, get_array_module(a))))
        self.config.setdefault("kwargs", {})["dtype"] = name
        return self

    @property
    def device(self) -> Any:
        """Where the parameters live: a :class:`cnn_xp.Device` for NumPy/CuPy arrays."""
        first = next(iter(self.params.values()))
        try:
            return device_of(first)
        except TypeError:
            return array_device(first)

    @property
    def dtype(self) -> Any:
        return next(iter(self.params.values())).dtype

    # ------------------------------------------------------------------ files

    def spec(self) -> dict[str, Any]:
        """This network described as JSON-able data — its layers' configs, no arrays (see
        :mod:`cnn_xp.models.spec`); what files store and what rebuilds it."""
        strangers = [path for path, layer in iter_all(self.layers.items()) if not is_registered(layer)]
        if not is_registered(self.last_layer):
            strangers.append("loss")
        if strangers:
            everything = dict(iter_all(self.layers.items()))
            kinds = sorted({type(everything.get(n, self.last_layer)).__name__ for n in strangers})
            raise ValueError(
                f"layers {strangers}: their types {kinds} are not registered, so files could not rebuild this network; "
                "decorate the classes with @cnn_xp.register_layer"
            )
        spec: dict[str, Any] = {
            "name": self.config.get("name", type(self).__name__),
            "input_dim": list(self.input_dim) if self.input_dim is not None else None,
            "dtype": float_dtype_name(self.dtype),
            "layers": [{"name": name, **layer.config()} for name, layer in self.layers.items()],
            "loss": self.last_layer.config(),
        }
        if "kwargs" in self.config:
            spec["kwargs"] = {**self.config["kwargs"], "dtype": spec["dtype"]}
        return spec

    def extra_state(self) -> dict[str, Any]:
        """Each layer's non-array state (Dropout's random generator), by layer name."""
        states = {path: leaf.extra_state() for path, leaf in self.leaves.items()}
        return {name: state for name, state in states.items() if state is not None}

    def set_extra_state(self, states: Mapping[str, Any]) -> None:
        """Restore :meth:`extra_state`'s output; checked for every layer before any is changed."""
        unknown = sorted(set(states) - set(self.leaves))
        if unknown:
            raise ValueError(f"states: no layers named {unknown} in this network")
        for path, state in states.items():  # check every state on a fresh layer first
            layer = self.leaves[path]
            if not layer.param_names and not layer.buffer_names:
                type(layer).from_config(layer.config()).set_extra_state(state)
        for path, state in states.items():
            self.leaves[path].set_extra_state(state)

    # ------------------------------------------------------------------ files

    def save_params(self, file_name: str | os.PathLike[str] = "params.safetensors") -> None:
        """Write parameters, buffers and the network's spec to a safetensors file, atomically
        (never pickle)."""
        if str(file_name).endswith((".pkl", ".pickle")):
            warnings.warn(
                f"{file_name}: cnn_xp writes safetensors, not pickle, whatever the name; other programs that expect "
                "a pickle under this name cannot read it (name it .safetensors)",
                stacklevel=2,
            )
        arrays = {k: to_numpy(v) for k, v in self.state_dict().items()}
        meta = self.file_metadata()
        meta["rng"] = json.dumps(self.extra_state())
        save_arrays(file_name, arrays, metadata=meta)

    def load_params(self, file_name: str | os.PathLike[str] = "params.safetensors") -> None:
        """Load parameters written by :meth:`save_params` (or a checkpoint's model part) onto
        this network's device and dtype.  The file's header is checked first: a file of another
        architecture, holding tensors this network does not use, of an unsupported dtype,
        truncated, non-finite or not safetensors (a pickle, say) raises ValueError before its
        tensors are read, and leaves the network unchanged."""
        header, meta, described = read_described_file(file_name)
        prefix = "model/" if meta.get("format") == CHECKPOINT_FORMAT else ""
        ours = {prefix + k: tuple(int(d) for d in v.shape) for k, v in self.state_dict().items()}
        if described is not None and {prefix + k: v for k, v in described[1].items()} != ours:
            raise ValueError(
                f"{file_name}: holds a {described[0]['name']} of another architecture than this "
                f"{self.config.get('name', type(self).__name__)}: {_shape_difference(ours, described[1], prefix)}"
            )
        allowed = {d for d, name in FLOAT_TENSOR_DTYPES.items() if described is None or name == described[0]["dtype"]}
        bad = [
            f"{k}: expected {shape}{'' if described is None else ' ' + described[0]['dtype']}, got {header[k][1]} {header[k][0]}"
            for k, shape in ours.items()
            if k in header and (header[k][1] != shape or header[k][0] not in allowed)
        ]
        unused = sorted(k for k in header if k not in ours and not (prefix and k.startswith("optim/")))
        missing = sorted(k for k in ours if k not in header)
        if bad or unused or missing:
            raise ValueError(
                f"{file_name}: does not match this {self.config.get('name', type(self).__name__)} (another architecture?): "
                f"missing {missing[:6]}, not used {unused[:6]}, mismatched {bad[:6]}"
            )
        arrays, _ = load_arrays(file_name, keys=list(ours))
        for key, value in arrays.items():
            if not numpy.isfinite(value).all():
                raise ValueError(
                    f"{file_name}: tensor {key!r} holds non-finite values (NaN or inf); refusing to use it"
                )
        self.load_state_dict({k[len(prefix) :]: v for k, v in arrays.items()})

    def file_metadata(self, kind: str = PARAMS_FORMAT) -> dict[str, str]:
        """The metadata every cnn_xp file of this network starts with (format, version, spec)."""
        return {
            "format": kind,
            "format_version": str(FORMAT_VERSION),
            "cnn_xp_version": __version__,
            "model": json.dumps(self.spec(), sort_keys=True),
        }

    def __repr__(self) -> str:
        body = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"{type(self).__name__}(\n{body}\n  (loss): {self.last_layer!r}\n)"


def _shape_difference(ours: dict[str, tuple[int, ...]], theirs: dict[str, tuple[int, ...]], prefix: str) -> str:
    keys = [k for k in dict.fromkeys([*(k[len(prefix) :] for k in ours), *theirs])]
    diffs = [f"{k} {theirs.get(k)} vs {ours.get(prefix + k)}" for k in keys if theirs.get(k) != ours.get(prefix + k)]
    return "; ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")


def count_hits(scores: Array, t: Array) -> Array:
    """Correct predictions in a batch of (N, K) scores against labels (N,) or one-hot rows
    (N, K), as a 0-d int64 array on the device (no host read)."""
    xp = get_array_module(scores, t)
    labels = xp.argmax(t, axis=1) if t.ndim == 2 else xp.astype(t, xp.int64)
    return xp.sum(xp.astype(xp.argmax(scores, axis=1) == labels, xp.int64))


@dataclass
class Tally:
    """What :meth:`Network.tally` counted: ``n`` samples, ``hits`` correct (a 0-d device array),
    ``loss`` the sum of per-sample losses (0-d, when asked) and the ``predicted`` classes per batch."""

    n: int = 0
    classes: int = 0  # K, the width of the scores
    hits: Any = None
    loss: Any = None
    predicted: list[Any] = field(default_factory=list)


def _to_place_of(value: Array, like: Array) -> Array:
    """``value`` moved to wherever ``like`` lives (host, a GPU, or another array library's device)."""
    if is_gpu_array(like):
        return to_device(value, Device("gpu", int(like.device.id)))
    if isinstance(like, numpy.ndarray):
        return to_numpy(value)
    return to_device(value, array_device(like))
