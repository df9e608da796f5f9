"""Two runs, one output folder: the second is refused in one line naming the first; the lock dies
with its process; temporary files are unique per writer and only stale ones are swept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cnn_xp.cli.train import main as train_main
from cnn_xp.train.run_lock import LOCK_NAME, RunFolderInUseError, RunLock

RUN = ["--device", "cpu", "--train-size", "1000", "--test-size", "100", "--batch-size", "50", "--quiet"]

HOLD = """
import sys, time
from cnn_xp.train.run_lock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def hold_lock(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_second_run_on_a_locked_folder_refuses_naming_the_other(tmp_path, capsys):
    holder = hold_lock(tmp_path)
    try:
        (tmp_path / "last.safetensors").write_bytes(b"the other run's file")
        assert train_main([*RUN, "--epochs", "1", "--out", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.startswith(
            f"python -m cnn_xp.train: error: --out: {tmp_path} is in use by another run (process {holder.pid}"
        )
        assert (tmp_path / "last.safetensors").read_bytes() == b"the other run's file"  # untouched
    finally:
        holder.kill()
        holder.wait()
    # the lock died with its process: no stale-lock cleanup needed
    assert train_main([*RUN, "--epochs", "1", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / LOCK_NAME).exists()  # released and removed at the end


def test_resuming_a_running_run_is_refused(tmp_path, capsys):
    assert train_main([*RUN, "--epochs", "1", "--out", str(tmp_path)]) == 0
    holder = hold_lock(tmp_path)
    try:
        assert train_main(["--resume", str(tmp_path / "last.safetensors"), "--epochs", "2", "--quiet"]) == 2
        assert "is in use by another run" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_reentrant_in_one_process_and_exclusive_across(tmp_path):
    with RunLock(tmp_path / "run") as outer:
        with RunLock(tmp_path / "run"):
            pass
        assert (tmp_path / "run" / LOCK_NAME).exists()  # still held by the outer block
        code = "import sys\nfrom cnn_xp.train.run_lock import RunLock\nRunLock(sys.argv[1]).__enter__()"
        other = subprocess.run([sys.executable, "-c", code, str(outer.out_dir)], capture_output=True, text=True)
        assert other.returncode != 0 and "RunFolderInUseError" in other.stderr and str(os.getpid()) in other.stderr
    assert not (tmp_path / "run").exists()  # it created the folder and left it empty


def test_only_stale_temporaries_are_swept_and_only_under_the_lock(tmp_path):
    stale = tmp_path / ".last.safetensors.cnn_xp-abc123.tmp"
    stale.write_bytes(b"left by a killed writer")
    holder = hold_lock(tmp_path)
    try:
        live = tmp_path / ".last.safetensors.cnn_xp-live.tmp"  # the holder's temporary, being written
        live.write_bytes(b"being written")
        with pytest.raises(RunFolderInUseError):
            RunLock(tmp_path).__enter__()
        assert live.exists()  # a refused run touches nothing
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):
        assert not stale.exists() and not live.exists()  # now they are stale: swept


def test_checkpoint_temporaries_are_unique_per_writer(tmp_path, monkeypatch):
    from cnn_xp import serialization

    seen = []
    real = serialization.tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        fd, name = real(*args, **kwargs)
        seen.append(name)
        return fd, name

    monkeypatch.setattr(serialization.tempfile, "mkstemp", mkstemp)
    serialization.write_atomically(tmp_path / "a.bin", b"1")
    serialization.write_atomically(tmp_path / "a.bin", b"2")
    assert len(set(seen)) == 2 and all(os.path.basename(n).startswith(".a.bin.") for n in seen)


def test_a_symbolic_link_planted_as_the_lock_is_refused_and_its_target_untouched(tmp_path):
    """(A planted link at the lock's place once made a run write the lock's JSON into its target.)"""
    victim = tmp_path / "thesis.txt"
    victim.write_text("years of work")
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    with pytest.raises(RunFolderInUseError, match="is a symbolic link"), RunLock(out):
        pass
    assert victim.read_text() == "years of work" and (out / LOCK_NAME).is_symlink()


def test_only_cnn_xps_own_temporary_files_are_swept(tmp_path):
    """(A run once deleted every *.tmp file of its folder, the user's own .notes.tmp among them.)"""
    from cnn_xp.serialization import write_atomically

    out = tmp_path / "run"
    out.mkdir()
    mine = [out / ".notes.tmp", out / ".thesis.docx.tmp", out / ".last.safetensors.tmp", out / "x.cnn_xp-abc.tmp"]
    for path in mine:
        path.write_text("the user's")
    killed = out / ".last.safetensors.cnn_xp-k2_x9.tmp"  # a writer of cnn_xp's killed before its rename
    killed.write_text("half a checkpoint")
    with RunLock(out):
        pass
    assert all(p.read_text() == "the user's" for p in mine) and not killed.exists()
    write_atomically(out / "metrics.csv", b"epoch\n")
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in mine), "metrics.csv"])
