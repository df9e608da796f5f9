"""Layers made of layers: :class:`Sequential` (a sequence of layers is itself a layer) and
:class:`Residual` (two branches added: ``body(x) + shortcut(x)``).

A composite layer owns no arrays: its children do.  A network names the arrays of every leaf
layer, depth first, as the book names a flat network's (``W1``, ``b1``, ``gamma1``, ...), and
describes a composite by its children's descriptions, nested to any depth, so it round-trips
through :meth:`~cnn_xp.models.Network.spec`, checkpoints and the ONNX export like any layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ..checks import check_same_place
from .base import Array, Layer, checked_output, settings, type_name
from .grad_mode import grad_enabled
from .registry import layer_class

MAX_DEPTH = 32  # composites inside composites: far beyond any network, and no runaway recursion


class Composite(Layer):
    """Base of the layers that hold layers: children by name, in order; no arrays of its own."""

    def children(self) -> list[tuple[str, Layer]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def with_children(self, children: list[Layer]) -> dict[str, Any]:  # pragma: no cover - abstract
        """The attributes that make a copy of this layer hold ``children`` (copies of its own, in
        :meth:`children`'s order) instead: how a thread's copy of a network gets its own children."""
        raise NotImplementedError

    @classmethod
    def child_configs(cls, config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:  # pragma: no cover
        """(name, config) of each child a config describes, checked for shape only."""
        raise NotImplementedError

    @classmethod
    def from_children(
        cls, config: Mapping[str, Any], children: list[tuple[str, Layer]]
    ) -> Composite:  # pragma: no cover
        """The layer ``config`` describes, holding ``children`` (built from :meth:`child_configs`)."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, config: Mapping[str, Any], dtype: Any = "float32") -> Composite:
        return cls.from_children(config, _built(cls.child_configs(config), dtype))

    def train(self, mode: bool = True) -> Layer:
        super().train(mode)
        for _, child in self.children():
            child.train(mode)
        return self

    @property
    def uses_mode(self) -> bool:  # type: ignore[override]
        return any(child.uses_mode for _, child in self.children())

    @property
    def shard_safe(self) -> bool:  # type: ignore[override]
        return all(type(child).shard_safe and _shard_safe(child) for _, child in self.children())

    def __repr__(self) -> str:
        inner = "\n".join(f"  ({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.children())
        return f"{type(self).__name__}(\n{inner}\n)"


def _shard_safe(layer: Layer) -> bool:
    return layer.shard_safe if isinstance(layer, Composite) else type(layer).shard_safe


def _run(layer: Layer, x: Array, train_flg: bool | None) -> Array:
    return layer.forward(x, train_flg=train_flg) if layer.uses_mode else layer.forward(x)


def _named(
    layers: Mapping[str, Layer] | Iterable[tuple[str, Layer]] | Iterable[Layer], what: str
) -> list[tuple[str, Layer]]:
    items = list(layers.items()) if isinstance(layers, Mapping) else list(layers)
    named = [
        item if isinstance(item, tuple) else (f"{type(item).__name__.lower()}{i + 1}", item)
        for i, item in enumerate(items)
    ]
    names = [n for n, _ in named]
    for name, layer in named:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"{what}: layer names must be identifiers, got {name!r}")
        if not isinstance(layer, Layer):
            raise TypeError(f"{what}: expected cnn_xp layers, got {type(layer).__name__} for {name!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: duplicate layer names in {names}")
    return named


def _config_list(layer: str, key: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
    if not isinstance(value, list):
        raise ValueError(f"{layer} config: {key} expected a list of layer configs, got {value!r:.80}")
    out = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"]:
            raise ValueError(
                f"{layer} config: {key}[{i}] expected an object with a 'name' and a 'type', got {entry!r:.80}"
            )
        out.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
    names = [n for n, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{layer} config: {key} has duplicate layer names {names}")
    return out


def _describe(children: list[tuple[str, Layer]]) -> list[dict[str, Any]]:
    return [{"name": name, **child.config()} for name, child in children]


def _built(configs: list[tuple[str, dict[str, Any]]], dtype: Any) -> list[tuple[str, Layer]]:
    return [(name, layer_class(config.get("type"), name).from_config(config, dtype)) for name, config in configs]


class Sequential(Composite):
    """Layers applied one after the other: ``Sequential([("conv", conv), ("relu", Relu())])``
    (or a list of layers, named after their types).  ``forward(x)`` runs them in order,
    ``backward(dout)`` in reverse; ``backward(dout, need_dx=False)`` lets the first one skip
    its input gradient when it can."""

    def __init__(self, layers: Mapping[str, Layer] | Iterable[tuple[str, Layer]] | Iterable[Layer]) -> None:
        super().__init__()
        self.layers = _named(layers, "Sequential")
        if not self.layers:
            raise ValueError("Sequential: expected at least one layer")

    def children(self) -> list[tuple[str, Layer]]:
        return list(self.layers)

    def with_children(self, children: list[Layer]) -> dict[str, Any]:
        return {"layers": [(name, child) for (name, _), child in zip(self.layers, children, strict=True)]}

    @property
    def can_skip_dx(self) -> bool:  # type: ignore[override]
        return self.layers[0][1].can_skip_dx

    def forward(self, x: Array, train_flg: bool | None = None) -> Array:
        for _, layer in self.layers:
            x = _run(layer, x, train_flg)
        return x

    def backward(self, dout: Array, need_dx: bool = True) -> Array | None:
        for _, layer in reversed(self.layers[1:]):
            dout = layer.backward(dout)
        first: Any = self.layers[0][1]
        return first.backward(dout, need_dx=False) if not need_dx and first.can_skip_dx else first.backward(dout)

    def config(self) -> dict[str, Any]:
        return {"type": type_name(type(self)), "layers": _describe(self.layers)}

    @classmethod
    def child_configs(cls, config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        s = settings(cls, config, {"layers": ...})
        children = _config_list(type_name(cls), "layers", s["layers"])
        if not children:
            raise ValueError(f"{type_name(cls)} config: layers expected at least one layer")
        return children

    @classmethod
    def state_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        cls.child_configs(config)
        return {}

    @classmethod
    def output_shape(cls, config: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, ...] | None:
        out: tuple[int, ...] | None = tuple(shape)
        for name, child in cls.child_configs(config):
            out = None if out is None else checked_output(name, layer_class(child.get("type")).output_shape(child, out))
        return out

    @classmethod
    def from_children(cls, config: Mapping[str, Any], children: list[tuple[str, Layer]]) -> Sequential:
        return cls(children)


class Residual(Composite):
    """``body(x) + shortcut(x)``: the block of a residual network (He et al., 2016), before the
    ReLU that follows it.  ``body`` and ``shortcut`` are layers (a :class:`Sequential` for several);
    ``shortcut=None`` is the identity.  Both branches must give the same shape.

    The backward sends ``dout`` into both branches and adds their input gradients: the add and
    its gradient, written once for every residual network."""

    def __init__(self, body: Layer, shortcut: Layer | None = None) -> None:
        super().__init__()
        if not isinstance(body, Layer) or not (shortcut is None or isinstance(shortcut, Layer)):
            raise TypeError(
                f"Residual: expected cnn_xp layers for body and shortcut, got {type(body).__name__} and "
                f"{type(shortcut).__name__}"
            )
        self.body, self.shortcut = body, shortcut
        self._shapes: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    def children(self) -> list[tuple[str, Layer]]:
        return [("body", self.body)] + ([("shortcut", self.shortcut)] if self.shortcut is not None else [])

    def with_children(self, children: list[Layer]) -> dict[str, Any]:
        return {"body": children[0], "shortcut": children[1] if self.shortcut is not None else None}

    def forward(self, x: Array, train_flg: bool | None = None) -> Array:
        y = _run(self.body, x, train_flg)
        s = x if self.shortcut is None else _run(self.shortcut, x, train_flg)
        if tuple(y.shape) != tuple(s.shape):
            raise ValueError(
                f"Residual: its branches give different shapes: body {tuple(y.shape)}, "
                f"shortcut {tuple(s.shape)} (for x of shape {tuple(x.shape)}); a shortcut that changes the "
                "shape (a strided 1x1 convolution) is needed where the body does"
            )
        check_same_place("shortcut", s, y)
        if grad_enabled():
            self._shapes = (tuple(x.shape), tuple(y.shape))
        # a new array: y may be an array the body keeps for its backward (a Sigmoid's output),
        # or its input itself (an inference Dropout), so neither is written
        return y + s

    def backward(self, dout: Array, need_dx: bool = True) -> Array:
        if self._shapes is None:
            raise self._not_run()
        if tuple(dout.shape) != self._shapes[1]:
            raise ValueError(f"dout: expected shape {self._shapes[1]} (the forward output), got {tuple(dout.shape)}")
        dx = self.body.backward(dout)
        ds = dout if self.shortcut is None else self.shortcut.backward(dout)
        return dx + ds

    def config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"type": type_name(type(self)), "body": _describe([("body", self.body)])[0]}
        config["shortcut"] = None if self.shortcut is None else _describe([("shortcut", self.shortcut)])[0]
        return config

    @classmethod
    def child_configs(cls, config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        s = settings(cls, config, {"body": ..., "shortcut": None})
        branches = [("body", s["body"])] + ([("shortcut", s["shortcut"])] if s["shortcut"] is not None else [])
        out = []
        for key, value in branches:
            if not isinstance(value, dict):
                raise ValueError(f"{type_name(cls)} config: {key} expected a layer config, got {value!r:.80}")
            out.append((key, {k: v for k, v in value.items() if k != "name"}))
        return out

    @classmethod
    def state_shapes(cls, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
        cls.child_configs(config)
        return {}

    @classmethod
    def output_shape(cls, config: Mapping[str, Any], shape: tuple[int, ...]) -> tuple[int, ...] | None:
        shapes = [
            checked_output(n, layer_class(c.get("type")).output_shape(c, tuple(shape)))
            for n, c in cls.child_configs(config)
        ]
        if len(shapes) == 1:
            shapes.append(tuple(shape))  # the identity
        if None not in shapes and shapes[0] != shapes[1]:
            raise ValueError(
                f"Residual: its branches give different shapes for {shape}: body {shapes[0]}, shortcut {shapes[1]}"
            )
        return shapes[0]

    @classmethod
    def from_children(cls, config: Mapping[str, Any], children: list[tuple[str, Layer]]) -> Residual:
        named = dict(children)
        return cls(named["body"], named.get("shortcut"))


def iter_leaves(layers: Iterable[tuple[str, Layer]], prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Layer]]:
    """(dotted path, layer) of every leaf layer (one that is not a :class:`Composite`), depth first."""
    if depth > MAX_DEPTH:
        raise ValueError(f"layers: composite layers nested more than {MAX_DEPTH} deep")
    for name, layer in layers:
        path = f"{prefix}{name}"
        if isinstance(layer, Composite):
            yield from iter_leaves(layer.children(), path + ".", depth + 1)
        else:
            yield path, layer


def iter_all(layers: Iterable[tuple[str, Layer]], prefix: str = "") -> Iterator[tuple[str, Layer]]:
    """(dotted path, layer) of every layer, composites before their children."""
    for name, layer in layers:
        path = f"{prefix}{name}"
        yield path, layer
        if isinstance(layer, Composite):
            yield from iter_all(layer.children(), path + ".")
