"""Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (IDX files; no download)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy

from .idx import is_idx_directory, load_idx_directory, load_idx_split

Split = tuple[numpy.ndarray, numpy.ndarray]
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
ENV = "CNN_XP_FASHION_MNIST"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
INSTALL_HINT = (
    "install it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or set "
    f"{ENV} (or pass --dataset PATH) to a directory holding the four *-ubyte[.gz] IDX files"
)


def _dpkg_location() -> Path | None:
    """Where dpkg says the package put its IDX files, if it is installed."""
    if shutil.which("dpkg") is None:
        return None
    try:
        out = subprocess.run(
            ["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.splitlines():
        if line.endswith("train-images-idx3-ubyte.gz") or line.endswith("train-images-idx3-ubyte"):
            return Path(line).parent
    return None


def find_fashion_mnist() -> Path:
    """The Fashion-MNIST directory: ``$CNN_XP_FASHION_MNIST``, Debian's location, or what
    ``dpkg -L dataset-fashion-mnist`` reports. Raises FileNotFoundError saying how to install it."""
    candidates = [Path(os.environ[ENV])] if os.environ.get(ENV) else []
    candidates.append(DEBIAN_DIR)
    for c in candidates:
        if is_idx_directory(c):
            return c
    found = _dpkg_location()
    if found is not None and is_idx_directory(found):
        return found
    raise FileNotFoundError(
        f"Fashion-MNIST not found (looked in {', '.join(map(str, candidates))} and dpkg); {INSTALL_HINT}"
    )


def load_fashion_mnist(
    normalize: bool = True, flatten: bool = False, one_hot_label: bool = False
) -> tuple[Split, Split]:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017; MIT licence), like :func:`load_mnist`."""
    return load_idx_directory(find_fashion_mnist(), normalize, flatten, one_hot_label)


def load_fashion_mnist_test(normalize: bool = True) -> Split:
    """Only the test split of Fashion-MNIST."""
    return load_idx_split(find_fashion_mnist(), "test", normalize)
