"""Training checkpoints: one safetensors file holding everything needed to resume exactly.

Arrays: ``model/<name>`` (parameters and BatchNorm buffers) and ``optim/<state>/<name>``
(optimizer state). Metadata (strings; JSON where structured): format and version, cnn_xp
version, the model's configuration, the optimizer's name, hyperparameters and step count,
the trainer's counters and history, the RNG states, and the run's settings.
Files are written atomically; reading parses metadata as data (JSON, validated), never code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

from .._version import __version__
from ..backend import Device, to_device, to_numpy
from ..models import Network, build_model
from ..optim import OPTIMIZERS, Optimizer
from ..serialization import load_arrays, save_arrays

FORMAT = "cnn_xp.checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    """What a checkpoint file holds, on the host."""

    model_config: dict[str, Any]
    model_state: dict[str, numpy.ndarray]
    optimizer: dict[str, Any] | None = None  # Optimizer.state_dict() layout, host arrays
    trainer: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    run: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def build_model(self, device: str | Device | None = "cpu", dtype: Any = None) -> Network:
        """A network of the stored architecture with the stored weights, on ``device`` in ``dtype``
        (default: the stored dtype)."""
        overrides: dict[str, Any] = {"device": "cpu"}
        if dtype is not None:
            overrides["dtype"] = dtype
        model = build_model(self.model_config, **overrides)
        model.load_state_dict(self.model_state)
        return model.to_device(device)

    def build_optimizer(self, device: str | Device | None = "cpu") -> Optimizer:
        if self.optimizer is None:
            raise ValueError(f"{self.path}: this checkpoint holds no optimizer state")
        name = self.optimizer["name"]
        classes = {cls.__name__: cls for cls in OPTIMIZERS.values()}
        opt = classes[name](**self.optimizer["hyper"])
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
    """Write a checkpoint atomically (temporary file in the same directory, fsync, rename)."""
    arrays = {f"model/{k}": to_numpy(v) for k, v in model.state_dict().items()}
    meta: dict[str, str] = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "cnn_xp_version": __version__,
        "model": json.dumps(model.config, sort_keys=True),
        "trainer": json.dumps(trainer or {}),
        "rng": json.dumps(rng or {}),
        "run": json.dumps(run or {}, default=str),
    }
    if optimizer is not None:
        sd = optimizer.state_dict()
        for name, slot in sd["state"].items():
            for key, value in slot.items():
                arrays[f"optim/{name}/{key}"] = to_numpy(value)
        meta["optimizer"] = json.dumps(
            {"name": sd["name"], "hyper": sd["hyper"], "iter": sd["iter"], "state_names": list(sd["state"])}
        )
    return save_arrays(path, arrays, meta)


def _json(path: Path, meta: dict[str, str], key: str, kind: type, required: bool = True) -> Any:
    if key not in meta:
        if required:
            raise ValueError(f"{path}: checkpoint metadata has no {key!r} entry")
        return kind()
    try:
        value = json.loads(meta[key])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: checkpoint metadata {key!r} is not valid JSON ({exc})") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path}: checkpoint metadata {key!r} should be a {kind.__name__}, got {type(value).__name__}")
    return value


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read a checkpoint (or a ``save_params`` file) onto the host, validating its metadata.

    Raises FileNotFoundError if missing, ValueError for a non-safetensors file (a pickle, say),
    a truncated file, a file from a newer cnn_xp format, or malformed metadata.
    """
    path = Path(path)
    arrays, meta = load_arrays(path)
    fmt = meta.get("format")
    if fmt not in (FORMAT, "cnn_xp.params"):
        raise ValueError(f"{path}: not a cnn_xp checkpoint (format {fmt!r}; expected {FORMAT!r})")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        raise ValueError(f"{path}: bad format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written in checkpoint format version {version} by cnn_xp {meta.get('cnn_xp_version', '?')}; "
            f"this cnn_xp ({__version__}) reads versions up to {FORMAT_VERSION}: upgrade cnn_xp"
        )
    config = _json(path, meta, "model", dict)
    if fmt == "cnn_xp.params":
        return Checkpoint(config, arrays, path=path)
    model_state = {k[len("model/") :]: v for k, v in arrays.items() if k.startswith("model/")}
    optimizer = None
    if "optimizer" in meta:
        opt = _json(path, meta, "optimizer", dict)
        names = opt.get("state_names", [])
        if opt.get("name") not in {cls.__name__ for cls in OPTIMIZERS.values()}:
            raise ValueError(f"{path}: unknown optimizer {opt.get('name')!r} in checkpoint")
        state = {
            n: {k[len(f"optim/{n}/") :]: v for k, v in arrays.items() if k.startswith(f"optim/{n}/")} for n in names
        }
        optimizer = {
            "name": opt["name"],
            "hyper": opt.get("hyper", {}),
            "iter": int(opt.get("iter", 0)),
            "state": state,
        }
    return Checkpoint(
        model_config=config,
        model_state=model_state,
        optimizer=optimizer,
        trainer=_json(path, meta, "trainer", dict, required=False),
        rng=_json(path, meta, "rng", dict, required=False),
        run=_json(path, meta, "run", dict, required=False),
        path=path,
    )
