"""What every layer shares: named parameters, their gradients, buffers and the train/eval mode."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy

from ..backend import adopt_like, array_device, device_of, get_array_module, is_gpu_array, on_device
from ..checks import check_int, check_same_place, float_dtype_name, is_floating
from ..threads import Turnstile

Array = Any


class Layer:
    """Base class of the layers.

    ``param_names`` lists the attributes holding trainable arrays (e.g. ``("W", "b")``); after
    ``backward`` their gradients are in the attributes named ``"d" + name`` (``dW``, ``db``,
    ``dgamma``, ``dbeta``), as in "Deep Learning from Scratch".  ``buffer_names`` lists
    non-trainable state saved in checkpoints (BatchNorm running statistics).  Layers with
    ``can_skip_dx`` take ``backward(dout, need_dx=False)``, which fills the parameter gradients
    and returns None: a network's first layer does not compute a gradient for its data.  Layers whose
    behaviour depends on the mode (Dropout, BatchNormalization) set ``uses_mode`` and take
    ``forward(x, train_flg=None)``; None means "use ``self.training``".
    """

    param_names: tuple[str, ...] = ()
    buffer_names: tuple[str, ...] = ()
    is_loss = False  # a network's last layer: forward(scores, targets) -> loss (SoftmaxWithLoss)
    uses_mode = False
    can_skip_dx = False  # backward(dout, need_dx=False) skips the input gradient (first layers)

    _device: Any = None  # the GPU this layer last ran on, for a backward given a plain number
    shard_safe = False  # may run on slices of a batch in parallel threads (see cnn_xp.models.shards)

    def __init__(self) -> None:
        self.training = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Every constructor, forward and backward runs with its first array argument's device
        # current: CuPy allocates and launches on the current device only, so a layer on GPU 1
        # must not run with GPU 0 current.  Subclasses -- user layers included -- get this
        # without writing it.
        super().__init_subclass__(**kwargs)
        for name in ("__init__", "forward", "backward"):
            method = cls.__dict__.get(name)
            if method is not None and not getattr(method, "_on_input_device", False):
                setattr(cls, name, _on_input_device(method))

    def forward(self, x: Array, *args: Any, **kwargs: Any) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, dout: Array) -> Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def train(self, mode: bool = True) -> Layer:
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def _mode(self, train_flg: bool | None) -> bool:
        return self.training if train_flg is None else bool(train_flg)

    def _not_run(self) -> RuntimeError:
        return RuntimeError(
            f"{type(self).__name__}.backward() called before forward() (or after a forward under no_grad()); "
            "run forward first, outside no_grad()"
        )

    def replica_state(self, shard: int, turnstile: Turnstile) -> dict[str, Any]:
        """Attributes that a thread's copy of this layer keeps of its own when a batch is split
        into shards (a scratch buffer, say); everything else it shares with this layer.  Only
        layers with ``shard_safe`` -- which treat every sample on its own -- are copied.
        ``turnstile`` orders something all shards must do one after another (draw random numbers)."""
        return {}

    # ------------------------------------------------------------------ description

    def config(self) -> dict[str, Any]:
        """This layer described without its arrays, as JSON-able data: ``{"type": name, **settings}``.
        :meth:`from_config` rebuilds it (then a state dict fills the arrays).  A layer with
        settings or arrays overrides this, :meth:`state_shapes` and :meth:`from_config`."""
        return {"type": type_name(type(self))}

    @classmethod
    def state_names(cls, config: Mapping[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(parameter names, buffer names) of the layer ``config`` describes: the class's
        ``param_names`` and ``buffer_names`` unless a setting changes them (a convolution
        without bias)."""
        return cls.param_names, cls.buffer_names

    @classmethod
    def state_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        """Check ``config`` (keys, types, ranges) and return the shape of every parameter and
        buffer it implies, keyed by attribute (``{"W": (30, 1, 5, 5), "b": (30,)}``) — without
        allocating anything.  Raises ValueError or TypeError naming the setting."""
        settings(cls, config, {})
        return {}

    @classmethod
    def output_shape(cls, config: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, ...] | None:
        """The shape of one sample's output for one sample's input ``shape`` (no batch axis), or
        None where the layer cannot tell (a user's layer that does not say); raises ValueError
        for an input it cannot take.  What lets a file's network be sized before it is built."""
        return None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], dtype: Any = "float32") -> Layer:
        """A layer built from :meth:`config`'s output, its arrays zero-filled on the host in ``dtype``."""
        cls.state_shapes(config)
        return cls()

    def extra_state(self) -> dict[str, Any] | None:
        """State that is not an array but must survive a checkpoint (Dropout's random
        generator), as JSON-able data; None when there is none."""
        return None

    def set_extra_state(self, state: Any) -> None:
        """Restore :meth:`extra_state`'s output; raises ValueError if it does not fit."""
        if state is not None:
            raise ValueError(f"{type(self).__name__}: holds no extra state, got {state!r}")

    def __repr__(self) -> str:
        shapes = ", ".join(f"{n}={tuple(getattr(self, n).shape)}" for n in self.param_names)
        return f"{type(self).__name__}({shapes})"


def _on_input_device(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method(self, x, ...)`` run under :func:`~cnn_xp.backend.on_device` of its first array
    argument (or, for a backward given a plain number, of the device the layer last ran on)."""

    @functools.wraps(method)
    def run(self: Layer, *args: Any, **kwargs: Any) -> Any:
        first = next((a for a in (*args, *kwargs.values()) if hasattr(a, "shape")), None)
        if first is not None:  # a plain record (copies and pickles), not CuPy's device object
            self._device = device_of(first) if is_gpu_array(first) else None
        where = first if first is not None else getattr(self, "_device", None)
        with on_device(where):
            return method(self, *args, **kwargs)

    run._on_input_device = True  # type: ignore[attr-defined]
    return run


MAX_ACTIVATION = 1 << 28
"""Most values one sample's output of one layer may hold (1 GiB in float32): a description that
implies more is refused before anything is built or run."""


def checked_output(name: str, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """``shape`` (one sample's output of layer ``name``) if within :data:`MAX_ACTIVATION`; else ValueError."""
    if shape is not None and math.prod(shape) > MAX_ACTIVATION:
        raise ValueError(
            f"{name}: one sample's output would hold {math.prod(shape)} values (shape {shape}), more than "
            f"{MAX_ACTIVATION}: refused before anything is built"
        )
    return shape


def type_name(cls: type) -> str:
    """The name a layer class is described by: its registered name, else its class name."""
    return str(cls.__dict__.get("_registered_name", cls.__name__))


def settings(cls: type, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``config``'s settings (``type`` removed) with ``defaults`` filled in; raises ValueError on a
    config that is not a mapping, names another type, lacks a required setting (default
    ``...``) or has one this layer does not know."""
    name = type_name(cls)
    if not isinstance(config, Mapping):
        raise ValueError(f"{name} config: expected a mapping, got {type(config).__name__}")
    if config.get("type", name) != name:
        raise ValueError(f"{name} config: describes a {config.get('type')!r} layer")
    given = {k: v for k, v in config.items() if k != "type"}
    unknown = sorted(set(given) - set(defaults))
    missing = sorted(k for k, v in defaults.items() if v is ... and k not in given)
    if unknown or missing:
        raise ValueError(
            f"{name} config: unknown settings {unknown}, missing settings {missing}; expected {sorted(defaults)}"
        )
    return {**defaults, **given}


def shape_setting(layer: str, key: str, value: Any, ndim: int) -> tuple[int, ...]:
    """A list of ``ndim`` positive ints (a shape in a config)."""
    if not isinstance(value, (list, tuple)) or len(value) != ndim:
        raise ValueError(f"{layer} config: {key} expected a list of {ndim} positive ints, got {value!r}")
    return tuple(check_int(f"{layer} config: {key}[{i}]", v, 1) for i, v in enumerate(value))


def zeros(shape: tuple[int, ...], dtype: Any) -> numpy.ndarray:
    """A zero-filled host array for :meth:`Layer.from_config` (a state dict overwrites it)."""
    return numpy.zeros(shape, dtype=float_dtype_name(dtype))


def float_param(name: str, value: Array) -> Array:
    """Check a parameter array; integer/bool parameters become float32 (same device)."""
    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        raise TypeError(f"{name}: expected an array, got {type(value).__name__}")
    if is_floating(value):
        return value
    return get_array_module(value).astype(value, get_array_module(value).float32)


def bias_param(b: Array | float, W: Array, size: int) -> Array:
    """A bias of shape (size,) like ``W``: an array is checked as a parameter, a number (the
    book's ``b = 0``) or a 0-d array is broadcast to every output on W's device and dtype."""
    if (isinstance(b, (int, float)) and not isinstance(b, bool)) or getattr(b, "ndim", None) == 0:
        xp = get_array_module(W)
        return xp.full((size,), float(b), dtype=W.dtype, device=array_device(W))
    return float_param("b", b)


def adopt_input(name: str, x: Array, like: Array) -> Array:
    """``x`` ready to compute with the parameter ``like``: another library's array (PyTorch, JAX, ...)
    on the same device is viewed as ``like``'s kind through DLPack (no copy); anything on
    another device or of another library raises ValueError (see :func:`check_same_place`)."""
    x = adopt_like(x, like)
    check_same_place(name, x, like)
    return x


def check_dout(dout: Array, expected: tuple[int, ...]) -> None:
    if tuple(dout.shape) != tuple(expected):
        raise ValueError(f"dout: expected shape {tuple(expected)} (the forward output), got {tuple(dout.shape)}")
