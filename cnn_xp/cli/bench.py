"""``cnn_xp bench``: training and inference speed and peak memory, beside the engines users pick.

For each network (``--models``, registered names) on each input shape (``--inputs``: ``mnist``
1x28x28, ``cifar`` 3x32x32) it measures, each in a fresh process:

* ``train`` -- a training step (forward, backward, optimizer update) from random weights;
* ``trained`` -- the same from trained weights and optimizer state (``--trained NAME=CKPT``, or a
  short training run of ``--trained-steps`` steps it makes itself on the bundled MNIST), with and
  without flushing subnormal floats (``cnn_xp (IEEE)``);
* ``infer`` -- inference at ``--infer-batch``;
* ``latency`` -- inference of one image, milliseconds per call.

``--compare`` adds peers, each optional and skipped with the reason when not installed: PyTorch
eager in NCHW (``torch``) and ``channels_last``, ``torch.compile`` (``compile``; its compile time
is reported apart), ONNX Runtime on cnn_xp's own ONNX export (``onnxruntime``, inference), or
``all``.  Every engine runs the same network with the same weights on the same threads, A/B
interleaved over ``--rounds`` rounds; the report is a Markdown table of medians, the ratio to the
best peer (with every round's), each row's GFLOP/s of direct-computation FLOPs and its share of
the machine's matrix-product peak (measured first), and peak memory.  It names the CPU.
``--json PATH`` writes every raw figure; ``--profile`` prints instead where a cnn_xp training
step spends its time, layer by layer.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy

from ..backend import GPUUnavailableError, gpu_name, parse_device
from ..models import MODELS as NETWORKS
from ..models import build_named_model
from ..serialization import write_atomically
from .bench_workers import ENGINE_RUNNERS, INPUTS
from .common import OneLineParser, UsageError, check_output_file, flag_error, run_command

PROG = "python -m cnn_xp.bench"
MODES = ("train", "trained", "infer", "latency")
ENGINE_TITLES = {
    "cnn_xp": "cnn_xp",
    "cnn_xp-ieee": "cnn_xp (IEEE)",
    "torch": "PyTorch",
    "channels_last": "PyTorch channels_last",
    "compile": "torch.compile",
    "onnxruntime": "ONNX Runtime",
}
PEERS = ("torch", "channels_last", "compile", "onnxruntime")


def cpu_description() -> str:
    """The CPU's model name and vector extensions, from /proc/cpuinfo (else the platform's word)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    isa = [name for flag, name in (("avx512f", "AVX-512"), ("amx_tile", "AMX"), ("avx2", "AVX2")) if flag in flags]
    isa = [i for i in isa if not (i == "AVX2" and "AVX-512" in isa)]
    family = (
        f"family {fields['cpu family']} model {fields['model']}, "
        if "cpu family" in fields and "model" in fields
        else ""
    )
    return f"{fields.get('model name', platform.machine())} ({family}{', '.join(isa) or 'no AVX2'})"


# --------------------------------------------------------------------------- per-layer profile


def _profile(model: str, shape: tuple[int, ...], device: str, batch: int, steps: int, warmup: int) -> str:
    """The median training step as it runs, then the median forward/backward milliseconds of
    every layer (synchronised) -- of one shard on one thread when the step splits its batch
    across threads (:mod:`cnn_xp.models.shards`): what each thread runs at once."""
    from cnn_xp.backend import synchronize, to_device
    from cnn_xp.heap import keep_freed_memory
    from cnn_xp.optim import Adam
    from cnn_xp.threads import single_blas_thread

    keep_freed_memory()
    net = build_named_model(model, shape, 10, seed=0, device=device)
    rng = numpy.random.default_rng(0)
    x = to_device(rng.random((batch, *shape), dtype=numpy.float32), device)
    t = to_device(rng.integers(0, 10, batch), device)
    opt = Adam()
    whole: list[float] = []
    for _ in range(warmup + steps):
        synchronize(x)
        start = time.perf_counter()
        opt.update(net.params, net.gradient(x, t))
        synchronize(x)
        whole.append(1e3 * (time.perf_counter() - start))
    plan = net._shards.plan(x, t) if net._shards is not None else None
    head = f"{model} {shape} training step, batch {batch}, device {device}: {statistics.median(whole[warmup:]):.1f} ms"
    if plan is None:
        return head + " (median, the batch whole)\n" + _layer_times(net, opt, x, t, steps, warmup)
    size = plan[0].stop
    head += f" (median), split into {len(plan)} shards run at once on {len(plan)} threads"
    with single_blas_thread():  # as each shard runs
        return (
            head + f"\none shard of {size}, one thread:\n" + _layer_times(net, opt, x[:size], t[:size], steps, warmup)
        )


def _layer_times(net: Any, opt: Any, x: Any, t: Any, steps: int, warmup: int) -> str:
    from cnn_xp.backend import synchronize

    names = [*net.layers, "SoftmaxWithLoss", "Adam.update"]  # (Adam: once per step, not per shard)
    fwd: dict[str, list[float]] = {k: [] for k in names}
    bwd: dict[str, list[float]] = {k: [] for k in names}

    def timed(record: list[float], fn: Any, *a: Any) -> Any:
        synchronize(x)
        start = time.perf_counter()
        out = fn(*a)
        synchronize(x)
        record.append(1e3 * (time.perf_counter() - start))
        return out

    for i in range(warmup + steps):
        h = x
        for name, layer in net.layers.items():
            h = timed(fwd[name], layer.forward, h)
        timed(fwd["SoftmaxWithLoss"], net.last_layer.forward, h, t)
        d = timed(bwd["SoftmaxWithLoss"], net.last_layer.backward, 1)
        for name, layer, kwargs in net.backward_order():
            d = timed(bwd[name], lambda d, layer=layer, kwargs=kwargs: layer.backward(d, **kwargs), d)
        grads = net.grads()
        timed(fwd["Adam.update"], opt.update, net.params, grads)
        if i < warmup:
            for rec in (*fwd.values(), *bwd.values()):
                rec.clear()
    med = {k: (statistics.median(fwd[k]), statistics.median(bwd[k]) if bwd[k] else 0.0) for k in names}
    total = sum(f + b for f, b in med.values())
    lines = [f"  layer by layer: {total:.1f} ms (medians of {steps} steps)"]
    lines += [f"  {'layer':16s} {'path':12s} {'forward ms':>10s} {'backward ms':>11s} {'share':>6s}"]
    for k, (f, b) in med.items():  # path: which code path a convolution took (Convolution.algorithm)
        layer = net.layers.get(k)
        path, tile = getattr(layer, "algorithm", None) or "", getattr(layer, "winograd_tile", None)
        path += f" {tile}x{tile}" if tile else ""
        lines.append(f"  {k:16s} {path:12s} {f:10.2f} {b:11.2f} {100 * (f + b) / total:5.1f}%")
    return "\n".join(lines)


# --------------------------------------------------------------------------- driver


def _worker(job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run one measurement (``job``) in a fresh process; RuntimeError with its last line if it fails."""
    cmd = [sys.executable, "-m", "cnn_xp.cli.bench", "--worker", json.dumps(job)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(last)
    return json.loads(result.stdout.strip().splitlines()[-1])


def _available(engines: list[str], device: Any) -> tuple[list[str], dict[str, str]]:
    """The peers that can run here, and why each other one cannot."""
    skipped: dict[str, str] = {}
    for engine in engines:
        module = "onnxruntime" if engine == "onnxruntime" else "torch"
        try:
            importlib.import_module(module)
        except ImportError:
            extra = "onnx" if module == "onnxruntime" else "torch"
            skipped[engine] = f"{module} is not installed (pip install 'cnn_xp[{extra}]')"
            continue
        if device.is_gpu and engine != "torch":
            skipped[engine] = "measured on the CPU only"
    return [e for e in engines if e not in skipped], skipped


def _cases(models: list[str], inputs: list[str] | None, modes: list[str]) -> list[tuple[str, str, str]]:
    cases = []
    for model in models:
        shapes = inputs or (["mnist", "cifar"] if model.startswith("resnet") else ["mnist"])
        cases += [(model, shape, mode) for shape in shapes for mode in modes]
    return cases


def _trained_weights(
    args: argparse.Namespace, cases: list[tuple[str, str, str]], work: str
) -> dict[tuple[str, str], Any]:
    """(model, input) -> its trained checkpoint, or the reason it has none."""
    given: dict[tuple[str, str], str] = {}
    for item in args.trained:
        name, _, path = item.partition("=")
        model, _, shape = name.partition(":")
        if not path or model not in NETWORKS or (shape or "mnist") not in INPUTS:
            raise UsageError(f"--trained: expected NAME[:INPUT]=CHECKPOINT with NAME a model, got {item!r}")
        given[(model, shape or "mnist")] = path
    out: dict[tuple[str, str], Any] = {}
    for model, shape, mode in cases:
        if mode != "trained" or (model, shape) in out:
            continue
        if (model, shape) in given:
            out[(model, shape)] = given[(model, shape)]
        elif shape != "mnist":
            out[(model, shape)] = RuntimeError(
                f"no {shape}-shaped data is bundled: give --trained {model}:{shape}=CKPT"
            )
        else:
            folder = os.path.join(work, f"{model}-{shape}")
            start = time.perf_counter()
            job = {
                "engine": "make_trained",
                "model": model,
                "shape": INPUTS[shape],
                "steps": args.trained_steps,
                "out": folder,
            }
            out[(model, shape)] = _worker(job)["checkpoint"]
            print(f"  trained {model} {args.trained_steps} steps on MNIST for the trained rows: "
                  f"{time.perf_counter() - start:.0f} s", file=sys.stderr)  # fmt: skip
    return out


def _measure_all(args: argparse.Namespace, cases: list, engines: list[str], trained: dict, threads: int) -> list[dict]:
    rows: list[dict[str, Any]] = []
    for round_ in range(args.rounds):
        for model, shape, mode in cases:
            weights = trained.get((model, shape)) if mode == "trained" else None
            if isinstance(weights, Exception):
                continue
            batch = {"train": args.batch_size, "trained": args.batch_size, "infer": args.infer_batch, "latency": 1}[
                mode
            ]
            steps = args.latency_calls if mode == "latency" else args.steps
            warmup = args.warmup * (10 if mode == "latency" else 1)
            runs = [e for e in engines if not (e == "onnxruntime" and mode in ("train", "trained"))]
            if mode == "trained":
                runs = ["cnn_xp", "cnn_xp-ieee", *runs[1:]]
            for engine in runs:
                job = {"engine": "cnn_xp" if engine == "cnn_xp-ieee" else engine, "model": model,
                       "shape": INPUTS[shape], "mode": "train" if mode == "trained" else mode, "batch": batch,
                       "steps": steps, "warmup": warmup, "weights": weights, "threads": threads,
                       "device": args.device}  # fmt: skip
                env = {**os.environ, "CNN_XP_FLUSH_DENORMALS": "0"} if engine == "cnn_xp-ieee" else None
                row = {"round": round_, "model": model, "input": shape, "mode": mode, "engine": engine, "batch": batch}
                try:
                    row.update(_worker(job, env))
                except RuntimeError as exc:
                    row["error"] = str(exc)
                rows.append(row)
    return rows


def _cell(rows: list[dict], latency: bool) -> str:
    ok = [r for r in rows if "error" not in r]
    if not ok:
        return "failed" if rows else ""
    if latency:
        return f"{statistics.median(r['ms_per_call'] for r in ok):.2f} ms"
    return f"{statistics.median(r['images_per_s'] for r in ok):,.0f}"


def _speed(r: dict, latency: bool) -> float:
    return 1.0 / r["ms_per_call"] if latency else r["images_per_s"]


def _gpu_peak(rows: list[dict]) -> str:
    """The most GPU memory the engine's memory pool held (CuPy's, PyTorch's caching allocator)."""
    held = [r["gpu_reserved_peak_mib"] for r in rows if "gpu_reserved_peak_mib" in r]
    return f"{max(held):.0f}" if held else "?"


def report(rows: list[dict], peak: dict[str, float], flops: dict, engines: list[str], skipped: dict[str, str],
           header: str) -> str:  # fmt: skip
    """The Markdown report: one row per network, input and mode; the engines' medians, the ratio of
    cnn_xp to the best peer (median of the rounds' ratios, and each round's), cnn_xp's GFLOP/s and
    share of the matrix-product peak, and peak memory."""
    best_peak = max(peak.values()) if peak else 0.0
    shown = ["cnn_xp", "cnn_xp-ieee", *[e for e in engines if e != "cnn_xp"]]
    cases = list(dict.fromkeys((r["model"], r["input"], r["mode"]) for r in rows))
    shown = [e for e in shown if any(r["engine"] == e for r in rows)]
    lines = [header, ""]
    if peak:
        sources = ", ".join(f"{name} {rate:.0f}" for name, rate in peak.items())
        lines.append(f"Matrix-product peak (float32, square sizes 1024-3072): {best_peak:.0f} GFLOP/s ({sources}).")
        lines.append("")
    titles = [ENGINE_TITLES[e] for e in shown]
    gpu = any("gpu_reserved_peak_mib" in r for r in rows)  # on a GPU its memory is what runs out first
    lines.append("| network | input | mode | batch | " + " | ".join(titles)
                 + " | cnn_xp / best peer (rounds) | cnn_xp GFLOP/s (of peak) | peak RSS cnn_xp / best peer |"
                 + (" peak GPU memory cnn_xp / best peer |" if gpu else ""))  # fmt: skip
    lines.append("| --- | --- | --- | ---: | " + " | ".join("---:" for _ in shown) + " | ---: | ---: | ---: |"
                 + (" ---: |" if gpu else ""))  # fmt: skip
    compile_times = []
    for model, shape, mode in cases:
        latency = mode == "latency"
        mine = [r for r in rows if (r["model"], r["input"], r["mode"]) == (model, shape, mode)]
        by_engine = {e: [r for r in mine if r["engine"] == e] for e in shown}
        cells = [_cell(by_engine[e], latency) for e in shown]
        peers = {e: [r for r in v if "error" not in r] for e, v in by_engine.items() if e in PEERS}
        peers = {e: v for e, v in peers.items() if v}
        ours = [r for r in by_engine["cnn_xp"] if "error" not in r]
        ratio, rss, held = "", "", ""
        if peers and ours:
            best = max(peers, key=lambda e: statistics.median(_speed(r, latency) for r in peers[e]))
            per_round = []
            for r in ours:
                theirs = [p for p in peers[best] if p["round"] == r["round"]]
                if theirs:
                    per_round.append(_speed(r, latency) / _speed(theirs[0], latency))
            if per_round:
                rounds = ", ".join(f"{v:.2f}" for v in per_round)
                ratio = f"**{statistics.median(per_round):.2f}** vs {ENGINE_TITLES[best]} ({rounds})"
            rss = f"{max(r['peak_rss_mib'] for r in ours):.0f} / {max(r['peak_rss_mib'] for r in peers[best]):.0f} MiB"
            held = f"{_gpu_peak(ours)} / {_gpu_peak(peers[best])} MiB"
        elif ours:
            rss = f"{max(r['peak_rss_mib'] for r in ours):.0f} MiB"
            held = f"{_gpu_peak(ours)} MiB"
        gflops = ""
        if ours:
            per_image = flops[(model, shape)]["train" if mode in ("train", "trained") else "forward"]
            rate = statistics.median(_speed(r, False) if not latency else 1e3 / r["ms_per_call"] for r in ours)
            g = per_image * rate / 1e9
            gflops = f"{g:.0f} ({100 * g / best_peak:.0f}%)" if best_peak else f"{g:.0f}"
        batch = mine[0]["batch"] if mine else ""
        lines.append(
            f"| {model} | {shape} | {mode} | {batch} | "
            + " | ".join(cells)
            + f" | {ratio} | {gflops} | {rss} |"
            + (f" {held} |" if gpu else "")
        )
        for r in by_engine.get("compile", []):
            if "error" not in r:
                compile_times.append((model, shape, mode, r["first_call_s"]))
    lines.append("")
    lines.append("Images per second (latency: milliseconds per call of one image), medians; ratios above 1: cnn_xp "
                 "faster. GFLOP/s counts the direct computation's multiply-adds of convolutions and affine layers.")  # fmt: skip
    if compile_times:
        worst: dict[tuple[str, str, str], float] = {}
        for model, shape, mode, seconds in compile_times:
            worst[(model, shape, mode)] = max(worst.get((model, shape, mode), 0.0), seconds)
        text = "; ".join(f"{m} {s} {mode} {sec:.1f} s" for (m, s, mode), sec in worst.items())
        lines.append(f"torch.compile's first call (compiling), not in its figures: {text}.")
    errors = sorted(
        {
            f"{ENGINE_TITLES[r['engine']]} ({r['model']} {r['input']} {r['mode']}): {r['error']}"
            for r in rows
            if "error" in r
        }
    )
    lines += [f"Failed: {e}" for e in errors]
    lines += [f"Skipped: {ENGINE_TITLES[e]}: {why}" for e, why in skipped.items()]
    return "\n".join(lines)


DESCRIPTION = (
    "Training (from random and from trained weights) and inference speed, latency and peak memory of registered "
    "networks, each measured in a fresh process, beside PyTorch (NCHW, channels_last, torch.compile) and ONNX "
    "Runtime on the same threads, interleaved round by round; prints a Markdown table naming the CPU."
)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    # The malloc settings are left to each worker: cnn_xp's set them as cnn_xp's programs do,
    # PyTorch's keep the C library's own, as PyTorch's users run it (cnn_xp's M_TOP_PAD alone,
    # inherited, makes every array above 128 KiB a fresh mmap and slows PyTorch down).
    return run_command(prog, _main, argv, keep_heap=False)


def _parser(prog: str) -> OneLineParser:
    p = OneLineParser(prog=prog, description=DESCRIPTION)
    p.add_argument("--device", default="cpu", help="'cpu' or 'gpu' (cnn_xp and PyTorch run there)")
    p.add_argument("--models", default="simple,deep,resnet20", help="comma-separated registered model names")
    p.add_argument("--inputs", default=None, help="comma-separated: mnist, cifar (default: mnist; for ResNets both)")
    p.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--compare", default=None, help=f"comma-separated peers from {', '.join(PEERS)}, or 'all'")
    p.add_argument("--batch-size", type=int, default=100, help="training batch")
    p.add_argument("--infer-batch", type=int, default=1000, help="inference batch")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--latency-calls", type=int, default=200, help="timed calls per latency measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (ten times as many calls for latency)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fresh processes each)")
    p.add_argument("--trained", action="append", default=[], metavar="NAME[:INPUT]=CKPT",
                   help="a checkpoint whose weights and optimizer state the trained rows start from")  # fmt: skip
    p.add_argument("--trained-steps", type=int, default=300, help="without --trained: steps of the short run")
    p.add_argument("--json", default=None, metavar="PATH", help="write the raw figures here")
    p.add_argument("--profile", action="store_true", help="instead: per-layer times of a cnn_xp training step")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def _main(argv: list[str] | None, prog: str) -> int:
    args = _parser(prog).parse_args(argv)
    if args.worker:
        job = json.loads(args.worker)
        if job["engine"] == "make_trained":
            from .bench_workers import make_trained

            print(json.dumps(make_trained(job["model"], tuple(job["shape"]), job["steps"], job["out"])))
        else:
            print(json.dumps(ENGINE_RUNNERS[job["engine"]](job)))
        return 0
    models = [m for m in args.models.split(",") if m]
    inputs = [i for i in args.inputs.split(",") if i] if args.inputs else None
    modes = [m for m in args.modes.split(",") if m]
    peers = list(PEERS) if args.compare == "all" else [e for e in (args.compare or "").split(",") if e]
    bad = [m for m in models if m not in NETWORKS] + [i for i in inputs or [] if i not in INPUTS]
    bad += [m for m in modes if m not in MODES] + [e for e in peers if e not in PEERS]
    sizes = (args.batch_size, args.infer_batch, args.steps, args.rounds, args.latency_calls, args.trained_steps)
    if bad or min(sizes) < 1 or args.warmup < 0:
        raise UsageError(f"expected --models from {list(NETWORKS)}, --inputs from {list(INPUTS)}, --modes from "
                         f"{list(MODES)}, --compare from {list(PEERS)} or all, and positive sizes; got {bad or 'sizes'}")  # fmt: skip
    if args.json:
        check_output_file("--json", Path(args.json))
    try:  # resolve the device once ('auto' included), so every process runs where the first did
        device = parse_device(args.device)
    except (ValueError, GPUUnavailableError) as e:
        raise flag_error("--device", e) from None
    args.device = str(device)
    if args.profile:
        for model in models:
            for shape in inputs or (["mnist", "cifar"] if model.startswith("resnet") else ["mnist"]):
                print(_profile(model, INPUTS[shape], args.device, args.batch_size, args.steps, args.warmup))
        return 0
    if device.is_gpu:
        modes = [m for m in modes if m != "trained"]
    peers, skipped = _available(peers, device)
    from .bench_workers import threads

    n = threads()
    from ..threads import blas_description

    versions = [f"NumPy {numpy.__version__} on {blas_description()}"]
    for module, title in (("torch", "PyTorch"), ("onnxruntime", "ONNX Runtime")):
        with contextlib.suppress(ImportError):
            versions.append(f"{title} {importlib.import_module(module).__version__}")
    where = cpu_description()
    if device.is_gpu:
        import cupy

        where = f"{args.device}, {gpu_name(device.index)} (CuPy {cupy.__version__}; host {where})"
    header = (f"Measured on {where}, {os.cpu_count()} cores, {n} threads per engine, float32; "
              f"{', '.join(versions)}. `{prog} {' '.join(argv or sys.argv[1:])}`.")  # fmt: skip
    cases = _cases(models, inputs, modes)
    peak = _worker({"engine": "peak", "threads": n}) if not device.is_gpu else {}
    from .bench_workers import flops, network

    shapes = {(m, s) for m, s, _ in cases}
    counted = {(m, s): flops(network(m, INPUTS[s], None)[0], INPUTS[s]) for m, s in shapes}
    with tempfile.TemporaryDirectory(prefix="cnn_xp-bench-") as work:
        try:
            trained = _trained_weights(args, cases, work) if "trained" in modes else {}
        except RuntimeError as exc:
            print(f"{prog}: error: the short training run for the trained rows failed: {exc}", file=sys.stderr)
            return 1
        for (model, shape), why in trained.items():
            if isinstance(why, Exception):
                skipped[f"trained {model} {shape}"] = str(why)
        rows = _measure_all(args, cases, ["cnn_xp", *peers], trained, n)
    ENGINE_TITLES.update({k: k for k in skipped if k not in ENGINE_TITLES})
    text = report(rows, peak, counted, ["cnn_xp", *peers], skipped, header)
    print(text)
    if args.json:
        raw = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "peak": peak, "rows": rows,
               "flops": {f"{m}:{s}": v for (m, s), v in counted.items()}}  # fmt: skip
        write_atomically(args.json, json.dumps(raw, indent=2).encode())
    return 0 if not any("error" in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
