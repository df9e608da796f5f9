"""``python -m cnn_xp.evaluate CHECKPOINT``: test accuracy and the confusion matrix of a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy

from ..backend import to_device, to_numpy
from ..classes import class_names
from ..datasets import load_dataset
from ..layers import no_grad
from .common import OneLineParser, UsageError, checkpoint_arg, device_arg, flag_error, run_command

PROG = "python -m cnn_xp.evaluate"


def confusion_matrix(t: numpy.ndarray, pred: numpy.ndarray, num_classes: int) -> numpy.ndarray:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    m = numpy.zeros((num_classes, num_classes), dtype=numpy.int64)
    numpy.add.at(m, (t.astype(numpy.int64), pred.astype(numpy.int64)), 1)
    return m


def format_matrix(m: numpy.ndarray, names: list[str]) -> str:
    width = max(5, len(str(int(m.max()))) + 1)
    short = [n[:width] for n in names]
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
        help="dataset name or directory (default: the one the checkpoint was trained on, else mnist)",
    )
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'gpu' or 'gpu:N'")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size")
    p.add_argument("--test-size", type=int, default=None, metavar="N", help="only the first N test samples")
    args = p.parse_args(argv)
    if args.batch_size < 1 or (args.test_size is not None and args.test_size < 1):
        raise UsageError(
            f"--batch-size/--test-size: expected positive integers, got {args.batch_size}, {args.test_size}"
        )
    ckpt = checkpoint_arg(args.checkpoint)
    device = device_arg(args.device)
    dataset = args.dataset or ckpt.run.get("dataset", "mnist")
    try:
        _, (x, t) = load_dataset(dataset, normalize=True)
        model = ckpt.build_model(device=device)
    except (ValueError, FileNotFoundError) as exc:
        raise flag_error("--dataset", exc) from None
    if args.test_size:
        x, t = x[: args.test_size], t[: args.test_size]
    expected = tuple(ckpt.model_config.get("kwargs", {}).get("input_dim", x.shape[1:]))
    if tuple(x.shape[1:]) != expected:
        raise UsageError(f"--dataset: images of shape {x.shape[1:]} do not fit this network's input {expected}")
    model.eval()
    preds = []
    for i in range(0, x.shape[0], args.batch_size):
        xb = to_device(
            numpy.ascontiguousarray(x[i : i + args.batch_size]).astype(
                numpy.dtype(str(model.dtype).rsplit(".", 1)[-1])
            ),
            model.device,
        )
        with no_grad():
            preds.append(to_numpy(model.predict(xb).argmax(axis=1)))
    pred = numpy.concatenate(preds)
    num_classes = int(ckpt.model_config.get("kwargs", {}).get("output_size", 10))
    acc = float(numpy.mean(pred == t))
    print(f"checkpoint: {args.checkpoint}  dataset: {dataset}  device: {device}")
    print(f"test accuracy: {acc:.2%} ({int(numpy.sum(pred == t))}/{t.shape[0]})")
    print(format_matrix(confusion_matrix(t, pred, num_classes), class_names(str(dataset), num_classes)))
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
