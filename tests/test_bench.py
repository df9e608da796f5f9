"""Smoke test of the benchmark (no timing assertions: numbers are reported, not judged)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args, threads: int | None = None):
    env = None if threads is None else {**os.environ, "OPENBLAS_NUM_THREADS": str(threads)}
    return subprocess.run(
        [sys.executable, "-m", "cnn_xp.bench", *args], capture_output=True, text=True, timeout=300, check=False, env=env
    )


QUICK = ["--steps", "2", "--warmup", "1", "--rounds", "1", "--infer-batch", "50", "--latency-calls", "3"]


@pytest.mark.slow
def test_bench_runs_every_mode_and_writes_raw_figures(tmp_path):
    out = tmp_path / "bench.json"
    result = run("--models", "simple", *QUICK, "--trained-steps", "3", "--json", out)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "Measured on " in text and "threads per engine" in text and "Matrix-product peak" in text
    for mode in ("train", "trained", "infer", "latency"):
        assert f"| simple | mnist | {mode} |" in text, mode
    raw = json.loads(out.read_text())
    rows = raw["rows"]
    assert {(r["engine"], r["mode"]) for r in rows} == {
        ("cnn_xp", "train"), ("cnn_xp", "trained"), ("cnn_xp-ieee", "trained"), ("cnn_xp", "infer"), ("cnn_xp", "latency")
    }  # fmt: skip
    assert all(r["images_per_s"] > 0 and r["peak_rss_mib"] > 0 for r in rows)
    assert raw["peak"]["numpy"] > 0 and raw["flops"]["simple:mnist"]["forward"] > 0


def test_the_flop_count_is_the_direct_computations():
    from cnn_xp.cli.bench_workers import flops, network

    net, _ = network("simple", (1, 28, 28), None)
    conv = 2 * 30 * 1 * 5 * 5 * 24 * 24  # the book's SimpleConvNet: 30 filters 5x5 over 28x28
    fc = 2 * 30 * 12 * 12 * 100 + 2 * 100 * 10
    assert flops(net, (1, 28, 28)) == {"forward": conv + fc, "train": 3 * (conv + fc) - conv}


@pytest.mark.slow
def test_bench_compares_with_every_peer_interleaved(torch, tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "bench.json"
    argv = ["--models", "resnet20", "--inputs", "cifar", "--modes", "train,infer", "--compare", "torch,channels_last"]
    result = run(*argv, *QUICK, "--rounds", "2", "--batch-size", "8", "--json", out)
    assert result.returncode == 0, result.stderr
    assert "| resnet20 | cifar | train | 8 |" in result.stdout and " vs PyTorch" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 2 * 2 * 3  # rounds x modes x engines
    assert [r["engine"] for r in rows[:3]] == ["cnn_xp", "torch", "channels_last"]  # interleaved
    result = run("--models", "simple", "--modes", "infer", "--compare", "onnxruntime", *QUICK)
    assert result.returncode == 0, result.stderr
    assert "ONNX Runtime" in result.stdout and "vs ONNX Runtime" in result.stdout


def test_a_missing_peer_is_skipped_with_the_reason(monkeypatch):
    from cnn_xp.backend import parse_device
    from cnn_xp.cli.bench import _available

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    kept, skipped = _available(["onnxruntime"], parse_device("cpu"))
    assert kept == [] and "onnxruntime is not installed (pip install 'cnn_xp[onnx]')" in skipped["onnxruntime"]


def test_bench_bad_arguments():
    result = run("--models", "resnet")
    assert result.returncode == 2 and "resnet" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("threads", [1, 2])
def test_bench_profile_lists_every_layer_and_the_update(threads):
    result = run("--profile", "--models", "simple", "--steps", "2", "--warmup", "1", threads=threads)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "simple (1, 28, 28) training step, batch 100, device cpu" in out
    if threads == 1:
        assert "the batch whole" in out and "shard" not in out
    else:  # the layer times are those of one thread's shard, as the step runs them
        assert "split into 2 shards run at once on 2 threads" in out and "one shard of 50, one thread" in out
    for name in ("Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2", "SoftmaxWithLoss", "Adam.update"):
        assert f"  {name} " in out, name
    shares = [float(line.split()[-1].rstrip("%")) for line in out.splitlines() if line.endswith("%")]
    assert len(shares) == 8 and abs(sum(shares) - 100) < 1  # the shares account for the whole step
    assert "  Conv1            generic " in out  # the path a convolution took (one input channel)


def test_bench_refuses_an_unknown_device_in_one_line():
    result = run("--device", "tpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--device" in result.stderr and "'tpu'" in result.stderr


def test_bench_on_a_missing_gpu_says_why_in_one_line():
    from cnn_xp.backend import gpu_unavailable_reason

    reason = gpu_unavailable_reason(0)
    if reason is None:
        pytest.skip("a GPU is usable here: nothing to refuse")
    result = run("--device", "gpu", "--models", "simple", "--steps", "1", "--rounds", "1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "gpu:0" in result.stderr and "not available" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("engine", ["cnn_xp", "torch"])
def test_only_cnn_xps_worker_changes_the_malloc_settings(engine, monkeypatch, capsys, request):
    """PyTorch runs with the C library's own malloc settings, as its users run it: with cnn_xp's
    (the programs' keep_freed_memory) its DeepConvNet training ran 1.8x slower, which once made
    cnn_xp's ratio look better than it was."""
    if engine == "torch":
        request.getfixturevalue("torch")
    import cnn_xp.cli.bench as bench
    import cnn_xp.cli.common as common
    import cnn_xp.heap as heap

    calls = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda *a: calls.append(a) or True)
    monkeypatch.setattr(common, "keep_freed_memory", lambda *a: calls.append(a) or True)
    job = {"engine": engine, "model": "simple", "shape": [1, 28, 28], "mode": "train", "batch": 4, "steps": 1,
           "warmup": 0, "weights": None, "threads": 1, "device": "cpu"}  # fmt: skip
    assert bench.main(["--worker", json.dumps(job)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["images_per_s"] > 0
    assert len(calls) == (1 if engine == "cnn_xp" else 0)


def test_a_closed_pipe_stops_the_program_quietly():
    """``cnn_xp bench --profile | head -1``: the reader goes away before the report is written;
    the program stops with SIGPIPE's status (141) and no traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnn_xp.bench", "--profile", "--models", "simple", "--steps", "2", "--warmup", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    proc.stdout.close()  # before the profile (a second or more) is printed
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipeError" not in err


def test_a_workers_peak_memory_is_its_own_not_its_parents():
    """A worker started by a parent that once held 400 MiB (as the benchmark's parent holds
    PyTorch's libraries with --compare torch) reports its own peak: ru_maxrss alone would report
    the parent's (it keeps the larger of the peaks before and after exec), which made every
    cnn_xp row read 221 MiB."""
    code = (
        "import subprocess, sys\n"
        "big = bytearray(400 * 2**20)\n"  # touched: 400 MiB resident in the parent
        "big[:: 4096] = b'x' * len(big[:: 4096])\n"
        "out = subprocess.run([sys.executable, '-c', 'from cnn_xp.cli.bench_workers import peak_rss_mib; "
        "print(peak_rss_mib())'], capture_output=True, text=True, check=True)\n"
        "print(out.stdout.strip())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    peak = float(result.stdout.strip())
    assert 10 < peak < 200, f"the worker reported {peak:.0f} MiB"


def test_the_report_gives_gpu_memory_only_for_gpu_runs():
    """On a GPU the report adds each engine's peak pool memory beside its host memory."""
    from cnn_xp.cli.bench import report

    def row(engine, speed, rss, gpu=None):
        r = {"round": 0, "model": "resnet20", "input": "mnist", "mode": "train", "engine": engine, "batch": 100,
             "images_per_s": speed, "ms_per_call": 100e3 / speed, "first_call_s": 0.1, "peak_rss_mib": rss}  # fmt: skip
        return r if gpu is None else {**r, "gpu_reserved_peak_mib": gpu}

    flops = {("resnet20", "mnist"): {"train": 1e8, "forward": 3e7}}
    on_gpu = report([row("cnn_xp", 3000, 533, 1149.4), row("torch", 12000, 1381, 306)], {}, flops, ["torch"], {}, "H")
    table = [line for line in on_gpu.splitlines() if line.startswith("|")]
    assert table[0].endswith("| peak RSS cnn_xp / best peer | peak GPU memory cnn_xp / best peer |")
    assert table[2].endswith("| 533 / 1381 MiB | 1149 / 306 MiB |") and "**0.25** vs PyTorch" in table[2]
    on_cpu = report([row("cnn_xp", 3000, 533), row("torch", 12000, 1381)], {}, flops, ["torch"], {}, "H")
    assert "GPU memory" not in on_cpu and on_cpu.splitlines()[4].endswith("| 533 / 1381 MiB |")
