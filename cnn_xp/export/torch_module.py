"""A cnn_xp network as a PyTorch module with the same layers and a copy of its weights.

``to_torch(net)`` maps each layer to its PyTorch counterpart -- ``Convolution`` to ``Conv2d``
(``W`` is already (out, in, kh, kw)), ``Affine`` to ``Flatten`` + ``Linear`` (weight ``W.T``),
``BatchNormalization`` to ``BatchNorm2d``/``1d`` (its running statistics; PyTorch's momentum is
``1 - momentum``), ``Pooling``/``AvgPooling``/``GlobalAvgPooling``, ``Relu``, ``Sigmoid``,
``Dropout``, and the composites ``Sequential`` and ``Residual`` (body + shortcut) -- so that
PyTorch computes the same function (the benchmark's peers run it; the tests hold it to cnn_xp's
outputs).  The loss layer is left out: the module returns the scores.  PyTorch is imported here
only.
"""

from __future__ import annotations

from typing import Any

import numpy

from ..backend import to_numpy
from ..layers import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    Dropout,
    GlobalAvgPooling,
    Layer,
    Pooling,
    Relu,
    Residual,
    Sequential,
    Sigmoid,
)
from ..models import Network


def _tensor(torch: Any, a: Any) -> Any:
    return torch.from_numpy(numpy.array(to_numpy(a), dtype=numpy.float32))


def _module(torch: Any, layer: Layer) -> Any:
    nn = torch.nn
    if isinstance(layer, Convolution):
        fn, c, kh, kw = (int(d) for d in layer.W.shape)
        conv = nn.Conv2d(c, fn, (kh, kw), layer.stride, layer.pad, bias=layer.b is not None)
        with torch.no_grad():
            conv.weight.copy_(_tensor(torch, layer.W))
            if layer.b is not None:
                conv.bias.copy_(_tensor(torch, layer.b))
        return conv
    if isinstance(layer, Affine):
        d_in, d_out = (int(d) for d in layer.W.shape)
        linear = nn.Linear(d_in, d_out)
        with torch.no_grad():
            linear.weight.copy_(_tensor(torch, layer.W).T)
            linear.bias.copy_(_tensor(torch, layer.b))
        return nn.Sequential(nn.Flatten(), linear)
    if isinstance(layer, BatchNormalization):
        bn = _batch_norm(torch)(int(layer.gamma.shape[0]), eps=layer.eps, momentum=1.0 - layer.momentum)
        with torch.no_grad():
            bn.weight.copy_(_tensor(torch, layer.gamma))
            bn.bias.copy_(_tensor(torch, layer.beta))
            bn.running_mean.copy_(_tensor(torch, layer.running_mean))
            bn.running_var.copy_(_tensor(torch, layer.running_var))
        return bn
    if isinstance(layer, GlobalAvgPooling):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
    if isinstance(layer, AvgPooling):
        return nn.AvgPool2d((layer.pool_h, layer.pool_w), layer.stride, layer.pad, count_include_pad=True)
    if isinstance(layer, Pooling):
        return nn.MaxPool2d((layer.pool_h, layer.pool_w), layer.stride, layer.pad)
    if isinstance(layer, Relu):
        return nn.ReLU()
    if isinstance(layer, Sigmoid):
        return nn.Sigmoid()
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.dropout_ratio)
    if isinstance(layer, Sequential):
        return nn.Sequential(*(_module(torch, child) for _, child in layer.children()))
    if isinstance(layer, Residual):
        return _residual(torch)(
            _module(torch, layer.body), None if layer.shortcut is None else _module(torch, layer.shortcut)
        )
    raise ValueError(f"net: no PyTorch counterpart for layer {type(layer).__name__}")


def _batch_norm(torch: Any) -> type:
    class BatchNorm(torch.nn.modules.batchnorm._BatchNorm):
        """Per channel on (N, C) and (N, C, H, W) alike, as cnn_xp's BatchNormalization."""

        def _check_input_dim(self, x: Any) -> None:
            if x.dim() not in (2, 4):
                raise ValueError(f"expected (N, C) or (N, C, H, W) input, got {x.dim()} dimensions")

    return BatchNorm


def _residual(torch: Any) -> type:
    class ResidualModule(torch.nn.Module):
        def __init__(self, body: Any, shortcut: Any) -> None:
            super().__init__()
            self.body, self.shortcut = body, shortcut

        def forward(self, x: Any) -> Any:
            return self.body(x) + (x if self.shortcut is None else self.shortcut(x))

    return ResidualModule


def to_torch(net: Network) -> Any:
    """``net``'s layers (not its loss) as a ``torch.nn.Sequential`` on the CPU, float32, with a
    copy of its weights and batch-normalisation statistics, in ``net``'s train/eval mode."""
    import torch

    if not isinstance(net, Network):
        raise TypeError(f"net: expected a cnn_xp Network, got {type(net).__name__}")
    module = torch.nn.Sequential(*(_module(torch, layer) for layer in net.layers.values()))
    return module.train(net.training)


def torch_parameters(net: Network, module: Any) -> dict[str, Any]:
    """``net.params`` key -> the PyTorch parameter of ``module`` (made by :func:`to_torch`) that
    holds the same weights (an ``Affine``'s ``W`` is the transpose of its ``Linear.weight``)."""
    import torch

    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.modules.batchnorm._BatchNorm)
    leaves = [m for m in module.modules() if isinstance(m, kinds)]
    slots = list(net._param_slots.items())
    out: dict[str, Any] = {}
    by_layer: dict[int, list[tuple[str, str]]] = {}
    order: list[int] = []
    for key, (layer, attr) in slots:
        if id(layer) not in by_layer:
            order.append(id(layer))
        by_layer.setdefault(id(layer), []).append((key, attr))
    if len(order) != len(leaves):
        raise ValueError(f"module: {len(leaves)} layers with weights, the network has {len(order)}")
    names = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}
    for layer_id, leaf in zip(order, leaves, strict=True):
        for key, attr in by_layer[layer_id]:
            out[key] = getattr(leaf, names[attr])
    return out
