"""Re-run the training runs whose figures the README quotes, and print their table.

    python scripts/headline_runs.py                       # simple (~1 min), mpi (~1 min), deep (~5 min)
    python scripts/headline_runs.py --runs fashion        # ResNet-20 (~40 min) and DeepConvNet (~5 min) on Fashion-MNIST
    python scripts/headline_runs.py --runs simple,mpi     # a subset
    python scripts/headline_runs.py --quick               # tiny sizes: checks the script, figures mean nothing

Each run is the README's command in a fresh process, timed from start to its final line (wall
clock), with the peak RSS of that process (of the largest rank for MPI). The output is Markdown:
the summary table for README.md and, per run, the per-epoch table for docs/benchmarks.md, under
one "measured on" line naming the machine.
Results are also written to OUT/headline.md.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cnn_xp.cli.bench import cpu_description
from cnn_xp.threads import blas_description

TRAIN = [sys.executable, "-m", "cnn_xp.train", "--device", "cpu"]


@dataclass
class Run:
    name: str
    title: str
    command: list[str]  # without --out; the documented form drops the interpreter path
    processes: int = 1


RUNS = {
    "simple": Run("simple", "SimpleConvNet, the defaults", TRAIN),
    "deep": Run(
        "deep",
        "DeepConvNet (book ch. 8)",
        [*TRAIN, "--model", "deep", "--epochs", "12", "--lr", "0.002", "--lr-schedule", "cosine", "--shift", "0"],
    ),
    "resnet-fashion": Run(
        "resnet-fashion",
        "ResNet-20 on Fashion-MNIST",
        [
            *TRAIN,
            "--model",
            "resnet20",
            "--dataset",
            "fashion-mnist",
            "--epochs",
            "20",
            "--optimizer",
            "momentum",
            "--lr",
            "0.1",
            "--weight-decay",
            "5e-4",
            "--augment",
            "--shift",
            "0",
        ],
    ),
    "deep-fashion": Run(
        "deep-fashion",
        "DeepConvNet on Fashion-MNIST",
        [*TRAIN, "--model", "deep", "--dataset", "fashion-mnist", "--epochs", "12", "--lr", "0.002", "--shift", "0"],
    ),
    "mpi1": Run(
        "mpi1",
        "SimpleConvNet, 12000 images, 1 process, 1 thread",
        [*TRAIN, "--train-size", "12000", "--test-size", "2000", "--epochs", "2", "--threads", "1"],
    ),
    "mpi2": Run(
        "mpi2",
        "SimpleConvNet, 12000 images, 2 MPI processes, 1 thread each",
        [
            "mpirun",
            "-n",
            "2",
            *TRAIN,
            "--distributed",
            "--train-size",
            "12000",
            "--test-size",
            "2000",
            "--epochs",
            "2",
            "--threads",
            "1",
        ],
        processes=2,
    ),
}
GROUPS = {
    "simple": ["simple"],
    "deep": ["deep"],
    "mpi": ["mpi1", "mpi2"],
    "fashion": ["resnet-fashion", "deep-fashion"],
}
QUICK = ["--train-size", "500", "--test-size", "200", "--epochs", "1"]


def shown(command: list[str]) -> str:
    return " ".join("python" if part == sys.executable else part for part in command)


def run_one(run: Run, out: Path, quick: bool) -> dict:
    command = [*run.command, "--out", str(out), *(QUICK if quick else [])]  # a repeated flag: the last wins
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS (kB on Linux)
    wall = time.perf_counter() - start
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{run.name}: exit {proc.returncode}\n{stderr[-2000:]}")
    acc = re.search(r"final test accuracy: ([\d.]+)%\s+\(best ([\d.]+)%\)", stdout)
    threads = re.search(r"threads: (\d+)", stderr)
    speed = re.search(r"training throughput: (\d+) images/s", stdout)
    if acc is None or speed is None:
        raise SystemExit(f"{run.name}: unexpected output\n{stdout}")
    with open(out / "metrics.csv", newline="") as f:
        epochs = list(csv.DictReader(f))
    rss = usage.ru_maxrss / 1024  # MiB; for mpirun: the largest process it waited for
    return {
        "run": run,
        "command": shown(run.command),
        "acc": float(acc.group(1)),
        "best": float(acc.group(2)),
        "speed": int(speed.group(1)),
        "threads": threads.group(1) if threads else "?",
        "wall": wall,
        "rss": rss,
        "epochs": epochs,
    }


def minutes(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def report(results: list[dict]) -> str:
    lines = [
        f"Measured on {cpu_description()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"NumPy on {blas_description()}, {datetime.now():%Y-%m-%d}.",
        "",
        "| run | command | test accuracy | wall clock | training speed | BLAS threads | peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['run'].title} | `{r['command']}` | {r['acc']:.2f}% (best {r['best']:.2f}%) | {minutes(r['wall'])} "
            f"| {r['speed']} images/s | {r['threads']} | {r['rss']:.0f} MiB |"
        )
    for r in results:
        lines += ["", f"{r['run'].title} (`{r['command']}`):", ""]
        lines += ["| epoch | train loss | train acc | test acc | seconds | img/s |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
        for e in r["epochs"]:
            lines.append(
                f"| {e['epoch']} | {float(e['loss']):.4f} | {100 * float(e['train_acc']):.2f}% | "
                f"{100 * float(e['test_acc']):.2f}% | {float(e['seconds']):.1f} | {float(e['images_per_s']):.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    p.add_argument("--runs", default="simple,mpi,deep", help=f"comma-separated, from {list(GROUPS)}")
    p.add_argument("--out", type=Path, default=None, help="folder for the runs (default: runs/headline-<time>)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, to check the script itself")
    args = p.parse_args(argv)
    groups = [g for g in args.runs.split(",") if g]
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        p.error(f"--runs: unknown {unknown}; expected names from {list(GROUPS)}")
    if "mpi" in groups and shutil.which("mpirun") is None:
        p.error("--runs mpi: no mpirun on PATH (pip install 'cnn_xp[mpi]' mpich)")
    out = args.out or Path("runs") / f"headline-{datetime.now():%Y%m%d-%H%M%S}"
    results = []
    for group in groups:
        for name in GROUPS[group]:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results.append(run_one(RUNS[name], out / name, args.quick))
    text = report(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "headline.md").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
