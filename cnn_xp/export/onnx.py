"""ONNX export: any network made of cnn_xp layers as an ONNX model, built and checked with ``onnx``.

One converter per layer type turns the layer into ONNX nodes (weights become initializers);
``Network`` layers are converted in order.  The model's metadata records how pixels become its input (``cnn_xp.preprocess``) and the class
names (``cnn_xp.classes``) when they are given.  The graph has one input ``input`` of shape
(N, *input_shape) with a dynamic batch dimension ``N`` and one output, ``scores`` (N, K) — or
``probabilities`` when ``softmax=True`` — in float32.  The loss layer is not exported.

============================  ==============================================================
cnn_xp layer                  ONNX (opset :data:`OPSET`)
============================  ==============================================================
``Convolution``               ``Conv`` (W (FN, C, FH, FW) as is, strides, pads)
``Pooling`` / ``AvgPooling``  ``MaxPool`` / ``AveragePool`` (``count_include_pad=1``)
``Affine``                    ``Flatten`` (axis 1) + ``Gemm`` (W (D_in, D_out) as B)
``Relu`` / ``Sigmoid``        ``Relu`` / ``Sigmoid``
``BatchNormalization``        ``BatchNormalization`` in inference form (running statistics)
``Dropout``                   nothing (the identity at inference)
``GlobalAvgPooling``          ``GlobalAveragePool`` + ``Flatten``
``Sequential``                its layers' nodes in order
``Residual``                  the body's and the shortcut's nodes, then ``Add``
============================  ==============================================================

Other layer types are added with :func:`register_onnx_converter`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy  # host copies of the weights: ONNX initializers live on the host

from ..backend import to_device, to_numpy
from ..data.preprocess import Preprocess
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
    no_grad,
)
from ..layers.composite import iter_all
from ..models import Network
from ..serialization import write_atomically

OPSET = 17  # every operator used here is unchanged from opset 13 to 17; ONNX Runtime >= 1.12 runs it
INSTALL_HINT = "pip install 'cnn_xp[onnx]'"


class OnnxUnavailableError(ImportError):
    """The ``onnx`` package (needed to build the graph) is not installed."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise OnnxUnavailableError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None
    return onnx


@dataclass
class GraphBuilder:
    """What a converter adds to: nodes in order and the weights they read (host float32 arrays)."""

    nodes: list[Any] = field(default_factory=list)
    initializers: list[Any] = field(default_factory=list)
    _names: set[str] = field(default_factory=set)

    def weight(self, name: str, array: Any) -> str:
        """Add ``array`` (any device, any float dtype) as a float32 initializer; return its name."""
        onnx = _onnx()
        name = self._unique(name)
        host = numpy.ascontiguousarray(to_numpy(array), dtype=numpy.float32)
        self.initializers.append(onnx.numpy_helper.from_array(host, name=name))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attrs: Any) -> str:
        """Add an ONNX node ``op`` reading ``inputs``; return the name of its one output."""
        onnx = _onnx()
        name = self._unique(name)
        self.nodes.append(onnx.helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def reserve(self, name: str) -> str:
        """Claim a tensor name (the graph's input) so no node takes it."""
        self._names.add(name)
        return name

    def _unique(self, name: str) -> str:
        base, i = name, 1
        while name in self._names:
            i += 1
            name = f"{base}_{i}"
        self._names.add(name)
        return name


Converter = Callable[[Any, GraphBuilder, str, str], str]
"""``converter(layer, graph, x, name) -> y``: add ``layer``'s nodes reading tensor ``x``; return the output tensor."""

_CONVERTERS: dict[type, Converter] = {}


def register_onnx_converter(layer_type: type) -> Callable[[Converter], Converter]:
    """Decorator: use ``fn(layer, graph, x, name) -> y`` to export layers of ``layer_type`` (and
    its subclasses, unless they have their own)::

        @register_onnx_converter(Swish)
        def _(layer, graph, x, name):
            return graph.node("Mul", [x, graph.node("Sigmoid", [x], f"{name}_sigmoid")], name)
    """
    if not isinstance(layer_type, type):
        raise TypeError(f"layer_type: expected a class, got {type(layer_type).__name__}")

    def register(fn: Converter) -> Converter:
        _CONVERTERS[layer_type] = fn
        return fn

    return register


def _converter_for(layer: Layer) -> Converter | None:
    for cls in type(layer).__mro__:
        if cls in _CONVERTERS:
            return _CONVERTERS[cls]
    return None


def _pads(pad: tuple[int, int]) -> list[int]:
    return [pad[0], pad[1], pad[0], pad[1]]  # ONNX: begins of (H, W), then ends


@register_onnx_converter(Convolution)
def _conv(layer: Convolution, g: GraphBuilder, x: str, name: str) -> str:
    fh, fw = int(layer.W.shape[2]), int(layer.W.shape[3])
    inputs = [x, g.weight(f"{name}.W", layer.W)] + ([g.weight(f"{name}.b", layer.b)] if layer.b is not None else [])
    return g.node(
        "Conv", inputs, name, kernel_shape=[fh, fw], strides=list(layer.stride), pads=_pads(layer.pad), group=1
    )


@register_onnx_converter(Pooling)
def _max_pool(layer: Pooling, g: GraphBuilder, x: str, name: str) -> str:
    # ONNX MaxPool never picks padding, as cnn_xp's -inf padding never wins
    kernel = [layer.pool_h, layer.pool_w]
    return g.node("MaxPool", [x], name, kernel_shape=kernel, strides=list(layer.stride), pads=_pads(layer.pad))


@register_onnx_converter(AvgPooling)
def _avg_pool(layer: AvgPooling, g: GraphBuilder, x: str, name: str) -> str:
    kernel = [layer.pool_h, layer.pool_w]
    return g.node(
        "AveragePool",
        [x],
        name,
        kernel_shape=kernel,
        strides=list(layer.stride),
        pads=_pads(layer.pad),
        count_include_pad=1,  # cnn_xp averages padding as zeros
    )


@register_onnx_converter(Affine)
def _affine(layer: Affine, g: GraphBuilder, x: str, name: str) -> str:
    flat = g.node("Flatten", [x], f"{name}_flatten", axis=1)  # (N, C, H, W) -> (N, C*H*W), as Affine reshapes
    return g.node("Gemm", [flat, g.weight(f"{name}.W", layer.W), g.weight(f"{name}.b", layer.b)], name)


@register_onnx_converter(Relu)
def _relu(layer: Relu, g: GraphBuilder, x: str, name: str) -> str:
    return g.node("Relu", [x], name)


@register_onnx_converter(Sigmoid)
def _sigmoid(layer: Sigmoid, g: GraphBuilder, x: str, name: str) -> str:
    return g.node("Sigmoid", [x], name)


@register_onnx_converter(BatchNormalization)
def _batch_norm(layer: BatchNormalization, g: GraphBuilder, x: str, name: str) -> str:
    inputs = [
        x,
        g.weight(f"{name}.gamma", layer.gamma),
        g.weight(f"{name}.beta", layer.beta),
        g.weight(f"{name}.running_mean", layer.running_mean),
        g.weight(f"{name}.running_var", layer.running_var),
    ]
    return g.node("BatchNormalization", inputs, name, epsilon=layer.eps)


@register_onnx_converter(Dropout)
def _dropout(layer: Dropout, g: GraphBuilder, x: str, name: str) -> str:
    return x  # inverted dropout: inference is the identity


@register_onnx_converter(GlobalAvgPooling)
def _global_avg_pool(layer: GlobalAvgPooling, g: GraphBuilder, x: str, name: str) -> str:
    pooled = g.node("GlobalAveragePool", [x], f"{name}_pool")  # (N, C, 1, 1)
    return g.node("Flatten", [pooled], name, axis=1)


@register_onnx_converter(Sequential)
def _sequential(layer: Sequential, g: GraphBuilder, x: str, name: str) -> str:
    return _chain(layer.children(), g, x, name)


@register_onnx_converter(Residual)
def _residual(layer: Residual, g: GraphBuilder, x: str, name: str) -> str:
    body = _chain([("body", layer.body)], g, x, name)
    shortcut = x if layer.shortcut is None else _chain([("shortcut", layer.shortcut)], g, x, name)
    return g.node("Add", [body, shortcut], name)


def _chain(layers: list[tuple[str, Layer]], g: GraphBuilder, x: str, prefix: str) -> str:
    """The nodes of ``layers`` in order, each named by its dotted path under ``prefix``."""
    for child, layer in layers:
        converter = _converter_for(layer)
        assert converter is not None  # to_onnx checked every layer
        x = converter(layer, g, x, f"{prefix}.{child}" if prefix else child)
    return x


def _input_shape(net: Network, input_shape: Any) -> tuple[int, ...]:
    """(C, H, W) or (D,) of one sample: given, the network's recorded input_dim, or from a first Affine."""
    if input_shape is None:
        input_shape = net.input_dim
    if input_shape is None:
        first = next(iter(net.layers.values()))
        if isinstance(first, Affine):
            input_shape = (int(first.W.shape[0]),)
        else:
            raise ValueError(
                "input_shape: cannot tell the shape of one input sample for this network; "
                "pass it, e.g. input_shape=(1, 28, 28) for (C, H, W)"
            )
    shape = tuple(input_shape)
    if not shape or not all(isinstance(d, (int, numpy.integer)) and not isinstance(d, bool) and d > 0 for d in shape):
        raise ValueError(f"input_shape: expected positive ints such as (1, 28, 28), got {input_shape!r}")
    return tuple(int(d) for d in shape)


def to_onnx(
    net: Network,
    input_shape: Any = None,
    softmax: bool = False,
    opset: int = OPSET,
    preprocess: Preprocess | None = None,
    class_names: list[str] | None = None,
) -> Any:
    """``net`` as an ``onnx.ModelProto``, checked with ``onnx.checker`` (see the module doc)."""
    onnx = _onnx()
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a cnn_xp Network, got {type(net).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, int) or opset < 13:
        raise ValueError(f"opset: expected an int >= 13 (the operators' current versions), got {opset!r}")
    shape = _input_shape(net, input_shape)
    missing = [
        f"{n} ({type(layer).__name__})" for n, layer in iter_all(net.layers.items()) if _converter_for(layer) is None
    ]
    if missing:
        raise ValueError(
            f"net: no ONNX conversion for layer(s) {missing}; register one with "
            "cnn_xp.export.register_onnx_converter(LayerType)"
        )
    # one forward pass checks that the input shape fits and gives the number of outputs
    probe = to_device(numpy.zeros((1, *shape), dtype=numpy.float32), net.device)
    try:
        with no_grad():
            scores = net.predict(probe, train_flg=False)
    except ValueError as exc:
        raise ValueError(f"input_shape: {shape} does not fit this network: {exc}") from None
    if scores.ndim != 2:
        raise ValueError(f"net: expected scores of shape (N, K) at the end, got shape {tuple(scores.shape)}")
    classes = int(scores.shape[1])
    g = GraphBuilder()
    x = g.reserve("input")
    x = _chain(list(net.layers.items()), g, x, "")
    out_name = "probabilities" if softmax else "scores"
    if softmax:
        g.nodes.append(onnx.helper.make_node("Softmax", [x], [out_name], axis=1))
    else:
        g.nodes.append(onnx.helper.make_node("Identity", [x], [out_name]))
    float32 = onnx.TensorProto.FLOAT
    graph = onnx.helper.make_graph(
        g.nodes,
        net.config.get("name", type(net).__name__),
        [onnx.helper.make_tensor_value_info("input", float32, ["N", *shape])],
        [onnx.helper.make_tensor_value_info(out_name, float32, ["N", classes])],
        initializer=g.initializers,
    )
    opsets = [onnx.helper.make_opsetid("", opset)]
    model = onnx.helper.make_model(
        graph,
        opset_imports=opsets,
        ir_version=onnx.helper.find_min_ir_version_for(opsets),  # the oldest runtime that can read it
        producer_name="cnn_xp",
    )
    props = {"cnn_xp.classes": json.dumps(class_names)} if class_names else {}
    if preprocess is not None:  # what to do to pixels before they are the graph's input
        recipe = {**preprocess.to_json(), "channels": shape[0], "size": list(shape[1:]), "resize": "bilinear"}
        props["cnn_xp.preprocess"] = json.dumps(recipe)
    if props:
        onnx.helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)  # structure and shape inference
    return model


def export_onnx(
    net: Network,
    path: str | os.PathLike[str],
    input_shape: Any = None,
    softmax: bool = False,
    opset: int = OPSET,
    preprocess: Preprocess | None = None,
    classes: list[str] | None = None,
) -> Path:
    """Write ``net`` to ``path`` as an ONNX model (float32, dynamic batch, opset :data:`OPSET`),
    atomically.  ``input_shape`` is one sample's shape, e.g. ``(1, 28, 28)``; it is read from the
    network when it can be.  ``softmax=True`` ends the graph with a Softmax (output
    ``probabilities``), else it outputs the raw ``scores``.  ``preprocess`` and ``classes`` are
    recorded in the model's metadata (``cnn_xp.preprocess``: scale, per-channel mean and std,
    channels, size and resize filter of the pixels the input is made from; ``cnn_xp.classes``).
    Raises ValueError for a layer with no converter or a shape that does not fit, before anything
    is written."""
    model = to_onnx(
        net, input_shape=input_shape, softmax=softmax, opset=opset, preprocess=preprocess, class_names=classes
    )
    return write_atomically(path, model.SerializeToString())
