"""A folder of generated images to try the image-folder path on: coloured shapes (circle,
square, triangle, cross) of random colour, size and place on a random background, some grey,
in mixed sizes and formats -- what ``examples/own_images.py``, the tests and the image-folder
benchmark write.  ``python -m cnn_xp.datasets.shapes DIR`` writes one."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy

CLASSES = ("circle", "cross", "square", "triangle")
FORMATS = ("png", "jpg", "bmp", "webp", "gif", "PNG")


def shape_image(kind: str, size: int, rng: numpy.random.Generator, colour: bool = True) -> numpy.ndarray:
    """One (size, size, 3) uint8 image of a ``kind`` shape, or (size, size) grey when not ``colour``."""
    yy, xx = numpy.mgrid[:size, :size].astype(numpy.float64)
    cy, cx = rng.uniform(0.35, 0.65, 2) * size
    r = rng.uniform(0.18, 0.32) * size
    if kind == "circle":
        mask = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    elif kind == "square":
        mask = (abs(yy - cy) < r * 0.8) & (abs(xx - cx) < r * 0.8)
    elif kind == "cross":
        mask = ((abs(yy - cy) < r * 0.25) & (abs(xx - cx) < r)) | ((abs(xx - cx) < r * 0.25) & (abs(yy - cy) < r))
    else:  # triangle, point up
        mask = (yy > cy - r) & (yy < cy + r * 0.8) & (abs(xx - cx) < (yy - (cy - r)) * 0.6)
    background = rng.integers(0, 90, 3)
    image = numpy.empty((size, size, 3), numpy.float64)
    image[...] = background
    image += rng.normal(0, 12, image.shape)
    image[mask] = rng.integers(130, 256, 3)
    image = numpy.clip(image, 0, 255).astype(numpy.uint8)
    return image if colour else image.mean(axis=2).astype(numpy.uint8)


def write_shapes_folder(
    root: str | os.PathLike[str],
    per_class: int = 100,
    size: int = 32,
    seed: int = 0,
    split: bool = False,
    mixed: bool = True,
) -> Path:
    """Write ``per_class`` images of each shape under ``root/<class>/`` (or ``root/train|test/<class>/``
    with ``split``, a fifth in test).  ``mixed``: every fifth image grey, every seventh larger,
    the formats cycling through PNG, JPEG, BMP, WebP, GIF; else PNGs of ``size``.  Returns ``root``."""
    from PIL import Image

    root = Path(root)
    rng = numpy.random.default_rng(seed)
    for kind in CLASSES:
        for i in range(per_class):
            folder = root / (("test" if i % 5 == 4 else "train") if split else "") / kind
            folder.mkdir(parents=True, exist_ok=True)
            grey, big = mixed and i % 5 == 0, mixed and i % 7 == 0
            image = Image.fromarray(shape_image(kind, size + (size // 4 if big else 0), rng, colour=not grey))
            ext = FORMATS[i % len(FORMATS)] if mixed else "png"
            image.save(folder / f"{kind}{i:05d}.{ext}")
    return root


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python -m cnn_xp.datasets.shapes DIR [IMAGES_PER_CLASS]")
    write_shapes_folder(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 100)
