"""Networks as data: the description a checkpoint stores, checked before anything is built.

A *spec* is JSON-able::

    {"name": "Network" | "SimpleConvNet" | ...,   # the class to rebuild (a book network, else Network)
     "kwargs": {...},                              # a book network's constructor arguments
     "input_dim": [C, H, W] | None,                # the input it was built or trained for
     "dtype": "float32" | "float64",
     "layers": [{"name": "Conv1", "type": "Convolution", ...settings}, ...],
     "loss": {"type": "SoftmaxWithLoss"}}

:func:`check_spec` validates a spec (types, ranges, every layer type registered) and returns
the shape of every tensor the network it describes holds — so a file can be compared with
its own description before one byte of weights is read or one array allocated.
:func:`build_network` then builds it on the host, zero-filled. Files of cnn_xp 0.x before
specs (``{"name", "kwargs"}`` only) are expanded from the book network's constructor.
"""

from __future__ import annotations

import json
import os
from typing import Any

from .._version import __version__
from ..checks import check_int, float_dtype_name
from ..layers.base import Layer
from ..layers.registry import layer_class
from ..serialization import CHECKPOINT_FORMAT, FORMAT_VERSION, PARAMS_FORMAT, Header, read_header
from .network import Network, slot_keys
from .zoo import network_classes

# every metadata entry a cnn_xp file may have (training checkpoints use all of them)
KNOWN_METADATA = ("format", "format_version", "cnn_xp_version", "model", "trainer", "rng", "run", "optimizer")
SPEC_KEYS = ("name", "kwargs", "input_dim", "dtype", "layers", "loss")
DEFAULT_LOSS = {"type": "SoftmaxWithLoss"}


def param_keys(spec: dict[str, Any]) -> list[str]:
    """The state keys of a checked spec's trainable parameters (what an optimizer keeps state for)."""
    classes = [(entry["name"], layer_class(entry["type"])) for entry in spec["layers"]]
    return [key for key, _, attr, trainable in slot_keys(classes) if trainable]


def check_spec(spec: Any, where: str = "model") -> tuple[dict[str, Any], dict[str, tuple[int, ...]]]:
    """The checked, complete spec and ``{state key: shape}`` of the network it describes.

    Raises ValueError (naming ``where`` and the bad entry) for anything malformed: unknown
    keys, wrong types or ranges, unregistered layer types, duplicate layer names, or layers
    that are not what a book network's arguments produce. Allocates nothing."""
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: expected a JSON object describing the network, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown entries {unknown}; expected some of {list(SPEC_KEYS)}")
    name = spec.get("name", "Network")
    if not isinstance(name, str):
        raise ValueError(f"{where}: 'name' must be a string, got {name!r}")
    book = network_classes().get(name)
    kwargs = spec.get("kwargs")
    try:
        if book is not None and kwargs is not None:
            if not isinstance(kwargs, dict):
                raise ValueError(f"'kwargs' must be an object, got {type(kwargs).__name__}")
            kwargs, book_layers = book.layer_configs(**kwargs)  # type: ignore[attr-defined]
            layers = [{"name": n, **c} for n, c in book_layers]
            if "layers" in spec and _json_equal(spec["layers"]) != layers:
                raise ValueError(f"its 'layers' are not those of {name}(**kwargs)")
            input_dim: Any = kwargs["input_dim"]
            dtype = spec.get("dtype", kwargs["dtype"])
        else:
            if "layers" not in spec:
                raise ValueError(f"{name!r} is not a book network, so its 'layers' must be given")
            layers, input_dim, dtype = spec["layers"], spec.get("input_dim"), spec.get("dtype", "float32")
            kwargs = None
        classes, shapes = _check_layers(layers)
        if input_dim is not None:
            if not isinstance(input_dim, list) or not 1 <= len(input_dim) <= 3:
                raise ValueError(f"input_dim: expected [C, H, W] or [D], got {input_dim!r:.80}")
            input_dim = [check_int(f"input_dim[{i}]", v, 1) for i, v in enumerate(input_dim)]
        dtype = float_dtype_name(dtype, "dtype")
        loss = spec.get("loss", DEFAULT_LOSS)
        if not isinstance(loss, dict):
            raise ValueError(f"'loss' must be an object, got {type(loss).__name__}")
        loss_cls = layer_class(loss.get("type"), "loss")
        if loss_cls.state_shapes(loss) or loss_cls.param_names:
            raise ValueError(f"the loss layer {loss.get('type')!r} must hold no arrays")
    except TypeError as exc:  # wrong argument names or types
        raise ValueError(f"{where}: {exc}") from None
    except ValueError as exc:  # UnregisteredLayerError stays itself
        raise type(exc)(f"{where}: {exc}") from None
    expected = {key: shapes[layer][attr] for key, layer, attr, _ in slot_keys(classes)}
    checked = {"name": name, "input_dim": input_dim, "dtype": dtype, "layers": layers, "loss": loss}
    if kwargs is not None:
        checked["kwargs"] = kwargs
    return checked, expected


def _check_layers(layers: Any) -> tuple[list[tuple[str, type[Layer]]], dict[str, dict[str, tuple[int, ...]]]]:
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"'layers' must be a non-empty list, got {layers!r:.80}")
    classes: list[tuple[str, type[Layer]]] = []
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"layers[{i}]: expected an object with a 'name' string and a 'type', got {entry!r:.80}")
        name = entry["name"]
        if name in shapes:
            raise ValueError(f"layers[{i}]: duplicate layer name {name!r}")
        cls = layer_class(entry.get("type"), f"layers[{i}] ({name})")
        config = {k: v for k, v in entry.items() if k != "name"}
        try:
            layer_shapes = cls.state_shapes(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"layers[{i}] ({name}): {exc}") from None
        wanted = set(cls.param_names) | set(cls.buffer_names)
        if set(layer_shapes) != wanted:
            raise ValueError(
                f"layers[{i}] ({name}): state_shapes() gives {sorted(layer_shapes)}, expected {sorted(wanted)}"
            )
        classes.append((name, cls))
        shapes[name] = layer_shapes
    return classes, shapes


def _json_equal(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples -> lists), to compare with a fresh description."""
    return json.loads(json.dumps(value))


def build_network(spec: dict[str, Any]) -> Network:
    """The network a *checked* spec describes, on the host, every array zero-filled (load a
    state dict next). A book network comes back as its class (``SimpleConvNet``, ...)."""
    dtype = spec["dtype"]
    layers = [
        (entry["name"], layer_class(entry["type"]).from_config({k: v for k, v in entry.items() if k != "name"}, dtype))
        for entry in spec["layers"]
    ]
    loss = layer_class(spec["loss"]["type"]).from_config(spec["loss"], dtype)
    cls = network_classes().get(spec["name"], Network) if "kwargs" in spec else Network
    net = cls.__new__(cls)  # a book network's layers are built from the spec, not redrawn
    config = {"name": spec["name"], **({"kwargs": spec["kwargs"]} if "kwargs" in spec else {})}
    input_dim = tuple(spec["input_dim"]) if spec.get("input_dim") is not None else None
    Network.__init__(net, layers, loss, config=config, input_dim=input_dim)
    return net


def read_described_file(
    path: str | os.PathLike[str],
) -> tuple[Header, dict[str, str], tuple[dict[str, Any], dict[str, tuple[int, ...]]] | None]:
    """A cnn_xp file's header (tensor names, dtypes, shapes) and metadata, and — when it says it
    is a cnn_xp file — its checked spec with the shapes it implies; only the header is read.
    Raises ValueError for an unreadable or non-safetensors file, an unknown format or a newer
    format version, and any malformed model description. A safetensors file without cnn_xp
    metadata gives None for the description."""
    header, meta = read_header(path)
    if "format" not in meta:
        return header, meta, None
    fmt = meta["format"]
    if fmt not in (CHECKPOINT_FORMAT, PARAMS_FORMAT):
        raise ValueError(f"{path}: not a cnn_xp checkpoint (format {fmt!r}; expected {CHECKPOINT_FORMAT!r})")
    version = meta.get("format_version", "")
    if not version.isdigit() or not 1 <= int(version) < 1000:
        raise ValueError(f"{path}: bad format_version {version!r}")
    if int(version) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written in checkpoint format version {version} by cnn_xp {meta.get('cnn_xp_version', '?')}; "
            f"this cnn_xp ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade cnn_xp"
        )
    unknown = sorted(set(meta) - set(KNOWN_METADATA))
    if unknown:
        raise ValueError(f"{path}: unknown metadata entries {unknown}; expected some of {list(KNOWN_METADATA)}")
    if "model" not in meta:
        raise ValueError(f"{path}: checkpoint metadata has no 'model' entry")
    try:
        described = json.loads(meta["model"])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: checkpoint metadata 'model' is not valid JSON ({exc})") from None
    return header, meta, check_spec(described, where=f"{path}: model")
