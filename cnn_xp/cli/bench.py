"""``python -m cnn_xp.bench``: training and inference throughput and peak memory, beside PyTorch.

For SimpleConvNet and DeepConvNet it measures training (forward + backward + Adam update, batch
100 by default), inference (batch 1000) and peak memory (host RSS; on a GPU also CuPy's memory
pool peak). Every measurement runs in a fresh process; with ``--compare torch`` the same networks
run in PyTorch on the same device, A/B interleaved over ``--rounds`` rounds, and the report gives
medians and the per-round ratio cnn_xp / PyTorch. Warm-up steps are excluded and GPU timings
synchronise before the clock is read. ``--json PATH`` writes every raw figure. ``--profile``
prints, instead, where a cnn_xp training step spends its time, layer by layer.
``CNN_XP_FAST_PATHS=0`` in the environment measures the generic reference paths.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy

from ..backend import GPUUnavailableError, parse_device
from ..models import MODELS as NETWORKS
from ..models import build_named_model
from ..serialization import write_atomically
from .common import OneLineParser, UsageError, check_output_file, flag_error, run_command

PROG = "python -m cnn_xp.bench"
MODELS = tuple(NETWORKS)  # the network registry's short names
MODES = ("train", "infer")


# --------------------------------------------------------------------------- workers (fresh processes)


def _peak_rss_mib() -> float:
    """This process's peak resident memory since it started its program, in MiB.

    Linux's ``VmHWM`` (the high-water mark of the memory the program runs in) when there is one:
    ``getrusage``'s ``ru_maxrss`` also counts the memory of the parent the worker was started
    from (it keeps the larger of the peaks before and after ``exec``): a worker would report
    its parent's peak, PyTorch imported, instead of its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB; macOS: bytes


def _cnn_xp_worker(model: str, mode: str, device: str, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    from cnn_xp.backend import synchronize, to_device
    from cnn_xp.heap import keep_freed_memory
    from cnn_xp.layers import no_grad
    from cnn_xp.optim import Adam

    keep_freed_memory()  # as cnn_xp's programs do (the worker runs outside run_command)

    net = build_named_model(model, (1, 28, 28), 10, seed=0, device=device)
    rng = numpy.random.default_rng(0)
    x = to_device(rng.random((batch, 1, 28, 28), dtype=numpy.float32), device)
    t = to_device(rng.integers(0, 10, batch), device)
    if mode == "train":
        opt = Adam()

        def step() -> None:
            opt.update(net.params, net.gradient(x, t))
    else:
        net.eval()

        def step() -> None:
            with no_grad():  # as torch.no_grad() in the PyTorch worker
                net.predict(x)

    for _ in range(warmup):
        step()
    synchronize(x)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(x)
    seconds = time.perf_counter() - start
    return {
        "images_per_s": batch * steps / seconds,
        "seconds": seconds,
        "peak_rss_mib": _peak_rss_mib(),
        **_gpu_pool_peak(x),
    }


def _gpu_pool_peak(x: Any) -> dict[str, float]:
    from cnn_xp.backend import is_gpu_array

    if not is_gpu_array(x):
        return {}
    import cupy

    # The pool keeps every freed block for reuse (nothing calls free_all_blocks), so what it holds
    # at the end is its high-water mark of *reserved* memory -- compared with PyTorch's
    # max_memory_reserved(), the same quantity of its caching allocator.
    return {"gpu_reserved_peak_mib": cupy.get_default_memory_pool().total_bytes() / 2**20}


GPU_SETTINGS = "PyTorch with TF32 off (cuBLAS and cuDNN in full FP32, as CuPy's cuBLAS runs) and cudnn.benchmark on"
"""How the PyTorch side of a GPU comparison is configured, so that both sides compute alike."""


def _torch_worker(model: str, mode: str, device: str, batch: int, steps: int, warmup: int) -> dict[str, Any]:
    import torch
    from torch import nn

    dev = torch.device(device.replace("gpu", "cuda"))  # "cpu" or "gpu:N" (resolved by main)
    torch.manual_seed(0)
    if dev.type == "cuda":  # like with like (GPU_SETTINGS): PyTorch 2.x runs cuDNN convolutions in TF32 by default
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    if model == "simple":  # the book's SimpleConvNet
        net = nn.Sequential(
            nn.Conv2d(1, 30, 5),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Flatten(),
            nn.Linear(30 * 12 * 12, 100),
            nn.ReLU(),
            nn.Linear(100, 10),
        )
    else:  # the book's DeepConvNet

        def conv(i: int, o: int, pad: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(i, o, 3, padding=pad), nn.ReLU()]

        net = nn.Sequential(
            *conv(1, 16), *conv(16, 16), nn.MaxPool2d(2, 2), *conv(16, 32), *conv(32, 32, pad=2), nn.MaxPool2d(2, 2),
            *conv(32, 64), *conv(64, 64), nn.MaxPool2d(2, 2), nn.Flatten(), nn.Linear(64 * 4 * 4, 50), nn.ReLU(),
            nn.Dropout(0.5), nn.Linear(50, 10), nn.Dropout(0.5),
        )  # fmt: skip
    net = net.to(dev)
    x = torch.rand(batch, 1, 28, 28, device=dev)
    t = torch.randint(0, 10, (batch,), device=dev)
    if mode == "train":
        opt = torch.optim.Adam(net.parameters(), lr=0.001)
        loss_fn = nn.CrossEntropyLoss()

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), t).backward()
            opt.step()
    else:
        net.eval()

        def step() -> None:
            with torch.no_grad():
                net(x)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    seconds = time.perf_counter() - start
    out = {"images_per_s": batch * steps / seconds, "seconds": seconds, "peak_rss_mib": _peak_rss_mib()}
    if dev.type == "cuda":
        out["gpu_reserved_peak_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    return out


# --------------------------------------------------------------------------- per-layer profile


def _profile(model: str, device: str, batch: int, steps: int, warmup: int) -> str:
    """The median training step as it runs, then the median forward/backward milliseconds of
    every layer (synchronised) -- of one shard on one thread when the step splits its batch
    across threads (:mod:`cnn_xp.models.shards`): what each thread runs at once."""
    from cnn_xp.backend import synchronize, to_device
    from cnn_xp.heap import keep_freed_memory
    from cnn_xp.optim import Adam
    from cnn_xp.threads import single_blas_thread

    keep_freed_memory()
    net = build_named_model(model, (1, 28, 28), 10, seed=0, device=device)
    rng = numpy.random.default_rng(0)
    x = to_device(rng.random((batch, 1, 28, 28), dtype=numpy.float32), device)
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
    head = f"{model} training step, batch {batch}, device {device}: {statistics.median(whole[warmup:]):.1f} ms"
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


def _measure(framework: str, model: str, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    batch = args.batch_size if mode == "train" else args.infer_batch
    cmd = [sys.executable, "-m", "cnn_xp.cli.bench", "--worker", framework, model, mode, "--device", args.device,
           "--batch-size", str(batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"the {framework} {model} {mode} measurement failed: {last}")
    return {
        "framework": framework,
        "model": model,
        "mode": mode,
        "batch": batch,
        **json.loads(result.stdout.strip().splitlines()[-1]),
    }


def _gpu_memory(rows: list[dict[str, Any]]) -> str:
    """ ", GPU reserved peak N MiB" for rows measured on a GPU, else ""."""
    peaks = [r["gpu_reserved_peak_mib"] for r in rows if "gpu_reserved_peak_mib" in r]
    return f", GPU reserved peak {max(peaks):6.0f} MiB" if peaks else ""


def _report(rows: list[dict[str, Any]], compare: bool) -> str:
    lines = []
    if compare and any("gpu_reserved_peak_mib" in r for r in rows):
        lines.append(f"GPU comparison: {GPU_SETTINGS}; GPU memory is reserved memory on both sides")
    for model in MODELS:
        for mode in MODES:
            mine = [r for r in rows if (r["model"], r["mode"], r["framework"]) == (model, mode, "cnn_xp")]
            if not mine:
                continue
            med = statistics.median(r["images_per_s"] for r in mine)
            rss = max(r["peak_rss_mib"] for r in mine)
            line = f"{model:6s} {mode:5s} batch {mine[0]['batch']:4d}: cnn_xp {med:8.0f} img/s (median of {len(mine)}), peak RSS {rss:6.0f} MiB"
            line += _gpu_memory(mine)
            if compare:
                theirs = [r for r in rows if (r["model"], r["mode"], r["framework"]) == (model, mode, "torch")]
                tmed = statistics.median(r["images_per_s"] for r in theirs)
                ratios = [a["images_per_s"] / b["images_per_s"] for a, b in zip(mine, theirs, strict=True)]
                line += (f" | torch {tmed:8.0f} img/s, peak RSS {max(r['peak_rss_mib'] for r in theirs):6.0f} MiB{_gpu_memory(theirs)}"
                         f" | ratio cnn_xp/torch median {statistics.median(ratios):.2f} (rounds: {', '.join(f'{v:.2f}' for v in ratios)})")  # fmt: skip
            lines.append(line)
    return "\n".join(lines)


DESCRIPTION = (
    "Training and inference throughput and peak memory of SimpleConvNet and DeepConvNet, each measured in a "
    "fresh process; with --compare torch the same networks run in PyTorch on the same device, interleaved "
    "round by round, and the report gives medians and the per-round ratio cnn_xp / PyTorch."
)


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    # The malloc settings are left to each worker: cnn_xp's set them as cnn_xp's programs do,
    # PyTorch's keep the C library's own, as PyTorch's users run it (cnn_xp's M_TOP_PAD alone,
    # inherited, makes every array above 128 KiB a fresh mmap and slows PyTorch down).
    return run_command(prog, _main, argv, keep_heap=False)


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(prog=prog, description=DESCRIPTION)
    p.add_argument("--device", default="cpu", help="'cpu' or 'gpu' (both frameworks run there)")
    p.add_argument("--models", default="simple,deep", help="comma-separated: simple, deep")
    p.add_argument("--batch-size", type=int, default=100, help="training batch")
    p.add_argument("--infer-batch", type=int, default=1000, help="inference batch")
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (fresh processes each)")
    p.add_argument("--compare", choices=("torch",), default=None, help="also run the same networks in PyTorch")
    p.add_argument("--json", default=None, metavar="PATH", help="write the raw figures here")
    p.add_argument(
        "--profile", action="store_true", help="instead: per-layer forward/backward times of a cnn_xp training step"
    )
    p.add_argument("--worker", nargs=3, metavar=("FRAMEWORK", "MODEL", "MODE"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        framework, model, mode = args.worker
        worker = _cnn_xp_worker if framework == "cnn_xp" else _torch_worker
        print(json.dumps(worker(model, mode, args.device, args.batch_size, args.steps, args.warmup)))
        return 0
    models = [m for m in args.models.split(",") if m]
    bad = [m for m in models if m not in MODELS] + (
        [] if min(args.batch_size, args.infer_batch, args.steps, args.rounds) >= 1 and args.warmup >= 0 else ["sizes"]
    )
    if bad:
        raise UsageError(f"expected --models from {list(MODELS)} and positive sizes, got {bad}")
    if args.json:
        check_output_file("--json", Path(args.json))
    try:  # resolve the device once ('auto' included), so every process runs where the first did
        device = parse_device(args.device)
    except (ValueError, GPUUnavailableError) as e:
        raise flag_error("--device", e) from None
    args.device = str(device)
    if args.compare == "torch":
        try:
            import torch
        except ImportError:
            raise UsageError("--compare torch needs PyTorch installed: pip install 'cnn_xp[torch]'") from None
        if device.is_gpu and not torch.cuda.is_available():
            raise UsageError(f"--compare torch on {device} needs a CUDA build of PyTorch")
    if args.profile:
        for model in models:
            print(_profile(model, args.device, args.batch_size, args.steps, args.warmup))
        return 0
    frameworks = ["cnn_xp"] + (["torch"] if args.compare else [])
    rows = []
    try:
        for _ in range(args.rounds):  # A/B interleaved: each round measures every case once per framework
            for model in models:
                for mode in MODES:
                    rows += [_measure(fw, model, mode, args) for fw in frameworks]
    except RuntimeError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 1
    print(
        f"device {args.device}, {args.rounds} rounds, {args.steps} timed steps after {args.warmup} warm-up, fresh process each"
    )
    print(_report(rows, bool(args.compare)))
    if args.json:
        raw = {"args": {k: v for k, v in vars(args).items() if k != "worker"}, "rows": rows}
        write_atomically(args.json, json.dumps(raw, indent=2).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
