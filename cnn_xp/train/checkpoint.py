"""Training checkpoints: one safetensors file holding everything needed to resume exactly.

Arrays: ``model/<name>`` (parameters and BatchNorm buffers) and ``optim/<state>/<name>``
(optimizer state). Metadata (strings; JSON where structured): format and version, cnn_xp
version, the model's spec (its layers: :mod:`cnn_xp.models.spec`), the optimizer's name,
hyperparameters and step count, the trainer's counters and history, the layers' random
states, and the run's settings.

Reading checks before it trusts: the header (names, dtypes, shapes of the tensors) is
compared with what the metadata's spec implies *before* any tensor is read or any network
built, tensors the model does not use are refused unread, and every metadata entry is
validated (:mod:`cnn_xp.train.checkpoint_schema`). Checking a file costs about its own size,
whatever it claims. Files are written atomically; metadata is parsed as data, never code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from ..backend import Device, to_device, to_numpy
from ..data.preprocess import Preprocess
from ..models import Network
from ..models.build import build_network
from ..models.spec import leaf_configs, param_keys, read_described_file
from ..optim import Optimizer, optimizer_class
from ..serialization import CHECKPOINT_FORMAT, FLOAT_TENSOR_DTYPES, Header, load_arrays, save_arrays
from . import checkpoint_schema as schema
from .config import check_stored

FORMAT = CHECKPOINT_FORMAT


@dataclass
class Checkpoint:
    """What a checkpoint file holds, on the host, every part checked."""

    model_config: dict[str, Any]  # the model's spec (see cnn_xp.models.spec)
    model_state: dict[str, numpy.ndarray]
    optimizer: dict[str, Any] | None = None  # Optimizer.state_dict() layout, host arrays
    trainer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)  # Network.extra_state()
    run: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def input_dim(self) -> tuple[int, ...] | None:
        """(C, H, W) of one input sample, when the file records it."""
        dim = self.model_config.get("input_dim")
        return tuple(dim) if dim is not None else None

    @property
    def preprocess(self) -> Preprocess:
        """What turns pixels into this network's input (the run's own; 1/255 for a file without one)."""
        stored = self.run.get("preprocess")
        return Preprocess.from_json(stored) if stored is not None else Preprocess()

    def class_names(self, count: int) -> list[str] | None:
        """The names of the run's classes, when it recorded ``count`` of them."""
        names = self.run.get("classes")
        return list(names) if isinstance(names, list) and len(names) == count else None

    def dataset_options(self) -> dict[str, Any]:
        """The dataset settings the run read its data with (a folder of images' conversion and split)."""
        keys = ("channels", "image_size", "test_fraction", "seed", "strict")
        options = {k: self.run[k] for k in keys if self.run.get(k) is not None}
        if isinstance(options.get("image_size"), list):
            options["image_size"] = tuple(options["image_size"])
        return options

    def build_model(self, device: str | Device | None = "cpu", dtype: Any = None) -> Network:
        """A network of the stored architecture with the stored weights and random states, on
        ``device`` in ``dtype`` (default: the stored dtype). Any network made of registered
        layers comes back; a book network as its class."""
        model = build_network(self.model_config)
        model.load_state_dict(self.model_state)
        model.set_extra_state(self.rng)
        if dtype is not None:
            model.astype(dtype)
        return model.to_device(device)

    def build_optimizer(self, device: str | Device | None = "cpu") -> Optimizer:
        if self.optimizer is None:
            raise ValueError(f"{self.path}: this checkpoint holds no optimizer state")
        opt = optimizer_class(self.optimizer["name"])(**self.optimizer["hyper"])
        opt.load_state_dict(
            {
                **self.optimizer,
                "state": {
                    n: {k: to_device(v, device) for k, v in s.items()} for n, s in self.optimizer["state"].items()
                },
            }
        )
        return opt


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Network,
    optimizer: Optimizer | None = None,
    trainer: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary file in the same directory, fsync, rename).
    ``rng`` defaults to the network's own random states."""
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state_dict().items()}
    meta = model.file_metadata(CHECKPOINT_FORMAT)
    meta.update(
        {
            "trainer": json.dumps(trainer or {}),
            "rng": json.dumps(model.extra_state() if rng is None else rng),
            "run": json.dumps(run or {}, default=str),
        }
    )
    if optimizer is not None:
        sd = optimizer.state_dict()
        for name, slot in sd["state"].items():
            for key, value in slot.items():
                arrays[f"optim/{name}/{key}"] = to_numpy(value)
        meta["optimizer"] = json.dumps(
            {"name": sd["name"], "hyper": sd["hyper"], "iter": sd["iter"], "state_names": list(sd["state"])}
        )
    return save_arrays(path, arrays, meta)


def _json(path: Path, meta: dict[str, str], key: str, required: bool = True) -> Any:
    if key not in meta:
        if required:
            raise ValueError(f"{path}: checkpoint metadata has no {key!r} entry")
        return {}
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"{path}: checkpoint metadata {key!r} is not valid JSON ({exc})") from None


def load_checkpoint(path: str | os.PathLike[str], for_training: bool = True) -> Checkpoint:
    """Read a checkpoint (or a ``save_params`` file) onto the host, checking everything first.

    ``for_training=False`` (evaluating, predicting, exporting) reads the model alone: the
    optimizer's part is neither read nor required (a checkpoint without its optimizer tensors is
    fine to evaluate), and the returned checkpoint holds no optimizer.

    Raises FileNotFoundError if missing, and ValueError naming the file and the entry for a
    file that is unreadable, not safetensors (a pickle, say), truncated, from a newer cnn_xp
    format, or whose metadata or tensors are malformed, contradictory or non-finite.
    """
    path = Path(path)
    header, meta, described = read_described_file(path)
    if described is None:
        raise ValueError(f"{path}: not a cnn_xp checkpoint (it has no cnn_xp metadata)")
    spec, shapes = described
    fmt = meta["format"]
    prefix = "model/" if fmt == CHECKPOINT_FORMAT else ""
    expected = {prefix + k: shape for k, shape in shapes.items()}
    optimizer_meta = None
    if fmt == CHECKPOINT_FORMAT and "optimizer" in meta and for_training:
        params = {k: shapes[k] for k in param_keys(spec)}
        optimizer_meta = _check_optimizer(path, _json(path, meta, "optimizer"), header, params, expected)
    unread = () if for_training or fmt != CHECKPOINT_FORMAT else tuple(k for k in header if k.startswith("optim/"))
    _check_tensors(path, {k: v for k, v in header.items() if k not in unread}, expected, spec["dtype"])
    arrays, _ = load_arrays(path, keys=list(expected))  # only what the model uses, each checked above
    for key, value in arrays.items():
        if not numpy.isfinite(value).all():
            raise ValueError(f"{path}: tensor {key!r} holds non-finite values (NaN or inf); refusing to use it")
    model_state = {
        k[len(prefix) :]: v for k, v in arrays.items() if k[len(prefix) :] in shapes and k.startswith(prefix)
    }
    optimizer = None
    if optimizer_meta is not None:
        names = optimizer_meta["state_names"]
        optimizer = {
            "name": optimizer_meta["name"],
            "hyper": optimizer_meta["hyper"],
            "iter": optimizer_meta["iter"],
            "state": {n: {k: arrays[f"optim/{n}/{k}"] for k in shapes if f"optim/{n}/{k}" in arrays} for n in names},
        }
    trainer = _field(path, meta, "trainer", schema.TRAINER)
    if trainer and for_training:
        _check_counters(path, trainer, optimizer)
    rng = _json(path, meta, "rng", required=False)
    _check_extra_state(path, rng, spec)
    return Checkpoint(
        model_config=spec,
        model_state=model_state,
        optimizer=optimizer,
        trainer=trainer,
        rng=rng,
        run=_field(path, meta, "run", check_stored),
        path=path,
    )


def _check_counters(path: Path, trainer: dict[str, Any], optimizer: dict[str, Any] | None) -> None:
    """The trainer's counters must tell one story: one history record per finished epoch, every
    epoch the same number of steps, the step count their sum plus the steps of the epoch under
    way, and one optimizer update per step."""
    history = trainer.get("history", [])
    epoch, step, in_epoch = trainer["epoch"], trainer["step"], trainer.get("step_in_epoch", 0)
    per_epoch = history[0]["step"] if history else None
    story = (
        len(history) == epoch
        and all(r["epoch"] == i + 1 and r["step"] == (i + 1) * (per_epoch or 0) for i, r in enumerate(history))
        and step == (history[-1]["step"] if history else 0) + in_epoch
        and (per_epoch is None or in_epoch <= per_epoch)  # == : saved after an epoch's last step, before its end
    )
    if not story:
        raise ValueError(
            f"{path}: checkpoint metadata trainer: its counters contradict each other (epoch {epoch}, step {step}, "
            f"step in epoch {in_epoch}, {len(history)} epochs of history)"
        )
    if optimizer is not None and optimizer["iter"] != step:
        raise ValueError(
            f"{path}: checkpoint metadata contradicts itself: the optimizer took {optimizer['iter']} steps, the trainer {step}"
        )


def _field(path: Path, meta: dict[str, str], key: str, check: schema.Check) -> dict[str, Any]:
    value = _json(path, meta, key, required=False)
    if value == {}:  # a parameters file, or a checkpoint written without this part
        return {}
    try:
        return check(key, value)
    except ValueError as exc:
        raise ValueError(f"{path}: checkpoint metadata {exc}") from None


def _check_optimizer(
    path: Path, opt: Any, header: Header, shapes: dict[str, tuple[int, ...]], expected: dict[str, tuple[int, ...]]
) -> dict[str, Any]:
    """Validate the optimizer entry and add the state tensors it implies to ``expected``."""
    try:
        opt = schema.OPTIMIZER("optimizer", opt)
        cls = optimizer_class(opt["name"])
        instance = cls(**opt["hyper"])  # the constructor checks every hyperparameter's range
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: checkpoint metadata {exc}") from None
    if sorted(opt["state_names"]) != sorted(instance.state_names):
        raise ValueError(
            f"{path}: checkpoint metadata optimizer.state_names: {opt['name']} keeps {list(instance.state_names)}, "
            f"got {opt['state_names']}"
        )
    for n in opt["state_names"]:
        present = [k for k in shapes if f"optim/{n}/{k}" in header]
        if opt["iter"] > 0 and len(present) != len(shapes):
            missing = [f"optim/{n}/{k}" for k in shapes if k not in present][:3]
            raise ValueError(
                f"{path}: optimizer state tensors missing ({', '.join(missing)}, ...): {opt['name']} took "
                f"{opt['iter']} steps, so all are needed; resuming without them would restart its statistics"
            )
        expected.update({f"optim/{n}/{k}": shapes[k] for k in present})
    return opt


def _check_tensors(path: Path, header: Header, expected: dict[str, tuple[int, ...]], dtype: str) -> None:
    """The file's tensors must be exactly the expected ones, with their shapes, in ``dtype``."""
    unused = sorted(set(header) - set(expected))
    if unused:
        raise ValueError(
            f"{path}: holds tensors this network does not use ({', '.join(unused[:4])}{', ...' if len(unused) > 4 else ''}); "
            "another architecture's file?"
        )
    missing = [k for k in expected if k not in header and not k.startswith("optim/")]
    if missing:
        raise ValueError(f"{path}: tensors missing for this network: {missing[:6]}")
    for key, shape in expected.items():
        stored_dtype, stored_shape = header[key]
        if FLOAT_TENSOR_DTYPES.get(stored_dtype) != dtype:
            kind = "an unsupported dtype" if stored_dtype not in FLOAT_TENSOR_DTYPES else "a different dtype"
            raise ValueError(f"{path}: tensor {key!r} is {stored_dtype} ({kind}); expected {dtype}")
        if stored_shape != tuple(shape):
            raise ValueError(
                f"{path}: tensor {key!r} has shape {stored_shape} but the network described in the file needs {tuple(shape)}"
            )


def _check_extra_state(path: Path, rng: Any, spec: dict[str, Any]) -> None:
    """Each layer's saved random state must name a layer of the spec that accepts it."""
    if not isinstance(rng, dict):
        raise ValueError(f"{path}: checkpoint metadata 'rng' should be an object, got {type(rng).__name__}")
    from ..layers.registry import layer_class

    configs = leaf_configs(spec)
    for name, state in rng.items():
        if name not in configs:
            raise ValueError(f"{path}: checkpoint metadata rng: no layer named {name!r} in the model")
        config = {k: v for k, v in configs[name].items() if k != "name"}
        cls = layer_class(config["type"])
        if cls.param_names or cls.buffer_names:
            raise ValueError(f"{path}: checkpoint metadata rng: layer {name!r} keeps no random state")
        try:
            cls.from_config(config).set_extra_state(state)  # a layer without arrays: nothing to allocate
        except ValueError as exc:
            raise ValueError(f"{path}: checkpoint metadata rng.{name}: {exc}") from None
