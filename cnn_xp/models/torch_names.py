"""Reading a PyTorch-style state dict (``conv1.weight``, ``fc.bias``, ...) into a cnn_xp network.

The mapping is by order, not by name, because PyTorch names are whatever the model's author
chose: PyTorch lists a model's modules in the order they were registered (the layer order of an
``nn.Sequential``), and each module that holds parameters is matched to the next cnn_xp leaf
layer (depth first through blocks, as a residual block's body before its shortcut) that holds
parameters.

=============================================  ============================================
PyTorch module (its state-dict entries)         cnn_xp layer (its parameters)
=============================================  ============================================
``Conv2d``: ``weight`` (out, in, kh, kw),       ``Convolution``: ``W`` (same layout), ``b``
``bias`` (out,)                                 (zeros when the module has no bias; none for a
                                                convolution without bias)
``Linear``: ``weight`` (out, in), ``bias``      ``Affine``: ``W`` = ``weight.T`` (in, out), ``b``
``BatchNorm1d/2d``: ``weight``, ``bias``,       ``BatchNormalization``: ``gamma``, ``beta``,
``running_mean``, ``running_var``               ``running_mean``, ``running_var``
(``num_batches_tracked`` is ignored)
=============================================  ============================================

``nn.Flatten`` of (N, C, H, W) orders features as ``Affine`` does (C, then H, then W), so a
``Linear`` after a flattened convolution needs no reordering.  Layers without parameters (ReLU,
pooling, dropout) are not in a state dict and are not matched.  Two conventions differ and only
matter when training goes on: PyTorch's BatchNorm ``momentum=0.1`` is cnn_xp's ``momentum=0.9``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy  # host arrays: the state dict is read onto the host first

from ..backend import to_numpy
from ..layers import Affine, BatchNormalization, Convolution
from ..layers.base import Layer

Array = Any
_IGNORED = ("num_batches_tracked",)
_TORCH_NAME = {"Convolution": "Conv2d", "Affine": "Linear", "BatchNormalization": "BatchNorm"}  # for messages


def is_torch_style(state: Mapping[str, Any]) -> bool:
    """True if the keys look like PyTorch's (``module.weight``): cnn_xp's own keys have no dot."""
    return bool(state) and all(isinstance(k, str) and "." in k for k in state)


def _torch_modules(state: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """[(module prefix, {entry: host array})] in the state dict's order."""
    modules: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        prefix, entry = key.rsplit(".", 1)
        if entry in _IGNORED:
            continue
        if getattr(value, "requires_grad", False):  # dict(model.named_parameters()) rather than state_dict()
            value = value.detach()
        modules.setdefault(prefix, {})[entry] = to_numpy(value)
    return list(modules.items())


def _kind_of_module(prefix: str, entries: dict[str, Any]) -> str:
    if "running_mean" in entries or "running_var" in entries:
        return "BatchNormalization"
    weight = entries.get("weight")
    if weight is not None and weight.ndim == 4:
        return "Convolution"
    if weight is not None and weight.ndim == 2:
        return "Affine"
    shapes = {k: tuple(v.shape) for k, v in entries.items()}
    raise ValueError(
        f"state: PyTorch module {prefix!r} with entries {shapes} is not a Conv2d, Linear or BatchNorm "
        "(the modules cnn_xp can read)"
    )


def _kind_of_layer(name: str, layer: Layer) -> str:
    for cls in (Convolution, Affine, BatchNormalization):
        if isinstance(layer, cls):
            return cls.__name__
    raise ValueError(f"state: layer {name!r} ({type(layer).__name__}) has parameters that no PyTorch module maps to")


def torch_to_cnn_xp(layers: Mapping[str, Layer], state: Mapping[str, Any]) -> dict[tuple[str, str], Array]:
    """{(layer path, attribute): host array} for the leaf ``layers`` (by dotted path, in order) from
    a PyTorch state dict (see the module doc).

    Raises ValueError naming both sides when the modules and layers do not pair up.
    """
    modules = _torch_modules(state)
    targets = [(name, layer) for name, layer in layers.items() if layer.param_names]
    theirs = [f"{prefix} ({_TORCH_NAME[_kind_of_module(prefix, entries)]})" for prefix, entries in modules]
    ours = [f"{name} ({_kind_of_layer(name, layer)})" for name, layer in targets]
    mismatch = len(modules) != len(targets) or any(
        _kind_of_module(p, e) != _kind_of_layer(n, layer) for (p, e), (n, layer) in zip(modules, targets, strict=False)
    )
    if mismatch:
        raise ValueError(
            f"state: the PyTorch modules {theirs} do not pair up, in order, with this network's layers {ours}"
        )
    out: dict[tuple[str, str], Array] = {}
    for (prefix, entries), (name, layer) in zip(modules, targets, strict=True):
        kind = _kind_of_layer(name, layer)
        if kind == "BatchNormalization":
            c = layer.gamma.shape[0]  # type: ignore[attr-defined]
            ones, zeros = _filled(entries["running_mean"], c, 1), _filled(entries["running_mean"], c, 0)
            values = {
                "gamma": entries.get("weight", ones),
                "beta": entries.get("bias", zeros),
                "running_mean": entries["running_mean"],
                "running_var": entries["running_var"],
            }
        else:
            weight = entries["weight"]
            W = weight if kind == "Convolution" else weight.T  # Linear (out, in) -> Affine (in, out)
            values = {"W": W}
            if "b" in layer.param_names:
                values["b"] = entries.get("bias", _filled(weight, weight.shape[0], 0))
            elif "bias" in entries:
                raise ValueError(
                    f"state: PyTorch module {prefix!r} has a bias but layer {name!r} has none (bias=False)"
                )
        unknown = sorted(set(entries) - {"weight", "bias", "running_mean", "running_var"})
        if unknown:
            raise ValueError(f"state: PyTorch module {prefix!r} has entries {unknown} that {kind} does not have")
        for attr, value in values.items():
            out[(name, attr)] = value
    return out


def _filled(like: Any, n: int, value: float) -> Any:
    return numpy.full((n,), value, dtype=like.dtype)
