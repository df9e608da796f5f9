"""scripts/headline_runs.py, which re-measures the README's figures, runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "headline_runs.py"


def run(*args, cwd):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.slow
def test_quick_run_prints_the_summary_and_epoch_tables(tmp_path):
    result = run("--quick", "--runs", "simple", "--out", str(tmp_path / "h"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    row = next(line for line in lines if line.startswith("| SimpleConvNet, the defaults |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1] == "`python -m cnn_xp.train --device cpu`"  # the README's command, as documented
    assert cells[2].endswith("%)") and cells[4].endswith("images/s") and cells[6].endswith("MiB")
    assert "| epoch | train loss | train acc | test acc | seconds | img/s |" in lines
    assert (tmp_path / "h" / "headline.md").read_text().strip() == result.stdout.strip()


def test_unknown_runs_are_refused(tmp_path):
    result = run("--runs", "simple,huge", cwd=tmp_path)
    assert result.returncode == 2 and "--runs: unknown ['huge']" in result.stderr
    assert list(tmp_path.iterdir()) == []
