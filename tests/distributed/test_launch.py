"""Distributed training launched with mpirun: equivalence with one process, broadcast,
failure handling, checkpoint interoperability. Skipped, with the reason, without mpi4py/mpirun."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_xp.train import load_checkpoint

pytest.importorskip("mpi4py", reason="mpi4py is not installed: pip install 'cnn_xp[mpi]' mpich")
MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIRUN is None, reason="no mpirun on PATH (pip install mpich)")
HERE = Path(__file__).resolve().parent
# Open MPI's mpirun refuses to start as root (a container's usual user) unless told twice; MPICH
# ignores both variables.
ENV = {
    **os.environ,
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
}
BASE = ["--device", "cpu", "--test-size", "200", "--dtype", "float64", "--lr-schedule", "constant", "--quiet"]
# Equivalence tolerance: the 2-rank run sums two half-batch gradients where one process sums
# the whole batch, so results differ by float64 round-off only: relative 1e-12 (measured ~1e-14).
RTOL = 1e-12


def mpirun(n, *args, timeout=180):
    return subprocess.run(
        [MPIRUN, "-n", str(n), sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def own_lines(stderr: str) -> list[str]:
    """The non-blank lines of ``stderr`` written by the job's processes: Open MPI's mpirun adds
    notices of its own, framed by lines of dashes, when a rank exits non-zero (MPICH's adds none)."""
    lines, framed = [], False
    for line in stderr.splitlines():
        if line.startswith("-----"):
            framed = not framed
        elif not framed and line.strip():
            lines.append(line)
    return lines


def single(*args, timeout=180):
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV, check=False
    )


def weights(path):
    return load_checkpoint(path).model_state


def max_rel_diff(a, b):
    return max(float(np.max(np.abs(a[k] - b[k])) / max(float(np.max(np.abs(a[k]))), 1e-300)) for k in a)


@pytest.mark.slow
def test_collectives_under_mpirun():
    result = mpirun(2, "-m", "pytest", "-q", "-p", "no:cacheprovider", HERE / "mpi_collectives.py")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("7 passed") == 2 and "skipped" not in result.stdout  # both ranks ran all of them


@pytest.mark.parametrize(
    ("train_size", "batch"),
    [(400, 100), (401, 100), (300, 75)],
    ids=["even", "last batch of 1: one rank empty", "odd slices"],
)
@pytest.mark.slow
def test_two_ranks_equal_one_process(tmp_path, train_size, batch):
    args = [*BASE, "--train-size", train_size, "--batch-size", batch, "--epochs", "2"]
    one = single("-m", "cnn_xp.train", *args, "--out", tmp_path / "one")
    two = mpirun(2, "-m", "cnn_xp.train", "--distributed", *args, "--out", tmp_path / "two")
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert two.stdout.count("final test accuracy") == 1  # rank 0 alone reports
    assert (
        max_rel_diff(weights(tmp_path / "one" / "last.safetensors"), weights(tmp_path / "two" / "last.safetensors"))
        < RTOL
    )
    m1 = (tmp_path / "one" / "metrics.csv").read_text().splitlines()[1].split(",")
    m2 = (tmp_path / "two" / "metrics.csv").read_text().splitlines()[1].split(",")
    assert m1[3] == m2[3] and m1[5] == m2[5]  # train and test accuracy, reduced over ranks
    assert abs(float(m1[2]) - float(m2[2])) < 1e-12


@pytest.mark.slow
def test_a_failing_rank_brings_the_job_down(tmp_path):
    result = mpirun(
        2,
        HERE / "mpi_jobs.py",
        "--distributed",
        *BASE,
        "--train-size",
        400,
        "--epochs",
        50,
        "--out",
        tmp_path,
        timeout=120,
    )
    assert result.returncode != 0
    assert "error on rank 1: RuntimeError: simulated failure on rank 1" in result.stderr


@pytest.mark.slow
def test_a_non_finite_loss_stops_every_rank(tmp_path):
    args = [
        *BASE,
        "--dtype",
        "float32",
        "--train-size",
        400,
        "--epochs",
        50,
        "--optimizer",
        "sgd",
        "--lr",
        "1e30",
        "--out",
        tmp_path,
    ]
    result = mpirun(2, "-m", "cnn_xp.train", "--distributed", *args, timeout=120)
    assert result.returncode == 1, result.stderr
    assert result.stderr.count("non-finite loss") == 1  # rank 0 reports once; no rank hangs
    assert "Traceback" not in result.stderr and "RuntimeWarning" not in result.stderr


@pytest.mark.slow
def test_checkpoints_move_between_distributed_and_single_runs(tmp_path):
    args = [*BASE, "--train-size", 300, "--batch-size", 100]
    assert (
        mpirun(2, "-m", "cnn_xp.train", "--distributed", *args, "--epochs", 1, "--out", tmp_path / "a").returncode == 0
    )
    resumed = single(
        "-m",
        "cnn_xp.train",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        2,
        "--resume",
        tmp_path / "a" / "last.safetensors",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(tmp_path / "a" / "last.safetensors").trainer["epoch"] == 2
    assert single("-m", "cnn_xp.train", *args, "--epochs", 1, "--out", tmp_path / "b").returncode == 0
    back = mpirun(
        2,
        "-m",
        "cnn_xp.train",
        "--distributed",
        "--device",
        "cpu",
        "--quiet",
        "--epochs",
        2,
        "--resume",
        tmp_path / "b" / "last.safetensors",
    )
    assert back.returncode == 0, back.stderr
    assert load_checkpoint(tmp_path / "b" / "last.safetensors").trainer["epoch"] == 2


def test_distributed_without_mpi4py_is_one_line_exit_2(tmp_path):
    code = "import sys; sys.modules['mpi4py'] = None; from cnn_xp.cli.train import main; sys.exit(main(['--distributed', '--device', 'cpu']))"
    result = single("-c", code)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--distributed" in lines[0] and "mpi4py" in lines[0] and "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_resnet_trains_over_two_ranks_and_resumes_on_one_process(tmp_path):
    """Gradients are averaged over the ranks; BatchNorm's batch statistics are each rank's own (as
    PyTorch's DistributedDataParallel without SyncBatchNorm), so the run is not the one-process
    run to round-off, but it trains, checkpoints and resumes anywhere."""
    args = ["--device", "cpu", "--model", "resnet20", "--train-size", "200", "--test-size", "100", "--quiet"]
    two = mpirun(2, "-m", "cnn_xp.train", "--distributed", *args, "--batch-size", "50", "--epochs", "1",
                 "--out", tmp_path / "run")  # fmt: skip
    assert two.returncode == 0, two.stdout + two.stderr
    ck = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert ck.model_config["name"] == "ResNet" and ck.trainer["step"] == 4
    one = single("-m", "cnn_xp.train", "--resume", tmp_path / "run" / "last.safetensors", "--epochs", "2", "--quiet")
    assert one.returncode == 0, one.stderr
    assert load_checkpoint(tmp_path / "run" / "last.safetensors").trainer["epoch"] == 2
