"""What turns stored pixels into a network's input: one definition for training, evaluation,
prediction and the ONNX export.

``x = (pixels * scale - mean[c]) / std[c]`` per channel c: ``scale`` is 1/255 for 8-bit images
(1 for images stored as floats); ``mean`` and ``std`` are the training split's per-channel
statistics of the scaled pixels, or absent (no normalisation: the bundled MNIST's path, whose
results stay as they were).  A run stores its :class:`Preprocess` in its checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy

from ..backend import array_device, get_array_module

Array = Any
MAX_CHANNELS = 4096


@dataclass(frozen=True)
class Preprocess:
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = field(default=())
    std: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (isinstance(self.scale, (int, float)) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"preprocess.scale: expected a positive number, got {self.scale!r}")
        if len(self.mean) != len(self.std) or len(self.mean) > MAX_CHANNELS:
            raise ValueError(
                f"preprocess: mean and std need one value per channel, got {self.mean!r:.80} and {self.std!r:.80}"
            )
        for m, s in zip(self.mean, self.std, strict=True):
            if not (
                isinstance(m, (int, float))
                and isinstance(s, (int, float))
                and math.isfinite(m)
                and s > 0
                and math.isfinite(s)
            ):
                raise ValueError(f"preprocess: expected finite means and positive deviations, got {m!r}, {s!r}")

    @classmethod
    def of_training_split(cls, x: numpy.ndarray, normalize: bool) -> Preprocess:
        """The preprocessing of a dataset whose training images are ``x`` (N, C, H, W): scale by
        their kind (uint8: 1/255), and with ``normalize`` their per-channel mean and standard
        deviation (after scaling, over N, H and W; computed in float64, a channel at a time)."""
        scale = 1.0 / 255.0 if x.dtype == numpy.uint8 else 1.0
        if not normalize:
            return cls(scale)
        means, stds = [], []
        for c in range(x.shape[1]):
            plane = x[:, c].astype(numpy.float64) * scale
            means.append(float(plane.mean()))
            stds.append(max(float(plane.std()), 1e-6))  # a constant channel: no division by zero
        return cls(scale, tuple(means), tuple(stds))

    def apply(self, x: Array, copy: bool) -> Array:
        """The network input of pixels ``x`` (float, any device): in place unless ``copy``."""
        xp = get_array_module(x)
        if not self.mean:
            return x * self.scale if copy else _scaled_in_place(x, self.scale)
        c = x.shape[1]
        if len(self.mean) != c:
            raise ValueError(
                f"x: expected {len(self.mean)} channels for this preprocessing, got shape {tuple(x.shape)}"
            )
        shape = (1, c) + (1,) * (x.ndim - 2)
        a = xp.reshape(xp.asarray([self.scale / s for s in self.std], dtype=x.dtype, device=array_device(x)), shape)
        b = xp.reshape(
            xp.asarray(
                [-m / s for m, s in zip(self.mean, self.std, strict=True)], dtype=x.dtype, device=array_device(x)
            ),
            shape,
        )
        if copy:
            return x * a + b
        x *= a
        x += b
        return x

    def apply_host(self, x: numpy.ndarray, dtype: Any = "float32") -> numpy.ndarray:
        """:meth:`apply` to host pixels, into a new array of ``dtype`` (as a DataLoader of that
        dtype computes it)."""
        return self.apply(numpy.array(x, dtype=dtype), copy=False)

    def to_json(self) -> dict[str, Any]:
        return {"scale": self.scale, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json(cls, value: Any) -> Preprocess:
        if not isinstance(value, dict) or set(value) - {"scale", "mean", "std"}:
            raise ValueError(f"preprocess: expected an object with scale, mean and std, got {value!r:.80}")
        mean, std = value.get("mean", []), value.get("std", [])
        if not isinstance(mean, list) or not isinstance(std, list):
            raise ValueError("preprocess: mean and std must be lists")
        return cls(value.get("scale", 1.0 / 255.0), tuple(mean), tuple(std))


def _scaled_in_place(x: Array, scale: float) -> Array:
    x *= scale
    return x
