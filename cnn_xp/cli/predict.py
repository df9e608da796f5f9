"""``python -m cnn_xp.predict CHECKPOINT IMAGE...``: classify PNG/JPEG images with a checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy

from ..backend import to_device, to_numpy
from ..checks import float_dtype_name
from ..datasets import class_names
from ..functions import softmax
from ..layers import no_grad
from .common import OneLineParser, UsageError, checkpoint_arg, device_arg, run_command

PROG = "python -m cnn_xp.predict"


def load_image(path: Path, input_dim: tuple[int, int, int], invert: str) -> numpy.ndarray:
    """Read an image with Pillow as (C, H, W) float32 in [0, 1], resized to the network's input.

    MNIST-style data is a light digit on a dark background; with ``invert='auto'`` an image
    whose mean is above 0.5 (dark ink on white paper) is inverted.
    """
    from PIL import Image, UnidentifiedImageError

    c, h, w = input_dim
    try:
        with Image.open(path) as opened:
            img = opened.convert("L" if c == 1 else "RGB").resize((w, h), Image.Resampling.BILINEAR)
            a = numpy.asarray(img, dtype=numpy.float32) / 255.0
    except (OSError, UnidentifiedImageError) as exc:
        raise UsageError(f"IMAGE: cannot read {path}: {exc}") from None
    a = a[None] if c == 1 else a.transpose(2, 0, 1)
    if invert == "yes" or (invert == "auto" and float(a.mean()) > 0.5):
        a = 1.0 - a
    return a


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(prog=prog, description="Classify images (PNG, JPEG, ... via Pillow) with a trained checkpoint.")
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGE")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'gpu' or 'gpu:N'")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert grey levels (MNIST digits are white on black)",
    )
    args = p.parse_args(argv)
    ckpt = checkpoint_arg(args.checkpoint)
    device = device_arg(args.device)
    model = ckpt.build_model(device=device).eval()
    input_dim = model.input_dim
    if input_dim is None or len(input_dim) != 3:
        raise UsageError(
            f"CHECKPOINT: {args.checkpoint} does not record an image input (C, H, W) (got {input_dim}); "
            "images cannot be fitted to it"
        )
    batch = numpy.stack([load_image(path, input_dim, args.invert) for path in args.images])  # type: ignore[arg-type]
    x = to_device(batch.astype(float_dtype_name(model.dtype)), model.device)
    try:
        with no_grad():
            probs = to_numpy(softmax(model.predict(x)))
    except ValueError as exc:
        raise UsageError(
            f"CHECKPOINT: {args.checkpoint}: the network cannot take {tuple(batch.shape[1:])} images: {exc}"
        ) from None
    names = class_names(str(ckpt.run.get("dataset", "mnist")), int(probs.shape[1]))
    for path, row in zip(args.images, probs, strict=True):
        k = int(numpy.argmax(row))
        print(f"{path}: {names[k]} (class {k}) p={row[k]:.4f}")
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
