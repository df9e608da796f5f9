"""``python -m cnn_xp.train``: train a network on a bundled or local dataset.

Every bad argument (or a GPU that is not there) is one line on stderr and exit status 2,
without a traceback; Ctrl-C saves a checkpoint and exits 130; a diverging run exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import os
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy
from threadpoolctl import threadpool_limits

from .. import distributed
from ..backend import gpu_available, is_out_of_memory, release_gpu_memory
from ..checks import FLOAT_DTYPES
from ..data import DataLoader
from ..datasets import NAMES, load_dataset
from ..models import MODELS, Network
from ..optim import OPTIMIZERS, constant, cosine, exponential
from ..optim.schedules import SCHEDULES
from ..serialization import write_atomically
from ..train.checkpoint import load_checkpoint
from ..train.run_lock import RunFolderInUseError, RunLock
from ..train.trainer import CheckpointWriteError, NonFiniteLossError, Trainer, TrainingInterrupted
from .common import OneLineParser, UsageError, device_arg, flag_error, run_command

PROG = "python -m cnn_xp.train"

# The defaults reach 99.0% on MNIST within a minute on 2 CPU cores (docs/benchmarks.md: the
# recipes tried, and the per-epoch table of the default run).
LR_DECAY = 0.75  # --lr-schedule exp's factor per epoch
ADAM_LR_BEFORE_RECORDED = 0.002  # Adam's default before runs recorded their learning rate
DEFAULTS = {"epochs": 4, "batch_size": 100, "optimizer": "adam", "lr": None, "seed": 0}
OUTPUTS = ("last.safetensors", "best.safetensors", "metrics.csv", "summary.json", "curves.png", "filters.png")


def positive(kind: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive integer {kind}, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"expected a positive integer {kind}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Train a CNN (the book's SimpleConvNet or DeepConvNet) on MNIST, Fashion-MNIST, an IDX directory "
        f"or the CIFAR-10 binary directory, on the CPU or a CUDA GPU. Writes {', '.join(OUTPUTS)} to --out.",
    )
    p.add_argument(
        "--device",
        default="auto",
        help="'auto' (a GPU if usable, else the CPU), 'cpu', 'gpu' or 'gpu:N' (also 'cuda', 'cuda:N')",
    )
    p.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="simple",
        help="SimpleConvNet (book ch. 7) or DeepConvNet (book ch. 8)",
    )
    p.add_argument(
        "--dataset",
        default="mnist",
        help=f"{' or '.join(NAMES)} (both offline; any case), or a directory of IDX files (*-ubyte[.gz]: KMNIST, "
        "EMNIST, ...) or of CIFAR-10's binary batches (the unpacked cifar-10-batches-bin folder)",
    )
    p.add_argument(
        "--epochs",
        type=positive("number of epochs"),
        default=None,
        help=f"total epochs of the run (default: {DEFAULTS['epochs']}; with --resume: the number the interrupted run "
        "was asked for)",
    )
    p.add_argument(
        "--batch-size", type=positive("batch size"), default=DEFAULTS["batch_size"], help="training mini-batch size"
    )
    p.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=DEFAULTS["optimizer"], help="update rule")
    p.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="learning rate at the start of the schedule (default: 0.003 for adam, 0.01 for the other optimizers)",
    )
    p.add_argument(
        "--lr-schedule",
        choices=SCHEDULES,
        default="cosine",
        help="learning rate over the run: 'cosine' (the default) decays to 0 at the last of --epochs; 'exp' "
        "multiplies it by --lr-decay every epoch (depends on the step only, so --resume with more --epochs "
        "continues exactly); 'constant'",
    )
    p.add_argument(
        "--lr-decay",
        type=positive_float,
        default=None,
        metavar="FACTOR",
        help=f"for --lr-schedule exp only: the factor applied to the learning rate per epoch, in (0, 1] (default: "
        f"{LR_DECAY})",
    )
    p.add_argument(
        "--shift",
        type=non_negative,
        default=1,
        metavar="PX",
        help="augment training images by random translations of up to PX pixels (0: off)",
    )
    p.add_argument(
        "--seed",
        type=non_negative,
        default=DEFAULTS["seed"],
        help="seed for the initial weights, dropout and the batch order (same seed on the CPU: bit-identical weights)",
    )
    p.add_argument(
        "--dtype",
        choices=FLOAT_DTYPES,
        default="float32",
        help="floating-point type of weights and activations",
    )
    p.add_argument(
        "--train-size",
        type=positive("sample count"),
        default=None,
        metavar="N",
        help="use only the first N training samples (quick runs)",
    )
    p.add_argument(
        "--test-size",
        type=positive("sample count"),
        default=None,
        metavar="N",
        help="use only the first N test samples",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output directory (default: a fresh folder under runs/; with --resume: the checkpoint's folder)",
    )
    p.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="PATH",
        help="continue exactly from a checkpoint (e.g. runs/.../last.safetensors)",
    )
    p.add_argument(
        "--save-every",
        type=non_negative,
        default=0,
        metavar="STEPS",
        help="also write last.safetensors every STEPS optimizer steps (0: only at the end of each epoch)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar or per-epoch lines; print only the final summary"
    )
    p.add_argument(
        "--threads",
        type=threads_arg,
        default=None,
        metavar="N",
        help="threads for the CPU's matrix products (default: the cores, shared among the MPI ranks of a node); "
        "'auto': only the cores other running work leaves idle at the start, several times faster on a busy "
        "machine, but a run's weights then depend on the load it met (see the README)",
    )
    p.add_argument(
        "--collective-timeout",
        type=positive_float,
        default=distributed.DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="with --distributed: how long a rank waits for the others in a collective before it ends the "
        "whole job (a rank that stalled or died would otherwise hang its peers)",
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel training over MPI: launch with `mpirun -n N`; --batch-size is the global batch; "
        "with --device gpu each rank uses GPU local_rank (gradients travel through NCCL)",
    )
    return p


def threads_arg(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    return positive("thread count or 'auto'")(text)


def busy_cores(samples: int = 5, interval: float = 0.05) -> float:
    """How many cores other work keeps busy now: on Linux the median over ``samples`` readings of
    the running-task count in /proc/loadavg, less this process; elsewhere the 1-minute load average."""
    readings = []
    for i in range(samples):
        try:
            running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        except (OSError, IndexError, ValueError):
            break
        readings.append(max(running - 1, 0))
        if i + 1 < samples:
            time.sleep(interval)
    if readings:
        return float(sorted(readings)[len(readings) // 2])
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # no load average on this platform
        return 0.0


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads(ranks_on_node: int = 1) -> int:
    """The default BLAS threads of one process: the cores it may use, shared among the
    ``ranks_on_node`` processes of a distributed run. It depends on the machine only, so the same
    command gives bit-identical weights run after run (BLAS results can change with the thread count)."""
    return max(1, usable_cores() // max(ranks_on_node, 1))


def auto_threads(ranks_on_node: int = 1, busy: float | None = None) -> int:
    """``--threads auto``: :func:`default_threads` less the cores other work keeps busy now
    (:func:`busy_cores`).  Measured on 2 cores (README): with 2 other busy processes, 1 thread ran
    3-8x faster than 2; on an idle machine 2 threads ran about 1.1x faster than 1."""
    busy = busy_cores() if busy is None else busy
    return max(1, min(default_threads(ranks_on_node), usable_cores() - round(busy)))


def check_out_dir(out: Path) -> None:
    """--out must be (or become) a folder: not a file, not under a file, with a name the file
    system takes. (Whether it can be written is found when it is created, before training.)"""
    try:
        name_max = os.pathconf(".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    long = [part for part in out.parts if len(os.fsencode(part)) > name_max]
    if long:
        raise UsageError(
            f"--out: the name {long[0][:40]!r}... is longer than the {name_max} bytes a file name may have"
        )
    try:
        if out.exists() and not out.is_dir():
            raise UsageError(f"--out: {out} is a file, not a folder")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"--out: {out} lies under {parent}, which is a file")
                break
    except OSError as exc:  # e.g. a path longer than the system's limit
        shown = str(out) if len(str(out)) <= 80 else f"{str(out)[:77]}..."
        raise UsageError(f"--out: {shown}: {exc.strerror or exc}") from None


STEP_MEMORY_FACTOR = 4  # a step keeps each activation, its gradient and im2col columns: ~4 copies


def probe_network(model: Network, input_dim: tuple[int, ...], dtype: str) -> tuple[int, int]:
    """(bytes of one sample's activations, number of outputs) of ``model``, from a forward pass
    of one zero sample in inference mode; UsageError if the data's samples do not fit it."""
    from ..backend import to_device
    from ..layers import no_grad

    x: Any = to_device(numpy.zeros((1, *input_dim), dtype=dtype), model.device)
    per_sample = 0
    try:
        with no_grad():
            for layer in model.layers.values():
                x = layer.forward(x, train_flg=False) if layer.uses_mode else layer.forward(x)
                per_sample += int(x.nbytes)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--dataset: samples of shape {input_dim} do not fit this network: {exc}") from None
    return per_sample, int(x.shape[-1])


def check_step_fits(batch_size: int, per_sample: int) -> None:
    """Refuse at once a --batch-size whose training step cannot fit in the memory available now
    (instead of failing minutes later): one sample's activations (see :func:`probe_network`)
    times the batch and :data:`STEP_MEMORY_FACTOR`, against /proc/meminfo's MemAvailable."""
    try:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return  # no figure to compare with on this system
    need = per_sample * batch_size * STEP_MEMORY_FACTOR
    if need > available:
        fits = max(1, available // (per_sample * STEP_MEMORY_FACTOR))
        raise UsageError(
            f"--batch-size: one training step of {batch_size} needs about {need / 2**30:.1f} GiB, more than the "
            f"{available / 2**30:.1f} GiB of memory available; try --batch-size {min(fits, 1000)} or less"
        )


def new_network(run: dict[str, Any], input_dim: Any, device: Any) -> Network:
    """The network a run starts from: its settings, and initial weights drawn from ``run['seed']``."""
    # SimpleConvNet with He initialisation (the book's 0.01 trains slowly); DeepConvNet's default is He
    kwargs: dict[str, Any] = {"weight_init_std": "he"}
    return MODELS[run["model"]](
        input_dim=input_dim,
        output_size=run["num_classes"],
        dtype=run["dtype"],
        device=device,
        seed=run["seed"],
        **kwargs,
    )


def default_lr(optimizer: str) -> float:
    """The CLI's learning rate: 0.003 for Adam (see docs/benchmarks.md), else the optimizer's own default."""
    if optimizer == "adam":
        return 0.003
    return float(inspect.signature(OPTIMIZERS[optimizer]).parameters["lr"].default)


def fresh_out_dir(model: str, dataset: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{model}-{Path(dataset).name or dataset}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}-{k}")
    return out


def prepare(args: argparse.Namespace, gate: Any = None) -> tuple[Trainer, dict[str, Any]]:
    """Everything that can fail on bad input, checked before any work is done. ``gate(run)`` is
    called before the first collective (the Trainer's broadcast of the weights): there the ranks
    of a distributed run agree to start, or all stop."""
    rank, world = 0, 1
    if args.distributed:
        try:
            distributed.init()
        except distributed.DistributedUnavailableError as exc:
            raise UsageError(f"--distributed: {exc}") from None
        rank, world = distributed.rank(), distributed.size()
        if args.device.strip().lower() in ("gpu", "cuda") or (
            args.device == "auto" and gpu_available(distributed.local_rank())
        ):
            args.device = f"gpu:{distributed.local_rank()}"  # one GPU per rank on each node
    device = device_arg(args.device)
    ckpt = None
    if args.resume is not None:
        if not args.resume.is_file():
            raise UsageError(f"--resume: no such checkpoint file: {args.resume}")
        try:
            ckpt = load_checkpoint(args.resume)
        except ValueError as exc:
            raise UsageError(f"--resume: {exc}") from None
        if ckpt.optimizer is None or not ckpt.trainer:
            raise UsageError(f"--resume: {args.resume} holds parameters only, not a training checkpoint")
        # the run's settings come from the checkpoint; --epochs, --device, --out, --quiet, --save-every may change
        for key in (
            "model",
            "dataset",
            "batch_size",
            "optimizer",
            "lr",
            "lr_schedule",
            "lr_decay",
            "shift",
            "seed",
            "dtype",
            "train_size",
            "test_size",
        ):
            setattr(args, key, ckpt.run.get(key, getattr(args, key)))
        if args.lr is None and args.optimizer == "adam":
            # Runs record their learning rate since the default became 0.003; one that left it
            # to the default before then trained with the old default, and resumes with it.
            args.lr = ADAM_LR_BEFORE_RECORDED
        if "dtype" not in ckpt.run:  # a checkpoint of the library's Trainer: train on in its own dtype
            args.dtype = ckpt.model_config["dtype"]
    if args.lr_decay is not None and ckpt is None:
        if args.lr_decay > 1:
            raise UsageError(f"--lr-decay: expected a factor in (0, 1], got {args.lr_decay}")
        if args.lr_schedule != "exp":  # else the factor would be ignored without a word
            raise UsageError(
                f"--lr-decay: only --lr-schedule exp uses a decay factor; this run's schedule is {args.lr_schedule}"
            )
    if args.lr_decay is None:
        args.lr_decay = LR_DECAY
    if args.epochs is None:  # a resumed run keeps its plan
        args.epochs = int(ckpt.run.get("epochs", DEFAULTS["epochs"])) if ckpt is not None else DEFAULTS["epochs"]
    try:
        (x_train, t_train), (x_test, t_test) = load_dataset(args.dataset, normalize=False)
    except (ValueError, FileNotFoundError) as exc:
        raise flag_error("--dataset", exc) from None
    if args.train_size:
        x_train, t_train = x_train[: args.train_size], t_train[: args.train_size]
    if args.test_size:
        x_test, t_test = x_test[: args.test_size], t_test[: args.test_size]
    if args.batch_size > x_train.shape[0]:
        raise UsageError(f"--batch-size: {args.batch_size} is larger than the {x_train.shape[0]} training samples")
    num_classes = int(max(t_train.max(), t_test.max())) + 1
    out = args.out or (args.resume.parent if args.resume is not None else fresh_out_dir(args.model, str(args.dataset)))
    check_out_dir(out)
    lr0 = args.lr if args.lr is not None else default_lr(args.optimizer)
    run = {
        "model": args.model if ckpt is None else ckpt.run.get("model"),
        "dataset": str(args.dataset),
        "batch_size": args.batch_size,
        "optimizer": args.optimizer,
        "lr": lr0,  # recorded: defaults may change
        "lr_schedule": args.lr_schedule,
        "lr_decay": args.lr_decay,
        "shift": args.shift,
        "seed": args.seed,
        "dtype": args.dtype,
        "train_size": args.train_size,
        "test_size": args.test_size,
        "epochs": args.epochs,
        "num_classes": num_classes,
    }
    if ckpt is not None:
        model: Network = ckpt.build_model(device=device, dtype=args.dtype)
        optimizer = ckpt.build_optimizer(device=device)
    else:
        model = new_network(run, tuple(int(v) for v in x_train.shape[1:]), device)
        optimizer = OPTIMIZERS[args.optimizer](lr=args.lr if args.lr is not None else default_lr(args.optimizer))
    if run["model"] is None:  # a network of the user's own, resumed: not one of the named ones
        del run["model"]
    per_sample, outputs = probe_network(model, tuple(int(v) for v in x_train.shape[1:]), args.dtype)
    if outputs < num_classes:
        raise UsageError(f"--dataset: its labels go up to {num_classes - 1} but the network has only {outputs} outputs")
    if not device.is_gpu:  # on a GPU, running out of memory is caught and reported when it happens
        check_step_fits(args.batch_size, per_sample)
    loader_kw: dict[str, Any] = {"device": device, "dtype": args.dtype, "scale": 1.0 / 255.0}
    split: dict[str, Any] = {"rank": rank, "world_size": world}
    try:
        train_loader = DataLoader(
            x_train, t_train, args.batch_size, shuffle=True, seed=args.seed, shift=args.shift, **loader_kw, **split
        )
    except ValueError as exc:
        raise flag_error("--shift" if str(exc).startswith("shift:") else "--dataset", exc) from None
    test_loader = DataLoader(x_test, t_test, 1000, shuffle=False, **loader_kw, **split)
    if args.lr_schedule == "exp":
        last = lr0 * args.lr_decay ** (args.epochs - 1)
        if last < lr0 * 1e-4 and distributed.rank() == 0:
            print(
                f"warning: --lr-decay {args.lr_decay} takes the learning rate from {lr0:g} to {last:.3g} by epoch "
                f"{args.epochs}: the last epochs will barely train",
                file=sys.stderr,
            )
        schedule = exponential(lr0, args.lr_decay, len(train_loader))
    elif args.lr_schedule == "cosine":
        schedule = cosine(lr0, args.epochs * len(train_loader))
    else:
        schedule = constant(lr0)
    if gate is not None:
        gate(run)
    trainer = Trainer(
        model,
        optimizer,
        train_loader,
        test_loader,
        device=device,
        out_dir=out,
        save_every=args.save_every,
        quiet=args.quiet,
        run=run,
        lr_schedule=schedule,
        distributed=args.distributed,
    )
    if ckpt is not None:
        try:
            trainer.load_state(ckpt.trainer, ckpt.rng)
        except ValueError as exc:
            raise UsageError(f"--resume: {exc}") from None
        if trainer.epoch >= args.epochs:
            raise UsageError(
                f"--epochs: the run in {args.resume} already has {trainer.epoch} of its {args.epochs} epochs; "
                f"pass --epochs N with N > {trainer.epoch} to train on"
            )
    return trainer, run


def resume_line(path: Path, trainer: Trainer, epochs: int) -> str:
    """One line: where a resumed run picks up and how far it will go."""
    steps = len(trainer.train_loader)
    if trainer.step_in_epoch == 0:
        where = f"after epoch {trainer.epoch}"
    else:
        where = f"in epoch {trainer.epoch + 1} after step {trainer.step_in_epoch} of {steps}"
    return f"resuming from {path}: {where} (global step {trainer.step}); training to epoch {epochs}"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


class JobStopped(Exception):  # noqa: N818 - an outcome, already reported
    """The ranks of a distributed run agreed not to start; ``code`` is the exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def start_together(status: dict[str, Any], prog: str) -> None:
    """Every rank brings its ``status`` (``ok``, and ``run`` or ``code``/``message``); all go on only
    if all are ready with the same settings. Otherwise every rank stops (JobStopped) and rank 0
    says which rank failed and why, or which settings differ."""
    statuses = distributed.agree(status)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if distributed.rank() == 0 else (lambda line: None)
    failed = [(r, s) for r, s in enumerate(statuses) if not s["ok"]]
    if failed:
        for r, s in failed:
            say(f"{prog}: error on rank {r}: {s['message']}")
        raise JobStopped(max(int(s["code"]) for _, s in failed))
    first = statuses[0]["run"]
    differ = [
        f"rank {r} has {key} {s['run'].get(key)!r} where rank 0 has {first.get(key)!r}"
        for r, s in enumerate(statuses[1:], start=1)
        for key in sorted(set(first) | set(s["run"]))
        if s["run"].get(key) != first.get(key)
    ]
    if differ:
        say(f"{prog}: error: the ranks were started with different settings: {'; '.join(differ)}")
        raise JobStopped(2)


def _main(argv: list[str] | None, prog: str) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A diverging run overflows; the trainer reports the first non-finite loss precisely, so
    # NumPy's floating-point warnings would only add noise to stderr.
    warnings.filterwarnings(
        "ignore", category=RuntimeWarning, message=r"(overflow|invalid value|divide by zero) encountered"
    )
    if "--distributed" not in argv:
        args = build_parser(prog).parse_args(argv)
        trainer, run = prepare(args)
        return _train(args, trainer, run, prog)
    try:  # before anything can fail on one rank only, so that every failure reaches the others
        distributed.init()
    except distributed.DistributedUnavailableError as exc:
        raise UsageError(f"--distributed: {exc}") from None
    passed = False

    def gate(run: dict[str, Any]) -> None:
        nonlocal passed
        passed = True
        start_together({"ok": True, "run": run}, prog)

    try:
        try:
            args = build_parser(prog).parse_args(argv)
            distributed.set_timeout(args.collective_timeout)
            trainer, run = prepare(args, gate)
        except JobStopped:
            raise
        except Exception as exc:
            if passed:  # failed after all ranks started: end them all
                if distributed.size() > 1:
                    code = 2 if isinstance(exc, UsageError) else 1
                    distributed.abort(f"{prog}: error on rank {distributed.rank()}: {exc}", code=code)
                raise
            code, text = (2, str(exc)) if isinstance(exc, UsageError) else (1, f"{type(exc).__name__}: {exc}")
            start_together({"ok": False, "code": code, "message": text}, prog)
            raise AssertionError("unreachable: start_together stops every rank on a failure") from exc
    except JobStopped as stop:
        return stop.code
    return _train(args, trainer, run, prog)


def _train(args: argparse.Namespace, trainer: Trainer, run: dict[str, Any], prog: str) -> int:
    say = (
        (lambda *a: None)
        if args.quiet or distributed.rank() != 0
        else (lambda *a: print(*a, file=sys.stderr, flush=True))
    )
    if isinstance(args.threads, int):
        threads = args.threads
    elif args.threads == "auto":
        threads = auto_threads(distributed.local_size())
    else:
        threads = default_threads(distributed.local_size())
        if not trainer.device.is_gpu and not args.quiet and distributed.rank() == 0:
            busy = busy_cores()
            if busy >= 1 and threads > 1:
                print(
                    f"note: other work keeps {busy:.0f} core(s) busy; --threads auto (or 1) trains several times "
                    "faster on a busy machine",
                    file=sys.stderr,
                    flush=True,
                )
    ranks = f"  ranks: {distributed.size()}" if args.distributed else ""
    cpu_threads = "" if trainer.device.is_gpu else f"  threads: {threads}"
    tests = trainer.test_loader.x.shape[0] if trainer.test_loader else 0
    say(
        f"device: {trainer.device}{cpu_threads}{ranks}  model: {type(trainer.model).__name__}  dataset: {run['dataset']} "
        f"({trainer.train_loader.x.shape[0]} train / {tests} test)  out: {trainer.out_dir}"
    )
    if args.resume is not None and distributed.rank() == 0:  # what a resumed run does, even with --quiet
        print(resume_line(args.resume, trainer, args.epochs), file=sys.stderr, flush=True)
    out = trainer.out_dir
    with contextlib.ExitStack() as stack:
        try:
            if out is not None:
                stack.enter_context(RunLock(out))
        except (RunFolderInUseError, OSError) as exc:
            text = (
                str(exc)
                if isinstance(exc, RunFolderInUseError)
                else f"cannot create or write {out}: {exc.strerror or exc}"
            )
            if args.distributed and distributed.size() > 1:  # the other ranks wait in a collective
                distributed.abort(f"{prog}: error: --out: {text}", code=2)
            raise UsageError(f"--out: {text}") from None
        return _fit_and_report(trainer, run, args, prog, threads)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def _fit_and_report(trainer: Trainer, run: dict[str, Any], args: argparse.Namespace, prog: str, threads: int) -> int:
    """Train, then write the plots and summary.json and print the results (primary rank)."""
    start = time.perf_counter()
    primary = distributed.rank() == 0
    multi = args.distributed and distributed.size() > 1
    try:
        with threadpool_limits(limits=threads, user_api="blas"):
            history = trainer.fit(args.epochs)
    except TrainingInterrupted as exc:  # all ranks agree on the step at which they stop
        if primary:
            print(f"{prog}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except NonFiniteLossError as exc:  # all ranks see the same reduced loss
        if primary:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        if is_out_of_memory(exc):
            release_gpu_memory()
            message = (
                f"{prog}: error: out of GPU memory on {trainer.device} with --batch-size {run['batch_size']} "
                f"({exc}); try a smaller --batch-size"
            )
        elif isinstance(exc, CheckpointWriteError):
            message = f"{prog}: error: {exc}"
        elif isinstance(exc, MemoryError):
            message = (
                f"{prog}: error: out of memory with --batch-size {run['batch_size']} on {trainer.device}; "
                "try a smaller --batch-size (or --model simple, or --dtype float32)"
            )
        elif multi:
            message = f"{prog}: error on rank {distributed.rank()}: {type(exc).__name__}: {exc}"
        else:
            raise
        if multi:  # only this rank failed: bring the job down instead of leaving the others in a collective
            distributed.abort(message)
        print(message, file=sys.stderr)
        return 1
    total = time.perf_counter() - start
    if not primary:
        return 0
    assert trainer.out_dir is not None
    last = history[-1]
    images = sum(h["seconds"] * h["images_per_s"] for h in history)
    train_seconds = sum(h["seconds"] for h in history)
    summary = {
        "final_test_acc": last["test_acc"],
        "best_test_acc": trainer.best_test_acc,
        "total_seconds": total,
        "images_per_s": images / max(train_seconds, 1e-9),
        "run": run,
    }
    try:
        write_plots(trainer)
        write_atomically(trainer.out_dir / "summary.json", json.dumps(summary, indent=2).encode())
    except OSError as exc:
        print(
            f"{prog}: error: could not write the plots or summary.json in {trainer.out_dir}: {exc.strerror or exc}; "
            "the checkpoints and metrics.csv are complete",
            file=sys.stderr,
        )
        return 1
    print(f"final test accuracy: {last['test_acc']:.2%}  (best {trainer.best_test_acc:.2%})")
    print(f"total time: {total:.1f} s  training throughput: {summary['images_per_s']:.0f} images/s")
    print(f"results: {trainer.out_dir} ({', '.join(OUTPUTS)})")
    return 0


def write_plots(trainer: Trainer) -> None:
    from ..train.plots import plot_curves, plot_filters

    assert trainer.out_dir is not None
    plot_curves(trainer.history, trainer.out_dir / "curves.png")
    W = first_conv_weights(trainer.model)
    if W is None:
        return
    # the initial weights come back from the seed, also for a resumed run (of a named network)
    W0 = None
    if "model" in trainer.run and trainer.model.input_dim is not None:
        W0 = first_conv_weights(new_network(trainer.run, tuple(trainer.model.input_dim), "cpu"))
    r = float(numpy.corrcoef(W.ravel(), W0.ravel())[0, 1]) if W0 is not None else float("nan")
    title = (
        f"{type(trainer.model).__name__}, first-layer filters after {trainer.epoch} epochs "
        f"({W.shape[0]} of {'x'.join(map(str, W.shape[1:]))}; correlation with the initial weights {r:.2f})"
    )
    plot_filters(W, trainer.out_dir / "filters.png", W0=W0, title=title)


def first_conv_weights(model: Network) -> numpy.ndarray | None:
    """The first convolution's W (FN, C, FH, FW) as a host array, or None."""
    from ..backend import to_numpy

    for layer in model.layers.values():
        W = getattr(layer, "W", None)
        if getattr(W, "ndim", 0) == 4:
            return numpy.asarray(to_numpy(W))
    return None
