"""``cnn_xp predict CHECKPOINT PATH...``: classify image files, and the images in folders.

Every image is prepared as the checkpoint's run prepared its data: converted to the network's
channels, resized to its input size (Pillow's bilinear filter), then scaled and normalised with
the run's own preprocessing.  One line per image: its path, class name, class number and
probability (``--top-k`` for more classes); ``--csv FILE`` writes a table as well.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path

import numpy

from ..checks import float_dtype_name
from ..datasets import class_names
from ..datasets.folder import IMAGE_EXTENSIONS, read_image
from ..functions import softmax
from ..serialization import write_atomically
from .common import OneLineParser, UsageError, check_output_file, checkpoint_arg, device_arg, run_command
from .engines import add_engine_argument, check_engine, scorer

PROG = "python -m cnn_xp.predict"
BATCH = 256


def image_paths(paths: list[Path]) -> list[Path]:
    """The files given, and the image files inside the folders given (recursively, sorted; hidden
    ones left out); UsageError for a path that does not exist."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            seen = set()
            for top, dirs, files in os.walk(path, followlinks=True):
                st = os.stat(top)
                if (st.st_dev, st.st_ino) in seen:  # a symbolic-link loop
                    dirs[:] = []
                    continue
                seen.add((st.st_dev, st.st_ino))
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                found += [
                    Path(top) / f
                    for f in sorted(files)
                    if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")
                ]
        elif path.exists():
            found.append(path)
        else:
            raise UsageError(f"PATH: no such file or folder: {path}")
    return found


def load_image(path: Path, input_dim: tuple[int, int, int], invert: bool) -> numpy.ndarray:
    """uint8 pixels (C, H, W) of an image file for a network of ``input_dim``; ``invert`` turns
    dark ink on white paper into MNIST's light digit on black."""
    c, h, w = input_dim
    pixels = read_image(path, c, (h, w))
    return 255 - pixels if invert else pixels


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog,
        description="Classify images (PNG, JPEG, BMP, WebP, GIF) with a trained checkpoint: files, and every image "
        "in the folders given (recursively), prepared as the checkpoint's run prepared its data.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument("paths", type=Path, nargs="+", metavar="PATH")
    p.add_argument("--device", default="auto", help="'auto', 'cpu', 'gpu' or 'gpu:N'")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="print the K most probable classes of each image")
    p.add_argument("--csv", type=Path, default=None, metavar="FILE", help="also write the predictions as a CSV table")
    p.add_argument(
        "--invert",
        choices=("auto", "yes", "no"),
        default="auto",
        help="invert grey levels; 'auto': for a grey network without per-channel normalisation (the MNIST family, "
        "light digits on black), images that are mostly light",
    )
    add_engine_argument(p)
    args = p.parse_args(argv)
    check_engine(args.engine, args.device)
    if args.csv is not None:
        check_output_file("--csv", args.csv, inputs=[args.checkpoint])
    ckpt = checkpoint_arg(args.checkpoint)
    device = device_arg(args.device)
    model = ckpt.build_model(device=device).eval()
    input_dim = model.input_dim
    if input_dim is None or len(input_dim) != 3:
        raise UsageError(
            f"CHECKPOINT: {args.checkpoint} does not record an image input (C, H, W) (got {input_dim}); "
            "images cannot be fitted to it"
        )
    dtype = float_dtype_name(model.dtype)
    scores, _ = scorer(model, args.engine, args.device)
    classes = int(scores(numpy.zeros((1, *input_dim), dtype=dtype)).shape[1])
    if not 1 <= args.top_k <= classes:
        raise UsageError(f"--top-k: expected an integer in [1, {classes}], got {args.top_k}")
    names = ckpt.class_names(classes) or class_names(str(ckpt.run.get("dataset", "mnist")), classes)
    preprocess = ckpt.preprocess
    mnist_like = input_dim[0] == 1 and not preprocess.mean
    paths = image_paths(args.paths)
    rows: list[list[object]] = []
    failed = 0
    for start in range(0, len(paths), BATCH):
        batch, kept = [], []
        for path in paths[start : start + BATCH]:
            try:
                pixels = load_image(path, input_dim, invert=False)  # type: ignore[arg-type]
            except ValueError as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                failed += 1
                continue
            if args.invert == "yes" or (args.invert == "auto" and mnist_like and float(pixels.mean()) > 127.5):
                pixels = 255 - pixels
            batch.append(pixels)
            kept.append(path)
        if not batch:
            continue
        probs = softmax(scores(preprocess.apply_host(numpy.stack(batch), dtype)))
        for path, row in zip(kept, probs, strict=True):
            best = numpy.argsort(-row, kind="stable")[: args.top_k]
            print(f"{path}: " + ", ".join(f"{names[k]} (class {k}) p={row[k]:.4f}" for k in best))
            rows.append([str(path), *(v for k in best for v in (names[k], int(k), f"{row[k]:.6f}"))])
    if args.csv is not None:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(
            ["path", *(f"{c}{i}" for i in range(1, args.top_k + 1) for c in ("class_name_", "class_", "p_"))]
        )
        writer.writerows(rows)
        try:
            write_atomically(args.csv, text.getvalue().encode())
        except OSError as exc:
            print(f"{prog}: error: could not write {args.csv}: {exc.strerror or exc}", file=sys.stderr)
            return 1
    if not paths:
        raise UsageError(f"PATH: no image files ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, args.paths))}")
    if failed:
        print(f"{prog}: {failed} of {len(paths)} file(s) could not be read (listed above)", file=sys.stderr)
        return 2
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
