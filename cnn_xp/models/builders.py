"""Helpers the concrete networks share: validated conv settings and initialised layers."""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import Device, parse_device, to_device
from ..checks import check_int, float_dtype_name
from ..functions.conv_utils import get_conv_outsize
from ..init import InitSpec, init_std, normal
from ..layers import Affine, Convolution

_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")


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


class LayerFactory:
    """Creates initialised Convolution/Affine layers on one device and dtype from one seed."""

    def __init__(self, weight_init_std: InitSpec, dtype: Any, device: str | Device | None, seed: int | None) -> None:
        self.weight_init_std = weight_init_std
        self.dtype = numpy.dtype(float_dtype_name(dtype))
        self.device = parse_device(device)
        self.rng = numpy.random.default_rng(seed)
        init_std(weight_init_std, 1)  # validate the spec before drawing anything

    def _put(self, a: numpy.ndarray) -> Any:
        return to_device(a, self.device)

    def conv(self, in_ch: int, hw: tuple[int, int], p: dict[str, int]) -> tuple[Convolution, tuple[int, int]]:
        """A Convolution for ``in_ch`` input channels and the (H, W) it outputs for input ``hw``."""
        k = p["filter_size"]
        std = init_std(self.weight_init_std, in_ch * k * k)
        W = normal((p["filter_num"], in_ch, k, k), std, self.rng, self.dtype)
        b = numpy.zeros(p["filter_num"], dtype=self.dtype)
        out_hw = (get_conv_outsize(hw[0], k, p["stride"], p["pad"]), get_conv_outsize(hw[1], k, p["stride"], p["pad"]))
        if min(out_hw) < 1:
            raise ValueError(f"conv_param {p}: a {k}x{k} filter does not fit the {hw[0]}x{hw[1]} input it receives")
        return Convolution(self._put(W), self._put(b), stride=p["stride"], pad=p["pad"]), out_hw

    def affine(self, d_in: int, d_out: int) -> Affine:
        std = init_std(self.weight_init_std, d_in)
        W = normal((d_in, d_out), std, self.rng, self.dtype)
        return Affine(self._put(W), self._put(numpy.zeros(d_out, dtype=self.dtype)))


def pooled(hw: tuple[int, int]) -> tuple[int, int]:
    """(H, W) after 2x2 max pooling with stride 2."""
    if min(hw) < 2:
        raise ValueError(f"input_dim: the {hw[0]}x{hw[1]} feature map is too small for 2x2 pooling")
    return get_conv_outsize(hw[0], 2, 2, 0), get_conv_outsize(hw[1], 2, 2, 0)
