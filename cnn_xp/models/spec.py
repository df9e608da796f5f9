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
from ..layers.base import checked_output
from ..layers.composite import MAX_DEPTH, Composite
from ..layers.registry import layer_class
from ..serialization import CHECKPOINT_FORMAT, FORMAT_VERSION, PARAMS_FORMAT, Header, read_header
from .naming import Leaf, slot_keys
from .zoo import network_classes

# every metadata entry a cnn_xp file may have (training checkpoints use all of them)
KNOWN_METADATA = ("format", "format_version", "cnn_xp_version", "model", "trainer", "rng", "run", "optimizer")
SPEC_KEYS = ("name", "kwargs", "input_dim", "dtype", "layers", "loss")
DEFAULT_LOSS = {"type": "SoftmaxWithLoss"}


MAX_LAYERS = 4096
"""Most layers a file's network may have (ResNet-110 has about 400): a description of more is
refused before anything is built, rather than run for minutes."""


def param_keys(spec: dict[str, Any]) -> list[str]:
    """The state keys of a checked spec's trainable parameters (what an optimizer keeps state for)."""
    leaves, _ = _check_layers(spec["layers"])
    return [key for key, _, _, trainable in slot_keys(leaves) if trainable]


def leaf_configs(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{dotted path: config} of every leaf layer of a checked spec (what a file's random states name)."""
    found: dict[str, dict[str, Any]] = {}
    _walk(_entries(spec["layers"], "layers"), "", 0, found, [])
    return found


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
        leaves, shapes = _check_layers(layers)
        if input_dim is not None:
            if not isinstance(input_dim, list) or not 1 <= len(input_dim) <= 3:
                raise ValueError(f"input_dim: expected [C, H, W] or [D], got {input_dim!r:.80}")
            input_dim = [check_int(f"input_dim[{i}]", v, 1) for i, v in enumerate(input_dim)]
        dtype = float_dtype_name(dtype, "dtype")
        loss = spec.get("loss", DEFAULT_LOSS)
        if not isinstance(loss, dict):
            raise ValueError(f"'loss' must be an object, got {type(loss).__name__}")
        loss_cls = layer_class(loss.get("type"), "loss")
        if not loss_cls.is_loss:
            raise ValueError(f"the loss layer {loss.get('type')!r} is not a loss (its class does not set is_loss)")
        if loss_cls.state_shapes(loss) or loss_cls.param_names:
            raise ValueError(f"the loss layer {loss.get('type')!r} must hold no arrays")
        if input_dim is not None:
            _check_sizes(layers, tuple(input_dim))
    except TypeError as exc:  # wrong argument names or types
        raise ValueError(f"{where}: {exc}") from None
    except ValueError as exc:  # UnregisteredLayerError stays itself
        raise type(exc)(f"{where}: {exc}") from None
    expected = {key: shapes[path][attr] for key, path, attr, _ in slot_keys(leaves)}
    checked = {"name": name, "input_dim": input_dim, "dtype": dtype, "layers": layers, "loss": loss}
    if kwargs is not None:
        checked["kwargs"] = kwargs
    return checked, expected


def _entries(layers: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(layers, list) or not layers:
        raise ValueError(f"'{where}' must be a non-empty list, got {layers!r:.80}")
    out: list[tuple[str, dict[str, Any]]] = []
    for i, entry in enumerate(layers):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(f"{where}[{i}]: expected an object with a 'name' string and a 'type', got {entry!r:.80}")
        if any(entry["name"] == n for n, _ in out):
            raise ValueError(f"{where}[{i}]: duplicate layer name {entry['name']!r}")
        out.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
    return out


def _walk(
    entries: list[tuple[str, dict[str, Any]]],
    prefix: str,
    depth: int,
    found: dict[str, dict[str, Any]],
    count: list[int],
) -> None:
    """Check every layer config, composites' children included, collecting the leaves by path."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{prefix.rstrip('.')}: composite layers nested more than {MAX_DEPTH} deep")
    for name, config in entries:
        path = prefix + name
        count.append(1)
        if len(count) > MAX_LAYERS:
            raise ValueError(f"the network has more than {MAX_LAYERS} layers")
        cls = layer_class(config.get("type"), path)
        try:
            if isinstance(cls, type) and issubclass(cls, Composite):
                children = cls.child_configs(config)
            else:
                found[path] = config
                continue
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        _walk(children, path + ".", depth + 1, found, count)


def _check_sizes(layers: list[dict[str, Any]], shape: tuple[int, ...]) -> None:
    """One sample's activations through the layers, each bounded (:data:`MAX_ACTIVATION`), as far
    as the layers can tell their output's shape; ValueError naming the layer otherwise."""
    current: tuple[int, ...] | None = shape
    for name, config in _entries(layers, "layers"):
        if current is None:
            return  # a layer that cannot tell: nothing more is known
        try:
            current = checked_output(name, layer_class(config.get("type"), name).output_shape(config, current))
        except (TypeError, KeyError) as exc:
            raise ValueError(f"{name}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}" if not str(exc).startswith(f"{name}:") else str(exc)) from None


def _check_layers(layers: Any) -> tuple[list[Leaf], dict[str, dict[str, tuple[int, ...]]]]:
    """The leaves (path, parameter names, buffer names) of a ``layers`` list and each leaf's
    array shapes; ValueError naming the layer by its path for anything malformed."""
    found: dict[str, dict[str, Any]] = {}
    _walk(_entries(layers, "layers"), "", 0, found, [])
    leaves: list[Leaf] = []
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for path, config in found.items():
        cls = layer_class(config.get("type"), path)
        try:
            layer_shapes = cls.state_shapes(config)
            params, buffers = cls.state_names(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if set(layer_shapes) != set(params) | set(buffers):
            raise ValueError(
                f"{path}: state_shapes() gives {sorted(layer_shapes)}, expected {sorted(set(params) | set(buffers))}"
            )
        leaves.append((path, tuple(params), tuple(buffers)))
        shapes[path] = layer_shapes
    return leaves, shapes


def _json_equal(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples -> lists), to compare with a fresh description."""
    return json.loads(json.dumps(value))


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
