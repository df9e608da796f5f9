"""``python -m cnn_xp.doctor``: check this install, on the GPU when there is one, and report.

What it prints is what to paste into a bug report: versions (cnn_xp, Python, NumPy, CuPy, the CUDA
runtime and driver, NCCL, mpi4py, PyTorch), every GPU's name and memory, then a PASS/FAIL table:

* every layer's forward and backward, and the book networks' and ResNet-20's loss and gradients, on the GPU
  against the CPU in float32 and float64, with the tolerances the tests use
  (:data:`cnn_xp.backend.AGREEMENT`);
* a 100-step training run of SimpleConvNet on the bundled MNIST on both devices: final loss and
  test accuracy compared, speed of each and their ratio.

The exit status is 1 if any check fails.  Without a usable GPU it says why in one line and checks
the CPU side: every layer in float32 against float64, and the training run.
"""

from __future__ import annotations

import platform
import sys
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from typing import Any

import numpy

from .._version import __version__
from ..backend import (
    AGREEMENT,
    Device,
    GPUUnavailableError,
    gpu_name,
    gpu_unavailable_reason,
    on_device,
    parse_device,
    synchronize,
    to_device,
    to_numpy,
)
from ..datasets import load_mnist
from ..layers import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    Dropout,
    GlobalAvgPooling,
    Pooling,
    Relu,
    Residual,
    Sequential,
    Sigmoid,
    SoftmaxWithLoss,
)
from ..layers.composite import iter_leaves
from ..models import DeepConvNet, ResNet, SimpleConvNet
from ..optim import Adam
from .common import OneLineParser, UsageError, flag_error, run_command

PROG = "python -m cnn_xp.doctor"
STEPS, BATCH = 100, 100


# --------------------------------------------------------------------------- what is installed


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(name, version) of cnn_xp and what it runs on; CUDA's from CuPy when CuPy imports."""
    from ..threads import blas_description

    rows = [("cnn_xp", __version__), ("Python", platform.python_version()), ("NumPy", numpy.__version__)]
    rows.append(("BLAS", blas_description()))
    try:
        import cupy

        rows.append(("CuPy", cupy.__version__))
        runtime = cupy.cuda.runtime
        rows.append(("CUDA runtime", _cuda_version(runtime.runtimeGetVersion())))
        rows.append(("CUDA driver", _cuda_version(runtime.driverGetVersion())))
        rows.append(("NCCL", _nccl_version()))
    except Exception as exc:
        rows.append(("CuPy", f"not usable ({type(exc).__name__}: {exc})"[:120]))
    rows += [("mpi4py", _version("mpi4py")), ("PyTorch", _version("torch")), ("C kernels", _native_state())]
    return rows


def _native_state() -> str:
    """Whether the CPU's compiled kernels run (cnn_xp.functions.native)."""
    from ..functions import native
    from ..functions.fast_paths import native_enabled

    if not native.available():
        return "not built (the NumPy passes run instead)"
    return "built, in use" if native_enabled() else "built, turned off (CNN_XP_NATIVE=0 or numpy_kernels())"


def _nccl_version() -> str:
    """NCCL's version, or why CuPy cannot load it (said here, not as a warning on stderr)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            from cupy.cuda import nccl

            if getattr(nccl, "available", True):
                return str(nccl.get_version())
            reason = "CuPy could not load libnccl"
        except Exception as exc:  # NCCL is optional in CuPy
            reason = f"{type(exc).__name__}: {exc}"
    said = [line.strip() for w in caught for line in str(w.message).splitlines() if line.strip()]
    return f"unavailable ({' '.join(said[:2]) or reason})"[:160]


def _cuda_version(v: int) -> str:
    return f"{v // 1000}.{v % 1000 // 10}" if v else "none found"


def gpus() -> list[str]:
    """One line per CUDA device: index, name, total memory."""
    import cupy

    lines = []
    for i in range(cupy.cuda.runtime.getDeviceCount()):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        lines.append(f"gpu:{i}  {gpu_name(i)}  {props['totalGlobalMem'] / 2**30:.1f} GiB")
    return lines


# --------------------------------------------------------------------------- layer cases

Case = Callable[[Any, str], tuple[Any, tuple[Any, ...]]]  # (device, dtype) -> (layer, forward inputs)


def _host(shape: tuple[int, ...], seed: int, dtype: str) -> numpy.ndarray:
    return numpy.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _cases() -> dict[str, Case]:
    def put(a: numpy.ndarray, device: Any) -> Any:
        return to_device(a, device)

    def conv(stride: int) -> Case:
        return lambda d, t: (
            Convolution(put(_host((4, 3, 3, 3), 1, t), d), put(_host((4,), 2, t), d), stride=stride, pad=1),
            (put(_host((5, 3, 9, 9), 3, t), d),),
        )

    labels = numpy.array([0, 3, 9, 1, 4])
    return {
        "Convolution 3x3 stride 1": conv(1),
        "Convolution 3x3 stride 2": conv(2),
        "Pooling 2x2": lambda d, t: (Pooling(2, 2), (put(_host((5, 3, 8, 8), 3, t), d),)),
        "AvgPooling 2x2": lambda d, t: (AvgPooling(2, 2), (put(_host((5, 3, 8, 8), 3, t), d),)),
        "Affine": lambda d, t: (
            Affine(put(_host((48, 7), 1, t), d), put(_host((7,), 2, t), d)),
            (put(_host((5, 3, 4, 4), 3, t), d),),
        ),
        "Relu": lambda d, t: (Relu(), (put(_host((5, 10), 3, t), d),)),
        "GlobalAvgPooling": lambda d, t: (GlobalAvgPooling(), (put(_host((5, 3, 4, 4), 3, t), d),)),
        "Sequential (convolution without bias, ReLU)": lambda d, t: (
            Sequential([("conv", Convolution(put(_host((4, 3, 1, 1), 1, t), d), None)), ("relu", Relu())]),
            (put(_host((5, 3, 4, 4), 3, t), d),),
        ),
        "Residual (3x3 stride 2 body, 1x1 stride 2 shortcut)": lambda d, t: (
            Residual(
                Convolution(put(_host((4, 3, 3, 3), 1, t), d), None, stride=2, pad=1),
                Convolution(put(_host((4, 3, 1, 1), 2, t), d), None, stride=2),
            ),
            (put(_host((5, 3, 8, 8), 3, t), d),),
        ),
        "Sigmoid": lambda d, t: (Sigmoid(), (put(_host((5, 10), 3, t), d),)),
        "BatchNormalization": lambda d, t: (
            BatchNormalization(put(_host((3,), 1, t) + 1, d), put(_host((3,), 2, t), d)),
            (put(_host((5, 3, 4, 4), 3, t), d),),
        ),
        "Dropout (inference)": lambda d, t: (Dropout(0.5, seed=0).eval(), (put(_host((5, 10), 3, t), d),)),
        "SoftmaxWithLoss": lambda d, t: (SoftmaxWithLoss(), (put(_host((5, 10), 3, t), d), put(labels, d))),
    }


def _run_case(case: Case, device: Any, dtype: str) -> list[numpy.ndarray]:
    """Forward output, input gradient and parameter gradients, on the host."""
    layer, inputs = case(device, dtype)
    with on_device(inputs[0]):
        y = layer.forward(*inputs)
        dy = 1 if isinstance(layer, SoftmaxWithLoss) else to_device(_host(tuple(y.shape), 4, dtype), device)
        dx = layer.backward(dy)
    leaves = [leaf for _, leaf in iter_leaves([("layer", layer)])]
    grads = [getattr(leaf, "d" + name) for leaf in leaves for name in leaf.param_names]
    return [to_numpy(a).astype(numpy.float64) for a in (y, dx, *grads)]


NETWORKS: dict[str, Callable[..., Any]] = {
    "SimpleConvNet": SimpleConvNet,
    "DeepConvNet": DeepConvNet,
    "ResNet-20": lambda **kw: ResNet(20, input_dim=(3, 32, 32), **kw),
}
"""The networks whose loss and gradients are compared, GPU against CPU: each ``make(seed=, dtype=, device=)``."""


def _network_case(make: Callable[..., Any], device: Any, dtype: str) -> list[numpy.ndarray]:
    net = make(seed=0, dtype=dtype, device=device)
    net.eval()  # Dropout's masks are random per device; its inference path is compared
    rng = numpy.random.default_rng(5)
    x = to_device(rng.random((8, *net.input_dim)).astype(dtype), net.device)
    t = to_device(rng.integers(0, 10, 8), net.device)
    grads = net.gradient(x, t)
    return [to_numpy(net.loss(x, t)).astype(numpy.float64)] + [
        to_numpy(g).astype(numpy.float64) for g in grads.values()
    ]


def _agree(got: list[numpy.ndarray], expected: list[numpy.ndarray], dtype: str) -> tuple[bool, float]:
    """(within tolerance, largest relative difference)."""
    rtol, atol = AGREEMENT[dtype]
    ok, worst = True, 0.0
    for a, b in zip(got, expected, strict=True):
        ok = ok and a.shape == b.shape and bool(numpy.allclose(a, b, rtol=rtol, atol=atol))
        scale = max(float(numpy.max(numpy.abs(b))) if b.size else 0.0, atol)
        worst = max(worst, float(numpy.max(numpy.abs(a - b))) / scale if a.size else 0.0)
    return ok, worst


# --------------------------------------------------------------------------- training run


def _training_run(device: Device) -> dict[str, float]:
    """100 steps of SimpleConvNet at batch 100 (float32, Adam, the bundled MNIST), then the loss
    and accuracy on the first 1,000 test images; images per second of the training steps."""
    (x, t), (xt, tt) = load_mnist()
    net, opt = SimpleConvNet(seed=0, device=device), Adam()
    order = numpy.random.default_rng(0).permutation(x.shape[0])[: STEPS * BATCH]
    with on_device(device):
        first = to_device(x[:BATCH], device)
        synchronize(first)
        start = time.perf_counter()
        for k in range(STEPS):
            idx = order[k * BATCH : (k + 1) * BATCH]
            loss, _ = net.forward(to_device(x[idx], device), to_device(t[idx], device))
            opt.update(net.params, net.backward())
        synchronize(loss)
        seconds = time.perf_counter() - start
        xs, ts = to_device(xt[:1000], device), to_device(tt[:1000], device)
        test_loss = float(net.loss(xs, ts, train_flg=False))
        acc = net.accuracy(xs, ts)
    return {"loss": float(loss), "test_loss": test_loss, "accuracy": acc, "images_per_s": STEPS * BATCH / seconds}


# --------------------------------------------------------------------------- the report


def _gpu_arg(spec: str) -> tuple[Device | None, str | None]:
    """The GPU ``--device`` names (``gpu``, ``gpu:N``, ``auto``), or None and why it is not usable."""
    try:
        device = parse_device(spec)
    except GPUUnavailableError as exc:
        return None, str(exc).replace(" Use device 'cpu' or 'auto'.", "")
    except (ValueError, TypeError) as exc:
        raise flag_error("--device", exc) from None
    if device.is_gpu:
        return device, None
    if spec.strip().lower() == "auto":
        return None, gpu_unavailable_reason(0)
    raise UsageError(f"--device: expected 'gpu', 'gpu:N' or 'auto' (the CPU is always checked), got {spec!r}")


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog,
        description="Check this install: versions, GPUs, every layer and the networks on the GPU against the CPU, "
        "a 100-step training run on each, PASS/FAIL (exit status 1 if anything disagrees, 2 if the GPU asked for "
        "is not usable: the CPU is checked all the same).",
    )
    p.add_argument(
        "--device", default="auto", help="the GPU to check: 'gpu', 'gpu:N', or 'auto' (GPU 0 if usable; the default)"
    )
    args = p.parse_args(argv)
    gpu, reason = _gpu_arg(args.device)
    asked = args.device.strip().lower() != "auto"  # a GPU was named: not finding it is a failure
    out: list[str] = ["cnn_xp doctor"]
    out += [f"  {name:14s} {value}" for name, value in versions()]
    if gpu is None:
        out.append(f"no GPU checked: {reason}")
    else:
        out += ["GPUs:", *(f"  {line}" for line in gpus())]
    print("\n".join(out), flush=True)

    table: list[tuple[str, bool, str]] = []
    cases = _cases()
    for dtype in ("float32",) if gpu is None else ("float32", "float64"):  # on the CPU alone float64 is the reference
        for name, case in cases.items():
            reference = _run_case(case, "cpu", "float64" if gpu is None else dtype)
            got = _run_case(case, "cpu" if gpu is None else gpu, dtype)
            ok, worst = _agree(got, reference, dtype)
            where = "CPU float32 vs float64" if gpu is None else f"GPU vs CPU {dtype}"
            table.append((f"{name} ({where})", ok, f"max rel diff {worst:.1e}"))
    if gpu is not None:
        for dtype in ("float32", "float64"):
            for name, make in NETWORKS.items():
                ok, worst = _agree(_network_case(make, gpu, dtype), _network_case(make, "cpu", dtype), dtype)
                table.append((f"{name} loss and gradients (GPU vs CPU {dtype})", ok, f"max rel diff {worst:.1e}"))
    runs = {"cpu": _training_run(Device("cpu"))}
    if gpu is not None:
        runs[str(gpu)] = _training_run(gpu)
    for where, r in runs.items():
        table.append(
            (
                f"{STEPS}-step training on {where}",
                numpy.isfinite(r["loss"]) and r["accuracy"] > 0.8,
                f"loss {r['loss']:.4f}, test accuracy {r['accuracy']:.1%}, {r['images_per_s']:.0f} img/s",
            )
        )
    if gpu is not None:
        c, g = runs["cpu"], runs[str(gpu)]
        close = abs(c["test_loss"] - g["test_loss"]) <= 0.02 and abs(c["accuracy"] - g["accuracy"]) <= 0.01
        table.append(
            (
                "training run, GPU vs CPU",
                close,
                f"test loss {g['test_loss']:.4f} vs {c['test_loss']:.4f}, accuracy {g['accuracy']:.1%} vs "
                f"{c['accuracy']:.1%}; speed GPU/CPU {g['images_per_s'] / c['images_per_s']:.1f}x",
            )
        )
    width = max(len(name) for name, _, _ in table)
    lines = [f"  {'PASS' if ok else 'FAIL'}  {name:<{width}}  {detail}" for name, ok, detail in table]
    failed = sum(not ok for _, ok, _ in table)
    summary = f"{len(table) - failed} passed, {failed} failed"
    if gpu is None and asked:
        summary += f"; {args.device} not checked: not usable"
    lines.append(summary)
    print("\n".join(lines), flush=True)
    return 1 if failed else 2 if gpu is None and asked else 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "versions"]
