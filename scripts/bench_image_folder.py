"""How long a folder of images takes to become a dataset: the first start (every file decoded
into the cache) and the second (the cache read), each in a fresh process.

python scripts/bench_image_folder.py                      # 50,000 32x32 PNGs under /tmp/cnn_xp_images
python scripts/bench_image_folder.py --images 5000 --dir /tmp/small

The images are written once (cnn_xp.datasets.shapes: four classes of coloured shapes, PNG); the
cache of an earlier run of this script is removed first, so the first start decodes everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from cnn_xp.cli.bench import cpu_description

TIMED = """
import json, sys, time
start = time.perf_counter()
from cnn_xp.datasets import load_image_folder
folder = load_image_folder(sys.argv[1])
x, t = folder.splits["train"]
first = int(x[0].sum())  # a pixel read: the data is there
print(json.dumps({"seconds": time.perf_counter() - start, "from_cache": folder.from_cache,
                  "train": int(x.shape[0]), "test": int(folder.splits["test"][0].shape[0]), "shape": list(x.shape[1:])}))
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=50_000, help="images in all (a quarter per class)")
    p.add_argument("--dir", type=Path, default=Path("/tmp/cnn_xp_images"))
    args = p.parse_args()
    from cnn_xp.datasets.shapes import CLASSES, write_shapes_folder

    per_class = args.images // len(CLASSES)
    marker = args.dir / f".written-{per_class}"
    if not marker.exists():
        shutil.rmtree(args.dir, ignore_errors=True)
        start = time.perf_counter()
        write_shapes_folder(args.dir, per_class=per_class, size=32, mixed=False)
        marker.write_text("")
        print(f"wrote {per_class * len(CLASSES)} PNGs in {time.perf_counter() - start:.0f} s")
    shutil.rmtree(args.dir / ".cnn_xp_cache", ignore_errors=True)
    rows = []
    for name in ("first start", "second start"):
        out = subprocess.run([sys.executable, "-c", TIMED, str(args.dir)], capture_output=True, text=True, check=True)
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((name, row))
        print(f"{name}: {row['seconds']:.2f} s (from the cache: {row['from_cache']}; {row['train']} train + "
              f"{row['test']} test images of {row['shape']})")  # fmt: skip
    cache = sum(f.stat().st_size for f in (args.dir / ".cnn_xp_cache").rglob("*") if f.is_file())
    print(f"cache: {cache / 2**20:.0f} MiB; measured on {cpu_description()}, {len(os.sched_getaffinity(0))} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
