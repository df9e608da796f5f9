"""A training run from its :class:`~cnn_xp.train.config.RunConfig` to its output folder.

:class:`Run` does what ``cnn_xp train`` does, for the library as for the command line: it
resolves the device once, reads the data through the dataset registry, builds the model
through the model registry (or rebuilds it from a checkpoint), checks that the data fits the
network and a training step fits in memory, and makes the loaders and the
:class:`~cnn_xp.train.Trainer` -- everything that can fail on bad input fails before training
starts, as a :class:`~cnn_xp.train.config.ConfigError` naming the setting.  :meth:`Run.fit`
trains and writes the plots and ``summary.json``::

    run = Run(RunConfig(model="deep", epochs=2, device="cpu", out="runs/deep"))
    summary = run.fit()
    Run.resume("runs/deep/last.safetensors", epochs=4).fit()
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy
from threadpoolctl import threadpool_limits

from .. import distributed
from ..backend import Device, GPUUnavailableError, gpu_available, parse_device
from ..data import DataLoader
from ..data.preprocess import Preprocess
from ..datasets import SPLITS, class_names, load_split
from ..datasets import report as dataset_report
from ..models import Network, build_named_model
from ..optim import constant, cosine, exponential, optimizer_class
from ..serialization import write_atomically
from .checkpoint import Checkpoint, load_checkpoint
from .config import ConfigError, RunConfig
from .resources import check_step_fits, probe_network, thread_count
from .trainer import Trainer

OUTPUTS = ("last.safetensors", "best.safetensors", "metrics.csv", "summary.json", "curves.png", "filters.png")
TEST_BATCH = 1000


class ReportWriteError(OSError):
    """The plots or ``summary.json`` of a finished run could not be written; its checkpoints and
    ``metrics.csv`` are complete."""


class Run:
    """A prepared training run (see the module's docstring).

    ``gate(stored_plan)`` is called before the first collective of a distributed run (the
    trainer's broadcast of the weights): there the ranks agree to start, or all stop.
    ``checkpoint`` resumes from a training checkpoint (use :meth:`resume`)."""

    def __init__(
        self,
        config: RunConfig,
        *,
        checkpoint: Checkpoint | None = None,
        resumed_from: Path | None = None,
        gate: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config = config
        self.resumed_from = resumed_from
        self.device = self._device(config)
        data = self._data(config)
        (x_train, t_train), (_, t_test) = data
        num_classes = int(max(t_train.max(), t_test.max())) + 1
        self.classes = class_names(config.dataset, num_classes, config.dataset_options())
        self.report = dataset_report(config.dataset, config.dataset_options())
        self.out_dir = Path(config.out) if config.out is not None else self._fresh_out_dir()
        check_out_dir(self.out_dir)
        if checkpoint is not None and "preprocess" in checkpoint.run:  # the run's own, as it started
            self.preprocess = Preprocess.from_json(checkpoint.run["preprocess"])
        else:  # per-channel normalisation for folders of images; the other datasets keep their results
            self.preprocess = Preprocess.of_training_split(x_train, normalize=self.report is not None)
        self.stored = config.stored(num_classes=num_classes, classes=self.classes, preprocess=self.preprocess.to_json())
        input_dim = tuple(int(v) for v in x_train.shape[1:])
        if checkpoint is not None:
            model = checkpoint.build_model(device=self.device, dtype=config.dtype)
            optimizer = checkpoint.build_optimizer(device=self.device)
            if "model" not in checkpoint.run:  # a network of the library user's own, resumed
                del self.stored["model"]
        else:
            model = self._new_model(config, input_dim, num_classes, self.device)
            cls = optimizer_class(config.optimizer)
            extra = {"weight_decay": config.weight_decay} if config.weight_decay else {}
            if extra and "weight_decay" not in cls.hyper_names:
                raise ConfigError("weight_decay", f"the optimizer {config.optimizer!r} takes no weight decay")
            optimizer = cls(lr=config.learning_rate, **extra)
        per_sample, outputs = probe_network(model, input_dim, config.dtype)
        if outputs < num_classes:
            raise ConfigError(
                "dataset", f"its labels go up to {num_classes - 1} but the network has only {outputs} outputs"
            )
        if not self.device.is_gpu:  # on a GPU, running out of memory is caught and reported when it happens
            check_step_fits(config.batch_size, per_sample)
        train_loader, test_loader = self._loaders(config, data)
        if gate is not None:  # every setting that shapes the collectives of the run, on every rank
            counters = checkpoint.trainer if checkpoint is not None else {}
            gate({**self.stored, "save_every": config.save_every, "resumed_at_step": counters.get("step", 0)})
        self.trainer = Trainer(
            model,
            optimizer,
            train_loader,
            test_loader,
            out_dir=self.out_dir,
            save_every=config.save_every,
            quiet=config.quiet,
            run=self.stored,
            lr_schedule=self._schedule(config, len(train_loader)),
            distributed=config.distributed,
        )
        if checkpoint is not None:
            try:
                self.trainer.load_state(checkpoint.trainer, checkpoint.rng)
            except ValueError as exc:
                raise ConfigError("resume", str(exc).removeprefix("resume: ")) from None
            if self.trainer.epoch >= config.epochs:
                done = f"the run in {resumed_from} already has {self.trainer.epoch} of its {config.epochs} epochs"
                raise ConfigError(
                    "epochs",
                    f"{done}; train on with epochs N > {self.trainer.epoch}",
                    f"{done}; pass --epochs N with N > {self.trainer.epoch} to train on",
                )

    @classmethod
    def resume(
        cls, path: str | os.PathLike[str], gate: Callable[[dict[str, Any]], None] | None = None, **given: Any
    ) -> Run:
        """Continue the run of the training checkpoint at ``path`` with its own plan; ``given``
        settings: the session's (device, out, ...), and ``epochs`` to train on.  The output folder
        is the checkpoint's unless ``out`` is given."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError("resume", f"no such checkpoint file: {path}")
        try:
            checkpoint = load_checkpoint(path)
        except ValueError as exc:
            raise ConfigError("resume", str(exc)) from None
        if checkpoint.optimizer is None or not checkpoint.trainer:
            raise ConfigError("resume", f"{path} holds parameters only, not a training checkpoint")
        stored = dict(checkpoint.run)
        if "model" not in stored:  # a network of the library user's own: rebuilt from the file
            stored["model"] = "simple"
        if "dtype" not in stored:
            stored["dtype"] = checkpoint.model_config["dtype"]
        given = {"out": str(path.parent), **{k: v for k, v in given.items() if v is not None}}
        config = RunConfig.resumed(stored, given)
        return cls(config, checkpoint=checkpoint, resumed_from=path, gate=gate)

    # ------------------------------------------------------------------ preparing

    @staticmethod
    def _device(config: RunConfig) -> Device:
        spec = config.device
        if config.distributed:
            try:
                distributed.init()
            except distributed.DistributedUnavailableError as exc:
                raise ConfigError("distributed", str(exc)) from None
            if spec.strip().lower() in ("gpu", "cuda") or (spec == "auto" and gpu_available(distributed.local_rank())):
                spec = f"gpu:{distributed.local_rank()}"  # one GPU per rank on each node
        try:
            device = parse_device(spec)
        except (ValueError, TypeError) as exc:
            raise ConfigError("device", str(exc).removeprefix("device: ")) from None
        except GPUUnavailableError as exc:
            text = str(exc).removesuffix(" Use device 'cpu' or 'auto'.")
            raise ConfigError(
                "device",
                f"{spec}: {text} Use device 'cpu' or 'auto'.",
                f"{spec}: {text} Use --device cpu or --device auto.",
            ) from None
        if not isinstance(device, Device):
            raise ConfigError("device", f"expected 'cpu', 'gpu', 'gpu:N' or 'auto', got {spec!r}")
        return device

    @staticmethod
    def _data(config: RunConfig) -> tuple[tuple[numpy.ndarray, numpy.ndarray], tuple[numpy.ndarray, numpy.ndarray]]:
        try:
            (x_train, t_train), (x_test, t_test) = (
                load_split(config.dataset, s, config.dataset_options()) for s in SPLITS
            )
        except (ValueError, FileNotFoundError) as exc:
            raise ConfigError("dataset", str(exc).removeprefix("dataset: ")) from None
        if config.train_size:
            x_train, t_train = x_train[: config.train_size], t_train[: config.train_size]
        if config.test_size:
            x_test, t_test = x_test[: config.test_size], t_test[: config.test_size]
        if config.batch_size > x_train.shape[0]:
            raise ConfigError(
                "batch_size", f"{config.batch_size} is larger than the {x_train.shape[0]} training samples"
            )
        return (x_train, t_train), (x_test, t_test)

    @staticmethod
    def _new_model(config: RunConfig, input_dim: tuple[int, ...], num_classes: int, device: Device) -> Network:
        try:
            return build_named_model(
                config.model, input_dim, num_classes, dtype=config.dtype, device=device, seed=config.seed
            )
        except ValueError as exc:  # the network cannot take these inputs (too small, ...)
            raise ConfigError("model", f"{config.model} for inputs {input_dim}: {exc}") from None

    def _loaders(self, config: RunConfig, data: Any) -> tuple[DataLoader, DataLoader]:
        (x_train, t_train), (x_test, t_test) = data
        rank, world = (distributed.rank(), distributed.size()) if config.distributed else (0, 1)
        common: dict[str, Any] = {"device": self.device, "dtype": config.dtype, "rank": rank, "world_size": world}
        common["preprocess"] = self.preprocess
        pad = min(4, max(1, min(x_train.shape[2:]) // 8)) if x_train.ndim == 4 else 0
        try:
            train = DataLoader(
                x_train, t_train, config.batch_size, shuffle=True, seed=config.seed, shift=config.shift,
                augment=config.augment, crop_pad=pad, **common,
            )  # fmt: skip
        except ValueError as exc:
            setting = "shift" if str(exc).startswith("shift:") else "dataset"
            raise ConfigError(setting, str(exc).removeprefix(f"{setting}: ")) from None
        test = DataLoader(x_test, t_test, TEST_BATCH, shuffle=False, **common)
        return train, test

    @staticmethod
    def _schedule(config: RunConfig, steps_per_epoch: int) -> Any:
        lr0 = config.learning_rate
        if config.lr_schedule == "exp":
            return exponential(lr0, config.decay, steps_per_epoch)
        if config.lr_schedule == "cosine":
            return cosine(lr0, config.epochs * steps_per_epoch)
        return constant(lr0)

    def _fresh_out_dir(self) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path("runs") / f"{stamp}-{self.config.model}-{Path(self.config.dataset).name or self.config.dataset}"
        out, k = base, 1
        while out.exists():
            k += 1
            out = base.with_name(f"{base.name}-{k}")
        return out

    # ------------------------------------------------------------------ describing

    def warnings(self) -> list[str]:
        """Settings that will train, but probably not as meant (one line each)."""
        c = self.config
        lines = []
        if c.lr_schedule == "exp":
            last = c.learning_rate * c.decay ** (c.epochs - 1)
            if last < c.learning_rate * 1e-4:
                lines.append(
                    f"--lr-decay {c.decay} takes the learning rate from {c.learning_rate:g} to {last:.3g} by epoch "
                    f"{c.epochs}: the last epochs will barely train"
                )
        return lines

    @property
    def threads(self) -> int:
        """The BLAS threads this run trains with (see :mod:`cnn_xp.train.resources`)."""
        if not hasattr(self, "_threads"):
            ranks = distributed.local_size() if self.config.distributed else 1
            self._threads = thread_count(self.config.threads, ranks)
        return self._threads

    def describe(self) -> str:
        """One line: where it runs, what it trains on what, and where it writes."""
        t = self.trainer
        ranks = f"  ranks: {distributed.size()}" if self.config.distributed else ""
        cpu = "" if self.device.is_gpu else f"  threads: {self.threads}"
        tests = t.test_loader.x.shape[0] if t.test_loader is not None else 0
        return (
            f"device: {self.device}{cpu}{ranks}  model: {type(t.model).__name__}  dataset: {self.config.dataset} "
            f"({t.train_loader.x.shape[0]} train / {tests} test)  out: {t.out_dir}"
        )

    def resume_line(self) -> str:
        """Where a resumed run picks up and how far it will go."""
        t = self.trainer
        if t.step_in_epoch == 0:
            where = f"after epoch {t.epoch}"
        else:
            where = f"in epoch {t.epoch + 1} after step {t.step_in_epoch} of {len(t.train_loader)}"
        return (
            f"resuming from {self.resumed_from}: {where} (global step {t.step}); training to epoch {self.config.epochs}"
        )

    # ------------------------------------------------------------------ training

    def fit(self) -> dict[str, Any]:
        """Train to ``epochs``; then, on the primary rank, write the plots and ``summary.json``.
        Returns the summary.  Raises what :meth:`Trainer.fit` raises (interrupted, diverged, a
        checkpoint that could not be written); an OSError writing the plots or summary comes
        after the checkpoints and metrics are complete."""
        start = time.perf_counter()
        with threadpool_limits(limits=self.threads, user_api="blas"):
            history = self.trainer.fit(self.config.epochs)
        total = time.perf_counter() - start
        images = sum(h["seconds"] * h["images_per_s"] for h in history)
        seconds = sum(h["seconds"] for h in history)
        summary = {
            "final_test_acc": history[-1]["test_acc"],
            "best_test_acc": self.trainer.best_test_acc,
            "total_seconds": total,
            "images_per_s": images / max(seconds, 1e-9),
            "run": self.stored,
        }
        out = self.trainer.out_dir
        if out is not None:
            try:
                write_plots(self.trainer)
                write_atomically(out / "summary.json", json.dumps(summary, indent=2).encode())
            except OSError as exc:
                raise ReportWriteError(
                    exc.errno,
                    f"could not write the plots or summary.json in {out}: {exc.strerror or exc}; the checkpoints "
                    "and metrics.csv are complete",
                ) from exc
        return summary


def check_out_dir(out: Path) -> None:
    """``out`` must be (or become) a folder: not a file, not under a file, with a name the file
    system takes. (Whether it can be written is found when it is created, before training.)"""
    try:
        name_max = os.pathconf(".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    long = [part for part in out.parts if len(os.fsencode(part)) > name_max]
    if long:
        raise ConfigError(
            "out", f"the name {long[0][:40]!r}... is longer than the {name_max} bytes a file name may have"
        )
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError("out", f"{out} is a file, not a folder")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError("out", f"{out} lies under {parent}, which is a file")
                break
    except OSError as exc:  # e.g. a path longer than the system's limit
        shown = str(out) if len(str(out)) <= 80 else f"{str(out)[:77]}..."
        raise ConfigError("out", f"{shown}: {exc.strerror or exc}") from None


def write_plots(trainer: Trainer) -> None:
    """``curves.png`` and ``filters.png`` of a trained run in its output folder."""
    from .plots import plot_curves, plot_filters

    assert trainer.out_dir is not None
    plot_curves(trainer.history, trainer.out_dir / "curves.png")
    W = first_conv_weights(trainer.model)
    if W is None:
        return
    W0 = _initial_first_conv_weights(trainer)
    r = float(numpy.corrcoef(W.ravel(), W0.ravel())[0, 1]) if W0 is not None else float("nan")
    title = (
        f"{type(trainer.model).__name__}, first-layer filters after {trainer.epoch} epochs "
        f"({W.shape[0]} of {'x'.join(map(str, W.shape[1:]))}; correlation with the initial weights {r:.2f})"
    )
    plot_filters(W, trainer.out_dir / "filters.png", W0=W0, title=title)


def _initial_first_conv_weights(trainer: Trainer) -> numpy.ndarray | None:
    """The first convolution's initial weights, drawn again from the run's seed (also for a
    resumed run) when the run names a registered model; None otherwise."""
    run: Mapping[str, Any] = trainer.run
    if "model" not in run or trainer.model.input_dim is None:
        return None
    try:
        model = build_named_model(
            run["model"], tuple(trainer.model.input_dim), int(run["num_classes"]), dtype="float32", device="cpu",
            seed=run.get("seed", 0),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None
    W0 = first_conv_weights(model)
    W = first_conv_weights(trainer.model)
    return W0 if W0 is not None and W is not None and W0.shape == W.shape else None


def first_conv_weights(model: Network) -> numpy.ndarray | None:
    """The first convolution's W (FN, C, FH, FW) as a host array, or None."""
    from ..backend import to_numpy

    for layer in model.layers.values():
        W = getattr(layer, "W", None)
        if getattr(W, "ndim", 0) == 4:
            return numpy.asarray(to_numpy(W))
    return None
