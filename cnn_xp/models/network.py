"""``Network``: an ordered stack of layers ending in a loss layer, with the book's API
(``params``, ``predict``, ``loss``, ``gradient``, ``accuracy``, ``save_params``/``load_params``)
and what framework users expect (``state_dict``, ``to_device``, ``astype``, ``train``/``eval``).
"""

from __future__ import annotations

import json
import os
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping
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
    to_device,
    to_numpy,
)
from ..checks import float_dtype_name, resolve_float_dtype
from ..layers.base import Layer
from ..layers.grad_mode import no_grad
from ..layers.softmax_with_loss import SoftmaxWithLoss
from ..serialization import load_arrays, save_arrays
from .params import ParamView, Slot
from .torch_names import is_torch_style, torch_to_cnn_xp

Array = Any
PARAMS_FORMAT = "cnn_xp.params"
PARAMS_FORMAT_VERSION = 1


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
    ) -> None:
        self.layers: OrderedDict[str, Layer] = OrderedDict(layers)
        if not self.layers:
            raise ValueError("layers: expected at least one layer")
        self.last_layer = last_layer if last_layer is not None else SoftmaxWithLoss()
        self.config: dict[str, Any] = config or {"name": type(self).__name__}
        self.training = True
        param_slots: dict[str, Slot] = {}
        buffer_slots: dict[str, Slot] = {}
        counters: Counter[str] = Counter()
        for layer in self.layers.values():
            for names, slots in ((layer.param_names, param_slots), (layer.buffer_names, buffer_slots)):
                for attr in names:
                    counters[attr] += 1
                    slots[f"{attr}{counters[attr]}"] = (layer, attr)
        self._param_slots, self._buffer_slots = param_slots, buffer_slots
        self.params = ParamView(param_slots)
        self.buffers = ParamView(buffer_slots, kind="buffer")

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

    def predict(self, x: Array, train_flg: bool | None = None) -> Array:
        """Scores (N, output_size) for x; ``train_flg`` overrides the mode (None: ``self.training``).

        ``x`` may be any DLPack-capable array on the network's device (a PyTorch CPU tensor for a
        CPU network, say): it is read in place, and the scores come back as the network's own
        array type (``torch.from_dlpack(scores)`` hands them back, again without a copy)."""
        train = self.training if train_flg is None else bool(train_flg)
        x = self._adopt(x)
        for layer in self.layers.values():
            x = layer.forward(x, train_flg=train) if layer.uses_mode else layer.forward(x)
        return x

    def loss(self, x: Array, t: Array, train_flg: bool | None = None) -> Array:
        """Loss on (x, t) as a 0-d array on x's device (no host synchronisation)."""
        return self.last_layer.forward(self.predict(x, train_flg), self._adopt(t))

    def backward(self, dout: Array | float = 1) -> dict[str, Array]:
        """Back-propagate from the last ``loss`` call; return the gradients keyed like ``params``."""
        dout = self.last_layer.backward(dout)
        layers = list(self.layers.values())
        for layer in reversed(layers[1:]):
            dout = layer.backward(dout)
        first: Any = layers[0]
        if first.can_skip_dx:  # the first layer's input is data: it needs no gradient
            first.backward(dout, need_dx=False)
        else:
            first.backward(dout)
        return {key: getattr(layer, "d" + attr) for key, (layer, attr) in self._param_slots.items()}

    def gradient(self, x: Array, t: Array) -> dict[str, Array]:
        """Gradients of the loss on (x, t) by back-propagation, keyed like ``params``."""
        self.loss(x, t)
        return self.backward()

    def accuracy(self, x: Array, t: Array, batch_size: int = 100) -> float:
        """Fraction of correct predictions, in inference mode, over *all* N samples
        (the last partial batch included). ``t`` is labels (N,) or one-hot (N, K)."""
        if batch_size < 1:
            raise ValueError(f"batch_size: expected an int >= 1, got {batch_size}")
        x, t = self._adopt(x), self._adopt(t)
        n = x.shape[0]
        if n == 0 or t.shape[0] != n:
            raise ValueError(
                f"x, t: expected a non-empty batch with one target per sample, got x {tuple(x.shape)} and t {tuple(t.shape)}"
            )
        xp = get_array_module(x, t)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        correct = None
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)  # in-bounds stop (larger stops are unspecified in the array API)
            with no_grad():  # nothing to keep for a backward pass
                y = self.predict(x[i:j, ...], train_flg=False)
            hits = xp.sum(xp.astype(xp.argmax(y, axis=1) == xp.astype(t[i:j], xp.int64), xp.int64))
            correct = hits if correct is None else correct + hits
        assert correct is not None  # n >= 1
        return int(correct) / n

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
        and Linear weights are transposed (the mapping: :mod:`cnn_xp.models.torch_names`)."""
        slots = {**self._param_slots, **self._buffer_slots}
        if is_torch_style(state):
            key_of = {(id(layer), attr): key for key, (layer, attr) in slots.items()}
            converted = torch_to_cnn_xp(self.layers, state)
            state = {key_of[(id(self.layers[name]), attr)]: value for (name, attr), value in converted.items()}
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
                xp = get_array_module(current)
                new[key] = value if value.dtype == current.dtype else xp.astype(value, current.dtype)
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

    def save_params(self, file_name: str | os.PathLike[str] = "params.safetensors") -> None:
        """Write parameters and buffers to a safetensors file, atomically (never pickle)."""
        arrays = {k: to_numpy(v) for k, v in self.state_dict().items()}
        save_arrays(file_name, arrays, metadata=self.file_metadata())

    def load_params(self, file_name: str | os.PathLike[str] = "params.safetensors") -> None:
        """Load parameters written by :meth:`save_params` (or a checkpoint) onto this network's
        device and dtype.  A file of another architecture, a truncated file or a non-safetensors
        file (a pickle, say) raises ValueError and leaves the network unchanged."""
        arrays, _ = load_arrays(file_name)
        model_keys = {k for k in arrays if k.startswith("model/")}
        if model_keys:  # a training checkpoint: take its model part
            arrays = {k[len("model/") :]: v for k, v in arrays.items() if k in model_keys}
        try:
            self.load_state_dict(arrays)
        except ValueError as exc:
            raise ValueError(f"{file_name}: {exc}") from None

    def file_metadata(self) -> dict[str, str]:
        return {
            "format": PARAMS_FORMAT,
            "format_version": str(PARAMS_FORMAT_VERSION),
            "cnn_xp_version": __version__,
            "model": json.dumps(self.config, sort_keys=True),
        }

    def __repr__(self) -> str:
        body = "\n".join(f"  ({name}): {layer!r}" for name, layer in self.layers.items())
        return f"{type(self).__name__}(\n{body}\n  (loss): {self.last_layer!r}\n)"


def _to_place_of(value: Array, like: Array) -> Array:
    """``value`` moved to wherever ``like`` lives (host, a GPU, or another array library's device)."""
    if is_gpu_array(like):
        return to_device(value, Device("gpu", int(like.device.id)))
    if isinstance(like, numpy.ndarray):
        return to_numpy(value)
    return to_device(value, array_device(like))
