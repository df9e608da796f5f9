"""A training run's settings as one typed object: :class:`RunConfig`.

Every setting is declared once, here, with its default, its check, its help text and its role:

* the **plan** (model, dataset, epochs, batch size, optimizer, schedule, seed, ...) is stored in
  every checkpoint (:meth:`RunConfig.stored`), checked when a file is read
  (:func:`check_stored`: the checkpoint schema of a run is derived from these fields), and kept
  by a resumed run -- only ``epochs`` may be given again, to train on;
* the **session** (device, output folder, threads, checkpoint interval, ...) is how this
  process runs the plan; a resumed run takes it afresh.

The command line maps its flags to these fields and nothing more (``--batch-size`` is
``batch_size``); the library builds a ``RunConfig`` directly and hands it to
:class:`cnn_xp.train.run.Run`.  A bad value raises :class:`ConfigError` naming the setting.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..checks import FLOAT_DTYPES
from ..models import MODELS
from ..optim import OPTIMIZERS, optimizer_class
from ..optim.schedules import SCHEDULES
from ..registry import UnknownNameError

LR_DECAY = 0.75  # --lr-schedule exp's factor per epoch
ADAM_LR = 0.003  # the run's Adam learning rate (docs/benchmarks.md: the recipes tried)
ADAM_LR_BEFORE_RECORDED = 0.002  # Adam's default before runs recorded their learning rate
MAX_COUNT = 2**53


class ConfigError(ValueError):
    """A setting of a run is wrong; ``setting`` names it (the command line names its flag)."""

    def __init__(self, setting: str, message: str, flag_message: str | None = None) -> None:
        super().__init__(f"{setting}: {message}")
        self.setting = setting
        self.detail = message
        self.flag_detail = flag_message or message  # the same, for the command line (naming flags)


# --------------------------------------------------------------------------- checks


Check = Callable[[str, Any], Any]


def _int(low: int, high: int = MAX_COUNT, none: bool = False) -> Check:
    def check(name: str, value: Any) -> Any:
        if value is None and none:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            bound = f">= {low}" if high == MAX_COUNT else f"in [{low}, {high}]"
            raise ConfigError(name, f"expected an integer {bound}, got {value!r}")
        return int(value)

    return check


def _float(low: float, high: float = math.inf, low_open: bool = True, none: bool = False) -> Check:
    def check(name: str, value: Any) -> Any:
        if value is None and none:
            return None
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or not (value > low if low_open else value >= low) or value > high:
            lo = "(" if low_open else "["
            hi = "inf)" if high == math.inf else f"{high:g}]"
            raise ConfigError(name, f"expected a number in {lo}{low:g}, {hi}, got {value!r}")
        return float(value)

    return check


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(name, f"expected true or false, got {value!r}")
    return value


def _string(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(name, f"expected a non-empty string, got {value!r:.80}")
    return value


def _one_of(names: Callable[[], list[str]] | tuple[Any, ...], lower: bool = False) -> Check:
    def check(name: str, value: Any) -> Any:
        options = list(names() if callable(names) else names)
        text = value.strip().lower() if lower and isinstance(value, str) else value
        if isinstance(text, bool) or text not in options:
            raise ConfigError(name, f"expected one of {options}, got {value!r}")
        return text

    return check


def _registered_model(name: str, value: Any) -> str:
    value = _string(name, value)
    if value not in MODELS:
        raise ConfigError(name, f"unknown model {value!r}; expected one of {MODELS.names()} (or register_model)")
    return value.lower()


def _model_name(name: str, value: Any) -> str:
    """A model's name as a file records it: registered in this process or not (a resume rebuilds
    the network from the file's own description)."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 100
        or not value.replace("-", "_").replace(".", "_").isidentifier()
    ):
        raise ConfigError(name, f"expected a model name, got {value!r:.80}")
    return value


def _registered_optimizer(name: str, value: Any) -> str:
    try:
        cls = optimizer_class(_string(name, value))
    except UnknownNameError:
        raise ConfigError(name, f"unknown optimizer {value!r}; expected one of {OPTIMIZERS.names()}") from None
    return next(k for k, c in OPTIMIZERS.items() if c is cls)


def _image_size(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(name, f"expected two sizes H W, got {value!r}")
    return tuple(_int(1, 4096)(name, v) for v in value)


def _threads(name: str, value: Any) -> Any:
    if value is None or value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4096:
        raise ConfigError(name, f"expected a thread count in [1, 4096] or 'auto', got {value!r}")
    return value


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Setting:
    """How one field of :class:`RunConfig` is checked, described and treated by a resume."""

    help: str
    check: Check
    plan: bool = True  # stored in checkpoints; a resumed run keeps it
    resume_may_change: bool = False  # a plan setting that may be given again with --resume
    metavar: str | tuple[str, ...] | None = None
    choices: Callable[[], list[str]] | None = None  # what --help lists (checked by ``check``)


def setting(default: Any, help: str, check: Check, **kw: Any) -> Any:
    return field(default=default, metadata={"setting": Setting(help, check, **kw)})


@dataclass(frozen=True)
class RunConfig:
    """Every setting of a training run (see the module's docstring).  ``RunConfig(**settings)``
    checks each one; :meth:`replace` gives a changed, checked copy."""

    # ---- the plan: stored in checkpoints, kept by a resumed run
    model: str = setting(
        "simple",
        "the network: a registered model name",
        _registered_model,
        choices=lambda: MODELS.names(),
    )
    dataset: str = setting(
        "mnist",
        "'mnist' or 'fashion-mnist' (both offline; any case), or a directory: IDX files (*-ubyte[.gz]: KMNIST, "
        "EMNIST, ...), CIFAR-10's binary batches, or folders of images",
        _string,
    )
    epochs: int = setting(
        4,
        "total epochs of the run (with --resume: train on to this many; default: the interrupted run's own)",
        _int(1, 1_000_000),
        resume_may_change=True,
        metavar="N",
    )
    batch_size: int = setting(100, "training mini-batch size", _int(1, 1 << 24), metavar="N")
    optimizer: str = setting(
        "adam", "the update rule: a registered optimizer", _registered_optimizer, choices=lambda: OPTIMIZERS.names()
    )
    lr: float | None = setting(
        None,
        f"learning rate at the start of the schedule (default: {ADAM_LR} for adam, else the optimizer's own default)",
        _float(0.0, none=True),
        metavar="LR",
    )
    lr_schedule: str = setting(
        "cosine",
        "learning rate over the run: 'cosine' decays to 0 at the last of --epochs; 'exp' multiplies it by "
        "--lr-decay every epoch (depends on the step only, so --resume with more --epochs continues exactly); "
        "'constant'",
        _one_of(SCHEDULES),
        choices=lambda: list(SCHEDULES),
    )
    lr_decay: float | None = setting(
        None,
        f"for --lr-schedule exp only: the factor applied per epoch, in (0, 1] (default: {LR_DECAY})",
        _float(0.0, 1.0, none=True),
        metavar="FACTOR",
    )
    shift: int = setting(
        1, "augment training images by random translations of up to PX pixels (0: off)", _int(0, 1 << 16), metavar="PX"
    )
    augment: bool = setting(
        False,
        "augment training images by random crops after zero-padding by 4 pixels (an eighth of the image, if "
        "smaller) and left-right flips, on the device, drawn from --seed",
        _bool,
    )
    weight_decay: float = setting(
        0.0,
        "L2 regularisation: weight_decay * w is added to every gradient",
        _float(0.0, 1.0, low_open=False),
        metavar="WD",
    )
    seed: int = setting(
        0,
        "seed of the initial weights, dropout and the batch order (same seed on the CPU: bit-identical weights)",
        _int(0, 2**64 - 1),
    )
    dtype: str = setting(
        "float32",
        "floating-point type of weights and activations",
        _one_of(FLOAT_DTYPES),
        choices=lambda: list(FLOAT_DTYPES),
    )
    train_size: int | None = setting(
        None, "use only the first N training samples (quick runs)", _int(1, none=True), metavar="N"
    )
    test_size: int | None = setting(None, "use only the first N test samples", _int(1, none=True), metavar="N")
    channels: int | None = setting(
        None,
        "folders of images: convert every image to 1 (grey) or 3 (colour) channels (default: 3 if any has colour)",
        lambda n, v: None if v is None else _one_of((1, 3))(n, v),
        metavar="{1,3}",
    )
    image_size: tuple[int, int] | None = setting(
        None,
        "folders of images: resize every image to H x W pixels, bilinear (default: the most common size)",
        _image_size,
        metavar=("H", "W"),
    )
    test_fraction: float = setting(
        0.2,
        "folders of images without train/ and test/: the share of each class held out for testing (split by --seed)",
        _float(0.0, 0.99),
        metavar="F",
    )
    strict: bool = setting(False, "folders of images: a file that would be skipped (corrupt, ...) is an error", _bool)

    # ---- the session: how this process runs the plan (not stored; a resume takes it afresh)
    device: str = setting(
        "auto",
        "'auto' (a GPU if usable, else the CPU), 'cpu', 'gpu' or 'gpu:N' (also 'cuda', 'cuda:N')",
        _string,
        plan=False,
    )
    out: str | None = setting(
        None,
        "output folder (default: a fresh folder under runs/; with --resume: the checkpoint's folder)",
        lambda n, v: None if v is None else _string(n, str(v)) if str(v) else _string(n, ""),
        plan=False,
        metavar="DIR",
    )
    save_every: int = setting(
        0,
        "also write last.safetensors every STEPS optimizer steps (0: only at the end of each epoch)",
        _int(0),
        plan=False,
        metavar="STEPS",
    )
    threads: int | str | None = setting(
        None,
        "threads for the CPU's matrix products (default: the cores, shared among the MPI ranks of a node); 'auto': "
        "only the cores other running work leaves idle at the start (faster on a busy machine, but the weights then "
        "depend on the load met)",
        _threads,
        plan=False,
        metavar="N",
    )
    quiet: bool = setting(False, "no progress bar or per-epoch lines; only the final summary", _bool, plan=False)
    distributed: bool = setting(
        False,
        "data-parallel training over MPI: launch with `mpirun -n N`; --batch-size is the global batch; with "
        "--device gpu each rank uses GPU local_rank (gradients travel through NCCL)",
        _bool,
        plan=False,
    )
    collective_timeout: float = setting(
        300.0,
        "with --distributed: seconds a rank waits for the others in a collective before it ends the whole job",
        _float(0.0),
        plan=False,
        metavar="SECONDS",
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, f.metadata["setting"].check(f.name, getattr(self, f.name)))
        if self.lr_decay is not None and self.lr_schedule != "exp":
            raise ConfigError(
                "lr_decay", f"only --lr-schedule exp uses a decay factor; this run's schedule is {self.lr_schedule}"
            )

    # ------------------------------------------------------------------ derived values

    @property
    def learning_rate(self) -> float:
        """``lr``, or the optimizer's default for a run: 0.003 for Adam, else its class default."""
        if self.lr is not None:
            return self.lr
        if self.optimizer == "adam":
            return ADAM_LR
        default = inspect.signature(OPTIMIZERS[self.optimizer]).parameters.get("lr")
        if default is None or not isinstance(default.default, (int, float)):
            raise ConfigError("lr", f"the optimizer {self.optimizer!r} has no default learning rate: give one")
        return float(default.default)

    def dataset_options(self) -> dict[str, Any]:
        """What a dataset reader may use (a folder of images: its conversion, size and split)."""
        return {
            "channels": self.channels, "image_size": self.image_size, "test_fraction": self.test_fraction,
            "seed": self.seed, "strict": self.strict,
        }  # fmt: skip

    @property
    def decay(self) -> float:
        return LR_DECAY if self.lr_decay is None else self.lr_decay

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ checkpoints

    def stored(self, **derived: Any) -> dict[str, Any]:
        """The plan as a checkpoint records it (JSON-able), with ``derived`` facts of the run
        (``num_classes``, ...); the learning rate and decay are recorded as used."""
        plan = {name: getattr(self, name) for name in plan_settings()}
        plan.update(lr=self.learning_rate, lr_decay=self.decay if self.lr_schedule == "exp" else None, **derived)
        return plan

    @classmethod
    def resumed(cls, stored: Mapping[str, Any], given: Mapping[str, Any]) -> RunConfig:
        """The configuration that continues the run whose plan ``stored`` is (a checkpoint's
        :meth:`stored`), with the settings ``given`` again: session settings are taken from it,
        ``epochs`` may change; any other plan setting given with another value is refused, since
        the run could then not continue as it started (start a new run for that)."""
        plan = {k: v for k, v in stored.items() if k in plan_settings()}
        if plan.get("lr") is None and plan.get("optimizer", "adam") == "adam":
            plan["lr"] = ADAM_LR_BEFORE_RECORDED  # a run of an older cnn_xp that left lr to the default
        for name, value in given.items():
            fixed = name in plan_settings() and not _setting(name).resume_may_change and name in plan
            if fixed and _normalised(name, value) != _normalised(name, plan[name]):
                raise ConfigError(
                    name,
                    f"a resumed run keeps the settings it started with ({name} {plan[name]!r}, not {value!r}); "
                    "start a new run to change it",
                )
        if plan.get("lr_schedule", "cosine") != "exp":
            plan["lr_decay"] = None  # recorded as used; only exp takes it
        session = {k: v for k, v in given.items() if k not in plan_settings() or _setting(k).resume_may_change}
        if isinstance(plan.get("image_size"), list):
            plan["image_size"] = tuple(plan["image_size"])
        return cls(**{**plan, **session})


def _normalised(name: str, value: Any) -> Any:
    """``value`` as the setting's check gives it back (a stored list as the tuple it was), or as it
    is when the check refuses it."""
    try:
        return _setting(name).check(name, tuple(value) if isinstance(value, list) else value)
    except ConfigError:
        return value


def _setting(name: str) -> Setting:
    return next(f.metadata["setting"] for f in dataclasses.fields(RunConfig) if f.name == name)


def settings() -> dict[str, Setting]:
    """Every setting of a run, by field name, in declaration order."""
    return {f.name: f.metadata["setting"] for f in dataclasses.fields(RunConfig)}


def plan_settings() -> list[str]:
    return [name for name, s in settings().items() if s.plan]


def _classes(name: str, value: Any) -> list[str]:
    if (
        not isinstance(value, list)
        or len(value) > 1 << 20
        or not all(isinstance(v, str) and len(v) < 1024 for v in value)
    ):
        raise ConfigError(name, f"expected a list of class names, got {value!r:.80}")
    return value


def _preprocess(name: str, value: Any) -> dict[str, Any]:
    from ..data.preprocess import Preprocess

    try:
        return Preprocess.from_json(value).to_json()
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None


DERIVED: dict[str, Check] = {"num_classes": _int(1, 1 << 20), "classes": _classes, "preprocess": _preprocess}
"""Facts about a run that a checkpoint records beside its plan (found from the data)."""


def check_stored(name: str, value: Any) -> dict[str, Any]:
    """A checkpoint's ``run`` entry: the plan settings (any may be missing: older files, or the
    library's own runs) and :data:`DERIVED` facts, each checked as :class:`RunConfig` checks it.
    The model need not be registered in this process (a resume rebuilds it from the file)."""
    if not isinstance(value, dict):
        raise ValueError(f"{name}: expected an object, got {type(value).__name__}")
    known = {**{k: s.check for k, s in settings().items() if s.plan}, **DERIVED, "model": _model_name}
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown entries {unknown}; expected some of {sorted(known)}")
    out: dict[str, Any] = {}
    for key, v in value.items():
        if v is None and key in ("lr", "lr_decay", "train_size", "test_size", "channels", "image_size"):
            out[key] = None
            continue
        try:
            if key == "image_size" and isinstance(v, list):
                v = tuple(v)
            out[key] = known[key](f"{name}.{key}", v)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return out
