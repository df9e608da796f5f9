"""Helpers the book's networks share: their layer lists as data, and initialised layers.

A book network first describes its layers (``layer_configs``: names and
:meth:`~cnn_xp.layers.Layer.config` dicts, nothing allocated), then builds them: the same
description is what a checkpoint stores and what a loader checks a file against.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import numpy

from ..backend import Device, parse_device, to_device
from ..checks import check_int, float_dtype_name
from ..functions.conv_utils import get_conv_outsize
from ..init import InitSpec, init_std, normal
from ..layers import Affine, BatchNormalization, Convolution, Layer
from ..layers.composite import Composite
from ..layers.registry import layer_class
from .network import Network

_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")
LayerConfigs = list[tuple[str, dict[str, Any]]]


def check_input_dim(input_dim: Any) -> tuple[int, int, int]:
    if not isinstance(input_dim, (tuple, list)) or len(input_dim) != 3:
        raise ValueError(f"input_dim: expected (C, H, W), got {input_dim!r}")
    return tuple(check_int(f"input_dim[{i}]", v, 1) for i, v in enumerate(input_dim))  # type: ignore[return-value]


def conv_settings(name: str, param: dict[str, int], defaults: dict[str, int]) -> dict[str, int]:
    """Merge a book-style conv_param dict with defaults and check every value."""
    if not isinstance(param, dict):
        raise TypeError(f"{name}: expected a dict with keys {_CONV_KEYS}, got {type(param).__name__}")
    unknown = sorted(set(param) - set(_CONV_KEYS))
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; expected some of {list(_CONV_KEYS)}")
    merged = {**defaults, **param}
    return {
        "filter_num": check_int(f"{name}['filter_num']", merged["filter_num"], 1),
        "filter_size": check_int(f"{name}['filter_size']", merged["filter_size"], 1),
        "pad": check_int(f"{name}['pad']", merged["pad"], 0),
        "stride": check_int(f"{name}['stride']", merged["stride"], 1),
    }


def conv_config(in_ch: int, hw: tuple[int, int], p: dict[str, int]) -> tuple[dict[str, Any], tuple[int, int]]:
    """A Convolution's config for ``in_ch`` channels of size ``hw``, and the (H, W) it outputs."""
    k, s, pad = p["filter_size"], p["stride"], p["pad"]
    out_hw = (get_conv_outsize(hw[0], k, s, pad), get_conv_outsize(hw[1], k, s, pad))
    if min(out_hw) < 1:
        raise ValueError(f"conv_param {p}: a {k}x{k} filter does not fit the {hw[0]}x{hw[1]} input it receives")
    return {"type": "Convolution", "shape": [p["filter_num"], in_ch, k, k], "stride": [s, s], "pad": [pad, pad]}, out_hw


def pool_config(hw: tuple[int, int]) -> tuple[dict[str, Any], tuple[int, int]]:
    """2x2 max pooling with stride 2, and the (H, W) it outputs."""
    if min(hw) < 2:
        raise ValueError(f"input_dim: the {hw[0]}x{hw[1]} feature map is too small for 2x2 pooling")
    config = {"type": "Pooling", "pool_h": 2, "pool_w": 2, "stride": [2, 2], "pad": [0, 0]}
    return config, (get_conv_outsize(hw[0], 2, 2, 0), get_conv_outsize(hw[1], 2, 2, 0))


def check_init(weight_init_std: InitSpec, dtype: Any) -> str:
    """Validate the settings that only the initial weights use; returns the dtype's name."""
    init_std(weight_init_std, 1)
    return float_dtype_name(dtype)


class BookNetwork(Network):
    """A network of the book: its layers are determined by its constructor's arguments.

    Subclasses define :meth:`describe` (checked arguments -> layer configs); :meth:`layer_configs`
    takes the same keyword arguments as the constructor (less ``device`` and ``seed``) and is
    what rebuilding from a file calls, so the constructor's signature is written once."""

    @classmethod
    def layer_configs(cls, **kwargs: Any) -> tuple[dict[str, Any], LayerConfigs]:
        """The checked constructor arguments (JSON-able) and the layers they describe, as
        (name, config) pairs; nothing is allocated. Unknown argument names raise TypeError."""
        try:
            bound = inspect.signature(cls.__init__).bind(None, **kwargs)
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}: {exc}") from None
        bound.apply_defaults()
        args = {k: v for k, v in bound.arguments.items() if k not in ("self", "device", "seed")}
        return cls.describe(args)

    @staticmethod
    def describe(args: dict[str, Any]) -> tuple[dict[str, Any], LayerConfigs]:  # pragma: no cover - abstract
        raise NotImplementedError


def constructor_arguments(local_names: dict[str, Any]) -> dict[str, Any]:
    """A constructor's arguments from its ``locals()`` at the top, as :meth:`BookNetwork.layer_configs` takes them."""
    return {k: v for k, v in local_names.items() if k not in ("self", "device", "seed", "__class__")}


class LayerFactory:
    """Builds described layers on one device and dtype, drawing initial weights from one seed:
    N(0, std^2) weights (std from ``weight_init_std`` -- or ``affine_init_std`` for Affine layers --
    and the fan-in) and zero biases for Convolution and Affine, BatchNormalization as the identity
    (gamma 1, beta 0); every other layer from its config."""

    def __init__(
        self,
        weight_init_std: InitSpec,
        dtype: Any,
        device: str | Device | None,
        seed: int | None,
        affine_init_std: InitSpec | None = None,
    ) -> None:
        self.weight_init_std = weight_init_std
        self.affine_init_std = affine_init_std  # the affine layers' own, where it differs
        self.dtype = numpy.dtype(check_init(weight_init_std, dtype))
        self.device = parse_device(device)
        self.rng = numpy.random.default_rng(seed)

    def _put(self, a: numpy.ndarray) -> Any:
        return to_device(a, self.device)

    def build(self, configs: Iterable[tuple[str, dict[str, Any]]]) -> list[tuple[str, Layer]]:
        """The layers ``configs`` describe, in order (composites with their children, depth
        first), their initial arrays drawn from this factory's generator."""
        return [(name, self._layer(config)) for name, config in configs]

    def _layer(self, config: dict[str, Any]) -> Layer:
        cls = layer_class(config["type"])
        if issubclass(cls, Composite):
            return cls.from_children(config, self.build(cls.child_configs(config)))
        if config["type"] == "Convolution":
            shape = tuple(config["shape"])
            W = normal(shape, init_std(self.weight_init_std, int(numpy.prod(shape[1:]))), self.rng, self.dtype)
            b = numpy.zeros(shape[0], dtype=self.dtype) if config.get("bias", True) else None
            return Convolution(self._put(W), None if b is None else self._put(b), config["stride"], config["pad"])
        if config["type"] == "Affine":
            shape = tuple(config["shape"])
            std = init_std(self.affine_init_std or self.weight_init_std, shape[0])
            W = normal(shape, std, self.rng, self.dtype)
            return Affine(self._put(W), self._put(numpy.zeros(shape[1], dtype=self.dtype)))
        if config["type"] == "BatchNormalization":  # the identity at first: gamma 1, beta 0

            def filled(value: float) -> Any:  # a separate array each: gamma is updated in place
                return self._put(numpy.full(int(config["num_features"]), value, dtype=self.dtype))

            return BatchNormalization(
                filled(1), filled(0), config.get("momentum", 0.9), running_mean=filled(0), running_var=filled(1),
                eps=config.get("eps", 1e-5), unbiased=config.get("unbiased", True),
            )  # fmt: skip
        return cls.from_config(config, self.dtype)
