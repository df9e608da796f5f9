"""``cnn_xp train``: the flags of a :class:`~cnn_xp.train.config.RunConfig`, and a
:class:`~cnn_xp.train.run.Run` of it.

Every flag is a setting of the run (``--batch-size`` is ``batch_size``), declared with its
default, check and help in :mod:`cnn_xp.train.config`; this module maps flags to settings and
outcomes to exit statuses: a bad argument (or a GPU that is not there) is one line on stderr
and exit status 2, without a traceback; Ctrl-C saves a checkpoint and exits 130; a diverging run
exits 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sys
import warnings
from pathlib import Path
from typing import Any

from .. import distributed
from ..backend import is_out_of_memory, release_gpu_memory
from ..functions import native
from ..train import config as settings_module
from ..train.config import ConfigError, RunConfig
from ..train.resources import busy_cores
from ..train.run import OUTPUTS, ReportWriteError, Run
from ..train.run_lock import RunFolderInUseError, RunLock
from ..train.startup import JobStopped, prepare_together
from ..train.trainer import CheckpointWriteError, NonFiniteLossError, TrainingInterrupted
from .common import OneLineParser, UsageError, run_command

PROG = "python -m cnn_xp.train"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_type(annotation: str, name: str) -> Any:
    """The argparse type of a setting, from its annotation: the value's kind only (its range is
    the setting's own check)."""
    if annotation.startswith("int | str"):  # --threads N | auto
        return lambda text: "auto" if text.strip().lower() == "auto" else _number(int, "an integer or 'auto'")(text)
    if annotation.startswith("int"):
        return _number(int, "an integer")
    if annotation.startswith("float"):
        return _number(float, "a number")
    return str


def _number(kind: type, what: str) -> Any:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None

    return parse


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """One flag per setting of :class:`RunConfig` (defaults shown from it), and ``--resume``."""
    p = OneLineParser(
        prog=prog,
        description="Train a CNN (a registered model: SimpleConvNet, DeepConvNet, ResNet, ...) on MNIST, "
        "Fashion-MNIST, an IDX directory, CIFAR-10's binary batches or a folder of images, on the CPU or a CUDA GPU. "
        f"Writes {', '.join(OUTPUTS)} to --out.",
    )
    defaults = RunConfig()
    annotations = {f: t for f, t in RunConfig.__annotations__.items()}
    for name, s in settings_module.settings().items():
        default = getattr(defaults, name)
        shown = f" (default: {default})" if default not in (None, False) and "default:" not in s.help else ""
        kw: dict[str, Any] = {"default": None, "help": s.help + shown}
        if annotations[name] == "bool":
            kw["action"] = "store_true"
        elif annotations[name].startswith("tuple"):  # --image-size H W
            kw.update(type=_number(int, "an integer"), nargs=2, metavar=s.metavar)
        else:
            kw.update(type=_parser_type(annotations[name], name), metavar=s.metavar)
            if s.choices is not None:
                kw["metavar"] = "{" + ",".join(s.choices()) + "}"
        p.add_argument(_flag(name), **kw)
    p.add_argument(
        "--resume", type=Path, default=None, metavar="PATH", help="continue exactly from a checkpoint "
        "(e.g. runs/.../last.safetensors): its own settings, in its own folder, to its own --epochs unless given",
    )  # fmt: skip
    return p


def _usage(exc: ConfigError) -> UsageError:
    """A setting's error as the flag's: ``--batch-size: ...``."""
    return UsageError(f"{_flag(exc.setting)}: {exc.flag_detail}")


def _prepare(args: argparse.Namespace, gate: Any = None) -> Run:
    given = {k: v for k, v in vars(args).items() if k != "resume" and v is not None}
    try:
        if args.resume is not None:
            return Run.resume(args.resume, gate=gate, **given)
        return Run(RunConfig(**given), gate=gate)
    except ConfigError as exc:
        raise _usage(exc) from None


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    try:
        return run_command(prog, _main, argv)
    finally:
        # A run's layers, Trainer and a failure's traceback hold one another in reference cycles:
        # collect them now, so that a caller in the same process (a notebook, a sweep trying a
        # smaller batch after running out of GPU memory) gets the GPU's memory back at once.
        gc.collect()
        release_gpu_memory()


def _main(argv: list[str] | None, prog: str) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # A diverging run overflows; the trainer reports the first non-finite loss precisely, so
    # NumPy's floating-point warnings would only add noise to stderr.
    warnings.filterwarnings(
        "ignore", category=RuntimeWarning, message=r"(overflow|invalid value|divide by zero) encountered"
    )
    if "--distributed" not in argv:
        run = _prepare(build_parser(prog).parse_args(argv))
        return _train(run, prog)
    try:  # before anything can fail on one rank only, so that every failure reaches the others
        distributed.init()
    except distributed.DistributedUnavailableError as exc:
        raise UsageError(f"--distributed: {exc}") from None

    def prepare(gate: Any) -> Run:
        args = build_parser(prog).parse_args(argv)
        if args.collective_timeout is not None:
            distributed.set_timeout(args.collective_timeout)
        return _prepare(args, gate)

    try:
        run = prepare_together(prepare, prog, UsageError)
    except JobStopped as stop:
        return stop.code
    return _train(run, prog)


def _train(run: Run, prog: str) -> int:
    config, primary = run.config, distributed.rank() == 0
    say = (
        (lambda line: None) if config.quiet or not primary else (lambda line: print(line, file=sys.stderr, flush=True))
    )
    if primary:
        for line in run.warnings():
            print(f"warning: {line}", file=sys.stderr)
    # Only a network that does not split its batches runs on BLAS's threads, which spin while they
    # wait for busy cores: there (and only there) fewer threads were measured to help.
    if config.threads is None and not run.device.is_gpu and not config.quiet and primary and run.threads > 1:
        busy = busy_cores()
        if busy >= 1 and not run.trainer.model.splits_batches:
            say(f"note: other work keeps {busy:.0f} core(s) busy and {type(run.trainer.model).__name__}'s matrix "
                "products wait on BLAS threads there; --threads auto (or 1) trains faster on a busy machine")  # fmt: skip
    if not run.device.is_gpu and not native.available() and primary:  # said at install too, but pip hides it
        say("note: cnn_xp's compiled CPU kernels are not built (no C compiler at install): training runs slower; "
            "`cnn_xp doctor` says more")  # fmt: skip
    say(run.describe())
    if run.report is not None:  # what a folder of images gave: per split and class, what was skipped
        say(run.report)
    if run.resumed_from is not None and primary:  # what a resumed run does, even with --quiet
        print(run.resume_line(), file=sys.stderr, flush=True)
    out = run.trainer.out_dir
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
            if config.distributed and distributed.size() > 1:  # the other ranks wait in a collective
                distributed.abort(f"{prog}: error: --out: {text}", code=2)
            raise UsageError(f"--out: {text}") from None
        return _fit_and_report(run, prog)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def _fit_and_report(run: Run, prog: str) -> int:
    """Train, then print the results (primary rank); each way of failing is one line and a status."""
    primary = distributed.rank() == 0
    multi = run.config.distributed and distributed.size() > 1
    try:
        summary = run.fit()
    except TrainingInterrupted as exc:  # all ranks agree on the step at which they stop
        if primary:
            print(f"{prog}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except NonFiniteLossError as exc:  # all ranks see the same reduced loss
        if primary:
            print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        batch, device = run.config.batch_size, run.device
        if is_out_of_memory(exc):
            release_gpu_memory()
            message = f"{prog}: error: out of GPU memory on {device} with --batch-size {batch} ({exc}); try a smaller --batch-size"
        elif isinstance(exc, CheckpointWriteError):
            message = f"{prog}: error: {exc}"
        elif isinstance(exc, MemoryError):
            message = (
                f"{prog}: error: out of memory with --batch-size {batch} on {device}; try a smaller --batch-size "
                "(or a smaller --model, or --dtype float32)"
            )
        elif isinstance(exc, ReportWriteError):
            message = f"{prog}: error: {exc}"
        elif multi:
            message = f"{prog}: error on rank {distributed.rank()}: {type(exc).__name__}: {exc}"
        else:
            raise
        if multi:  # only this rank failed: bring the job down instead of leaving the others in a collective
            distributed.abort(message)
        print(message, file=sys.stderr)
        return 1
    if not primary:
        return 0
    print(f"final test accuracy: {summary['final_test_acc']:.2%}  (best {summary['best_test_acc']:.2%})")
    print(f"total time: {summary['total_seconds']:.1f} s  training throughput: {summary['images_per_s']:.0f} images/s")
    print(f"results: {run.trainer.out_dir} ({', '.join(OUTPUTS)})")
    return 0
