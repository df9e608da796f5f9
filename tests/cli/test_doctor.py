"""``python -m cnn_xp.doctor``: the report a user pastes into a bug report, and its exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FAKE = Path(__file__).parents[1] / "gpu_model" / "fake"  # the CuPy test double (two GPUs)


def doctor(*argv: str, fake_gpu: bool = False, matmul_error: float = 0.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "CNN_XP_DEVICE"}
    if fake_gpu:
        env["PYTHONPATH"] = os.pathsep.join([str(FAKE), env.get("PYTHONPATH", "")])
        env["FAKE_CUPY_MATMUL_ERROR"] = str(matmul_error)
    return subprocess.run(
        [sys.executable, "-m", "cnn_xp.doctor", *argv], env=env, capture_output=True, text=True, timeout=600
    )


def rows(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith(("PASS", "FAIL"))]


@pytest.mark.slow
def test_without_a_gpu_says_so_in_one_line_and_checks_the_cpu():
    proc = doctor()
    if "no GPU checked" not in proc.stdout:
        pytest.skip("this machine has a usable GPU: the GPU report is tested on the CuPy double below")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum("no GPU checked" in line for line in proc.stdout.splitlines()) == 1
    assert "cnn_xp" in proc.stdout and "NumPy" in proc.stdout and "CuPy" in proc.stdout
    from cnn_xp.cli.doctor import _cases

    table = rows(proc.stdout)
    layers = len(_cases())
    assert len(table) == layers + 1 and all(r.startswith("PASS") for r in table)  # each layer in float32, the run
    assert any("100-step training on cpu" in r and "img/s" in r for r in table)
    assert proc.stdout.rstrip().endswith(f"{layers + 1} passed, 0 failed")


@pytest.mark.slow
def test_a_gpu_asked_for_but_not_usable_exits_2_after_checking_the_cpu():
    proc = doctor("--device", "gpu")
    if "no GPU checked" not in proc.stdout:
        pytest.skip("this machine has a usable GPU")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert all(r.startswith("PASS") for r in rows(proc.stdout)) and rows(proc.stdout)
    assert proc.stdout.rstrip().endswith("0 failed; gpu not checked: not usable")


@pytest.mark.slow
def test_on_a_gpu_every_layer_both_networks_and_a_training_run_agree():
    proc = doctor("--device", "gpu:1", fake_gpu=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gpu:1  Fake GPU 1  16.0 GiB" in proc.stdout and "CUDA runtime" in proc.stdout
    from cnn_xp.cli.doctor import NETWORKS, _cases

    table = rows(proc.stdout)
    checks = len(_cases()) + len(NETWORKS)  # in each dtype, then a run on each device and their comparison
    assert len(table) == 2 * checks + 3 and all(r.startswith("PASS") for r in table), table
    assert sum("GPU vs CPU float64" in r for r in table) == checks
    assert any("training run, GPU vs CPU" in r and "speed GPU/CPU" in r for r in table)


@pytest.mark.slow
def test_a_gpu_that_computes_wrong_fails_with_exit_status_1():
    proc = doctor("--device", "gpu:1", fake_gpu=True, matmul_error=1e-3)  # products 0.1% off
    assert proc.returncode == 1, proc.stdout + proc.stderr
    failed = [r for r in rows(proc.stdout) if r.startswith("FAIL")]
    assert any(r.startswith("FAIL  Affine (GPU vs CPU float32)") for r in failed)
    assert any("SimpleConvNet loss and gradients" in r for r in failed)
    assert "failed" in proc.stdout.splitlines()[-1] and not proc.stdout.splitlines()[-1].endswith(" 0 failed")


def test_versions_name_cnn_xp_and_what_it_runs_on():
    from cnn_xp import __version__
    from cnn_xp.cli.doctor import versions

    rows = dict(versions())
    assert rows["cnn_xp"] == __version__ and rows["NumPy"] and "CuPy" in rows and "mpi4py" in rows
    from cnn_xp.threads import blas_description

    assert rows["BLAS"] == blas_description()  # the kernels the BLAS chose: a forced old one is slow


def test_versions_say_whether_the_c_transforms_run(monkeypatch):
    from cnn_xp.cli.doctor import versions
    from cnn_xp.functions import native
    from cnn_xp.functions.fast_paths import numpy_kernels

    if native.available():
        assert dict(versions())["C kernels"] == "built, in use"
        with numpy_kernels():
            assert dict(versions())["C kernels"] == "built, turned off (CNN_XP_NATIVE=0 or numpy_kernels())"
    monkeypatch.setattr(native, "_library", lambda: None)
    assert dict(versions())["C kernels"] == "not built (the NumPy passes run instead)"


def test_device_must_be_a_gpu_in_one_line(capsys):
    from cnn_xp.cli.doctor import main

    assert main(["--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device: expected 'gpu', 'gpu:N' or 'auto'" in err[0]


def test_the_doctor_checks_every_registered_layer_type():
    from cnn_xp.cli.doctor import _cases
    from cnn_xp.layers import LAYER_TYPES

    checked = {type(case("cpu", "float32")[0]).__name__ for case in _cases().values()}
    assert checked == set(LAYER_TYPES)
