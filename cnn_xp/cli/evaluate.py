"""``python -m cnn_xp.evaluate CHECKPOINT``: test accuracy and the confusion matrix of a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy

from ..backend import to_device, to_numpy
from ..checks import float_dtype_name
from ..datasets import NAMES, class_names, load_split
from .common import OneLineParser, UsageError, checkpoint_arg, device_arg, flag_error, run_command
from .engines import add_engine_argument, check_engine, scorer

PROG = "python -m cnn_xp.evaluate"


def confusion_matrix(t: numpy.ndarray, pred: numpy.ndarray, num_classes: int) -> numpy.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    m = numpy.zeros((num_classes, num_classes), dtype=numpy.int64)
    numpy.add.at(m, (t.astype(numpy.int64), pred.astype(numpy.int64)), 1)
    return m


def format_matrix(m: numpy.ndarray, names: list[str]) -> str:
    width = min(12, max(5, len(str(int(m.max()))) + 1, *(len(n) + 1 for n in names)))
    short = [n[: width - 1] for n in names]
    head = " " * 12 + "".join(f"{n:>{width}}" for n in short)
    rows = [f"{names[i][:11]:>11} " + "".join(f"{v:>{width}d}" for v in m[i]) for i in range(len(names))]
    return "\n".join(["rows: true class, columns: predicted class", head, *rows])


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog, description="Evaluate a checkpoint (last/best.safetensors or save_params output) on a test set."
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument(
        "--dataset",
        default=None,
        help="dataset name or directory (default: the bundled dataset the checkpoint was trained on, else mnist); "
        "only its test split is read",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'gpu' or 'gpu:N'")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument("--test-size", type=int, default=None, metavar="N", help="only the first N test samples")
    add_engine_argument(p)
    args = p.parse_args(argv)
    check_engine(args.engine, args.device)
    if args.batch_size < 1 or (args.test_size is not None and args.test_size < 1):
        raise UsageError(
            f"--batch-size/--test-size: expected positive integers, got {args.batch_size}, {args.test_size}"
        )
    ckpt = checkpoint_arg(args.checkpoint)
    device = device_arg(args.device)
    dataset, why = choose_dataset(args.dataset, ckpt.run.get("dataset"))
    try:
        x, t = load_split(dataset, "test", ckpt.dataset_options())
    except (ValueError, FileNotFoundError) as exc:
        raise flag_error("--dataset", exc) from None
    preprocess = ckpt.preprocess
    if args.test_size:
        x, t = x[: args.test_size], t[: args.test_size]
    model = ckpt.build_model(device=device)
    expected = model.input_dim
    if expected is not None and tuple(x.shape[1:]) != tuple(expected):
        raise UsageError(
            f"--dataset: images of shape {tuple(x.shape[1:])} in {dataset} do not fit this network's input {tuple(expected)}"
        )
    host_dtype = numpy.dtype(float_dtype_name(model.dtype))
    if args.engine == "cnn_xp":
        batches = (
            (
                to_device(preprocess.apply_host(x[i : i + args.batch_size], host_dtype), model.device),
                to_device(numpy.ascontiguousarray(t[i : i + args.batch_size], dtype=numpy.int64), model.device),
            )
            for i in range(0, x.shape[0], args.batch_size)
        )
        try:
            tally = model.tally(batches, keep_predicted=True)
        except ValueError as exc:  # labels outside the network's classes, images it cannot take
            raise UsageError(f"--dataset: {dataset} does not fit this network: {exc}") from None
        pred, classes, where = numpy.concatenate([to_numpy(p) for p in tally.predicted]), tally.classes, str(device)
    else:
        scores, where = scorer(model, args.engine, args.device)
        parts = [
            scores(preprocess.apply_host(x[i : i + args.batch_size], host_dtype))
            for i in range(0, len(x), args.batch_size)
        ]
        classes = int(parts[0].shape[1])
        if t.size and (int(t.min()) < 0 or int(t.max()) >= classes):
            raise UsageError(f"--dataset: {dataset} has labels outside this network's {classes} classes")
        pred = numpy.concatenate([numpy.argmax(s, axis=1) for s in parts])
    hits = int(numpy.count_nonzero(pred == t))
    print(f"checkpoint: {args.checkpoint}  dataset: {dataset} ({why})  device: {where}")
    print(f"test accuracy: {hits / t.shape[0]:.2%} ({hits}/{t.shape[0]})")
    names = ckpt.class_names(classes) or class_names(str(dataset), classes, ckpt.dataset_options())
    print(format_matrix(confusion_matrix(t, pred, classes), names))
    return 0


def choose_dataset(given: str | None, trained_on: object) -> tuple[str, str]:
    """The dataset to evaluate on and why: the one given, else the bundled one the checkpoint
    names, else MNIST. A checkpoint's metadata never picks a path to open: a directory it
    names is only mentioned."""
    if given is not None:
        return given, "given"
    if isinstance(trained_on, str) and trained_on.strip().lower() in NAMES:
        return trained_on, "the bundled dataset the checkpoint was trained on"
    if isinstance(trained_on, str) and trained_on:
        return "mnist", f"the default; the checkpoint was trained on {trained_on!r}: pass --dataset to use it"
    return "mnist", "the default"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
