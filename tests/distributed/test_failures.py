"""One failure stops every rank, quickly: a rank that fails before training, ranks started with
different settings, and a rank that stalls. Each ends the whole job within seconds, with one
line naming the rank and why. Run with mpirun -n 2; skipped, with the reason, without it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
try:
    import mpi4py  # noqa: F401

    MPI_MISSING = None if shutil.which("mpirun") or shutil.which("mpiexec") else "no mpirun on PATH (pip install mpich)"
except ImportError:
    MPI_MISSING = "mpi4py is not installed: pip install 'cnn_xp[mpi]' mpich"
needs_mpirun = pytest.mark.skipif(MPI_MISSING is not None, reason=MPI_MISSING or "")

JOBS = HERE / "mpi_jobs.py"
ARGS = ["--distributed", "--device", "cpu", "--train-size", "400", "--test-size", "100", "--epochs", "1", "--quiet"]


def mpirun(*args, **kwargs):
    from .test_launch import mpirun as launch

    return launch(*args, **kwargs)


def own_lines(stderr):
    from .test_launch import own_lines as lines

    return lines(stderr)


def run_differing(tmp_path, *extra, timeout=60):
    start = time.monotonic()
    result = mpirun(
        2, JOBS, "rank_1_differs", *map(str, extra), "--", *ARGS, "--out", tmp_path / "run", timeout=timeout
    )
    return result, time.monotonic() - start


@pytest.mark.slow
@needs_mpirun
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--resume", "/no/such/last.safetensors"], "error on rank 1: --resume: no such checkpoint file"),
        (["--dataset", "/no/such/dataset"], "error on rank 1: --dataset: unknown dataset '/no/such/dataset'"),
        (["--epoch", "3"], "error on rank 1: unrecognized arguments: --epoch 3"),
    ],
    ids=["resume path", "dataset on one node only", "bad flag"],
)
def test_a_rank_failing_before_training_stops_every_rank(tmp_path, extra, words):
    result, seconds = run_differing(tmp_path, *extra)
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and "Traceback" not in result.stderr
    assert len([line for line in own_lines(result.stderr) if "error" in line]) == 1
    assert seconds < 30  # within seconds, not a hang
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@needs_mpirun
@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--seed", "1"], "rank 1 has seed 1 where rank 0 has 0"),
        (["--model", "deep"], "rank 1 has model 'deep' where rank 0 has 'simple'"),
        (["--dtype", "float64"], "rank 1 has dtype 'float64' where rank 0 has 'float32'"),
        (["--save-every", "1"], "rank 1 has save_every 1 where rank 0 has 0"),  # once a deadlock until the timeout
    ],
    ids=["seed", "model", "dtype", "checkpoint interval"],
)
def test_ranks_started_with_different_settings_all_exit_2(tmp_path, extra, words):
    result, seconds = run_differing(tmp_path, *extra)
    assert result.returncode == 2, result.stderr
    lines = own_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "the ranks were started with different settings" in lines[0] and words in lines[0]
    assert seconds < 30


@pytest.mark.slow
@needs_mpirun
def test_ranks_resuming_from_different_checkpoints_of_one_run_all_exit_2(tmp_path):
    """(Each rank would have run its own number of steps: a deadlock until the collective timeout.)"""
    from cnn_xp.cli.train import main as train_main

    single = [a for a in ARGS if a != "--distributed"]
    assert train_main([*single, "--out", str(tmp_path / "one")]) == 0
    shutil.copy(tmp_path / "one" / "last.safetensors", tmp_path / "epoch1.safetensors")
    assert train_main(["--resume", str(tmp_path / "one" / "last.safetensors"), "--epochs", "2", "--quiet"]) == 0
    result = mpirun(
        2, JOBS, "rank_1_differs", "--resume", tmp_path / "one" / "last.safetensors", "--",
        *ARGS, "--epochs", "3", "--resume", tmp_path / "epoch1.safetensors", "--out", tmp_path / "run", timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "rank 1 has resumed_at_step 8 where rank 0 has 4" in result.stderr


@pytest.mark.slow
@needs_mpirun
def test_a_stalled_rank_ends_the_job_after_the_collective_timeout(tmp_path):
    start = time.monotonic()
    result = mpirun(
        2, JOBS, "stall_rank_1", *ARGS[:-3], "--epochs", "5", "--collective-timeout", "3", "--out", tmp_path, timeout=90
    )
    assert result.returncode != 0
    assert "rank 0: no answer from the other ranks for 3 s in an all-reduce" in result.stderr
    assert time.monotonic() - start < 60


def test_start_together_names_the_failing_rank_or_the_differing_settings(monkeypatch, capsys):
    """The decision every rank takes from the gathered statuses (here handed in, as MPI would)."""
    from cnn_xp import distributed
    from cnn_xp.train.startup import JobStopped, start_together

    run = {"model": "simple", "seed": 0}
    gathered = [{"ok": True, "run": run}, {"ok": False, "code": 2, "message": "--resume: no such checkpoint file: x"}]
    monkeypatch.setattr(distributed, "agree", lambda status: gathered)
    with pytest.raises(JobStopped) as stop:
        start_together(gathered[0], "cnn_xp train")
    assert stop.value.code == 2
    assert capsys.readouterr().err == "cnn_xp train: error on rank 1: --resume: no such checkpoint file: x\n"
    gathered[1] = {"ok": True, "run": {**run, "seed": 1}}
    with pytest.raises(JobStopped):
        start_together(gathered[0], "cnn_xp train")
    assert "rank 1 has seed 1 where rank 0 has 0" in capsys.readouterr().err
    gathered[1] = {"ok": True, "run": dict(run)}
    start_together(gathered[0], "cnn_xp train")  # all ready, same settings: go on
    assert capsys.readouterr().err == ""
