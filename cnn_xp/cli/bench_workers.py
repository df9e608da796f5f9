"""The benchmark's measurements, each run in a fresh process by :mod:`cnn_xp.cli.bench`.

A *case* is a network (a registered model name) on an input shape (``mnist``: 1x28x28,
``cifar``: 3x32x32) with its weights (random, seed 0, or a checkpoint's), and a *mode*:

* ``train`` -- forward + backward + the optimizer's update at the training batch;
* ``infer`` -- the forward pass under ``no_grad`` at the inference batch;
* ``latency`` -- the forward pass of one image, median milliseconds per call.

Every engine runs the same network with the same weights on the same number of threads:
cnn_xp; PyTorch eager in NCHW (``torch``) and in ``channels_last``; ``torch.compile``
(``compile``: its compile time, the first step's, reported apart); ONNX Runtime on cnn_xp's
own ONNX export (``onnxruntime``, inference only).  ``peak`` measures the machine's float32
matrix-product peak (NumPy's BLAS, and PyTorch's when installed).
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Any

import numpy

INPUTS = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
ENGINES = ("cnn_xp", "torch", "channels_last", "compile", "onnxruntime")
TORCH_ENGINES = ("torch", "channels_last", "compile")


def peak_rss_mib() -> float:
    """This process's peak resident memory since it started its program, in MiB.

    Linux's ``VmHWM`` when there is one: ``getrusage``'s ``ru_maxrss`` also counts the memory of
    the parent the worker was started from (it keeps the larger of the peaks before and after
    ``exec``): a worker would report its parent's peak instead of its own."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def threads() -> int:
    """The threads every engine gets: cnn_xp's default, one per usable core."""
    from cnn_xp.train.resources import default_threads

    return default_threads()


# --------------------------------------------------------------------------- the network and its FLOPs


def network(model: str, shape: tuple[int, ...], weights: str | None) -> tuple[Any, Any]:
    """(the cnn_xp network on the CPU, its optimizer): random weights (seed 0, Adam) or a checkpoint's."""
    from cnn_xp.models import build_named_model
    from cnn_xp.optim import Adam

    if weights is None:
        return build_named_model(model, shape, 10, seed=0, device="cpu"), Adam()
    from cnn_xp.train import load_checkpoint

    ck = load_checkpoint(weights)
    return ck.build_model(device="cpu", dtype="float32"), ck.build_optimizer(device="cpu")


def flops(net: Any, shape: tuple[int, ...]) -> dict[str, float]:
    """Floating-point operations per image of the direct computation (2 per multiply-add of every
    convolution and affine layer): the forward pass, and a training step (forward, the weights'
    gradients, and the inputs' gradients of every layer but the first, which needs none)."""
    from cnn_xp.layers import Affine, Convolution
    from cnn_xp.layers.composite import Composite, Residual

    per_layer: list[float] = []

    def walk(layer: Any, s: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(layer, Residual):
            out = walk(layer.body, s)
            if layer.shortcut is not None:
                walk(layer.shortcut, s)
            return out
        if isinstance(layer, Composite):
            for _, child in layer.children():
                s = walk(child, s)
            return s
        out = type(layer).output_shape(layer.config(), s)
        if isinstance(layer, Convolution):
            fn, c, kh, kw = (int(d) for d in layer.W.shape)
            per_layer.append(2.0 * fn * c * kh * kw * out[1] * out[2])
        elif isinstance(layer, Affine):
            per_layer.append(2.0 * layer.W.shape[0] * layer.W.shape[1])
        return tuple(out) if out is not None else s

    s = tuple(shape)
    for layer in net.layers.values():
        s = walk(layer, s)
    forward = sum(per_layer)
    return {"forward": forward, "train": 3 * forward - (per_layer[0] if per_layer else 0.0)}


# --------------------------------------------------------------------------- timing


def _time(step: Any, steps: int, warmup: int, sync: Any = None) -> tuple[float, list[float]]:
    """(seconds of the first call, per-call seconds of ``steps`` timed calls after ``warmup``)."""
    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if sync is not None:
            sync()
        times.append(time.perf_counter() - start)
    return first, times


def _result(batch: int, first: float, times: list[float], latency: bool) -> dict[str, Any]:
    median = statistics.median(times)
    out = {"images_per_s": batch / median, "ms_per_call": 1e3 * median, "first_call_s": first}
    if not latency:  # throughput over the whole timed run, as a training loop sees it
        out["images_per_s"] = batch * len(times) / sum(times)
    return {**out, "peak_rss_mib": peak_rss_mib()}


def _inputs(shape: tuple[int, ...], batch: int) -> tuple[numpy.ndarray, numpy.ndarray]:
    rng = numpy.random.default_rng(0)
    return rng.random((batch, *shape), dtype=numpy.float32), rng.integers(0, 10, batch)


# --------------------------------------------------------------------------- engines


def run_cnn_xp(case: dict[str, Any]) -> dict[str, Any]:
    from cnn_xp.backend import is_gpu_array, synchronize, to_device
    from cnn_xp.heap import keep_freed_memory
    from cnn_xp.layers import no_grad

    keep_freed_memory()  # as cnn_xp's programs do
    shape = tuple(case["shape"])
    device = case.get("device", "cpu")
    net, opt = network(case["model"], shape, case.get("weights"))
    net.to_device(device)
    opt.to_device(device)
    x, t = (to_device(a, device) for a in _inputs(shape, case["batch"]))
    if case["mode"] == "train":
        net.train()

        def step() -> None:
            opt.update(net.params, net.gradient(x, t))
    else:
        net.eval()

        def step() -> None:
            with no_grad():
                net.predict(x)

    first, times = _time(step, case["steps"], case["warmup"], sync=lambda: synchronize(x))
    out = _result(case["batch"], first, times, case["mode"] == "latency")
    if is_gpu_array(x):
        import cupy

        # the pool keeps every freed block (nothing frees them): its size is the high-water mark of
        # reserved memory, the quantity PyTorch's max_memory_reserved() gives
        out["gpu_reserved_peak_mib"] = cupy.get_default_memory_pool().total_bytes() / 2**20
    return out


def _torch_optimizer(torch: Any, net: Any, opt: Any, module: Any) -> Any:
    """PyTorch's counterpart of cnn_xp's optimizer ``opt`` over ``module``, with ``opt``'s state
    (Adam's moments, momentum's velocity) copied, so that both update the same trained state."""
    from cnn_xp.export.torch_module import torch_parameters

    params = torch_parameters(net, module)
    state = opt.state_dict()

    def tensor(key: str, a: numpy.ndarray) -> Any:
        p = params[key]
        value = torch.from_numpy(numpy.ascontiguousarray(a, dtype=numpy.float32)).to(p.device)
        return value.T.contiguous() if tuple(value.shape) != tuple(p.shape) else value

    name = state["name"]
    if name == "Momentum":
        lr = state["hyper"]["lr"]
        out = torch.optim.SGD(module.parameters(), lr=lr, momentum=state["hyper"]["momentum"])
        for key, v in state["state"].get("v", {}).items():  # cnn_xp: v = mu v - lr g; PyTorch: b = mu b + g
            out.state[params[key]] = {"momentum_buffer": tensor(key, -numpy.asarray(v) / lr)}
        return out
    out = torch.optim.Adam(module.parameters(), lr=state["hyper"].get("lr", 0.001))
    if name == "Adam":
        m, v = state["state"].get("m", {}), state["state"].get("v", {})
        for key in m:
            out.state[params[key]] = {
                "step": torch.tensor(float(state["iter"])),
                "exp_avg": tensor(key, m[key]),
                "exp_avg_sq": tensor(key, v[key]),
            }
    return out


def run_torch(case: dict[str, Any]) -> dict[str, Any]:
    import torch

    from cnn_xp.export.torch_module import to_torch

    torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    shape = tuple(case["shape"])
    net, opt = network(case["model"], shape, case.get("weights"))
    dev = torch.device(case.get("device", "cpu").replace("gpu", "cuda"))
    if dev.type == "cuda":  # like with like: full FP32 products, as CuPy's cuBLAS computes them
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
    module = to_torch(net).to(dev)
    x, t = (torch.from_numpy(a).to(dev) for a in _inputs(shape, case["batch"]))
    if case["engine"] == "channels_last":
        module = module.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    run = torch.compile(module) if case["engine"] == "compile" else module
    if case["mode"] == "train":
        module.train()
        optimizer = _torch_optimizer(torch, net, opt, module)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss_fn(run(x), t).backward()
            optimizer.step()
    else:
        module.eval()

        def step() -> None:
            with torch.no_grad():
                run(x)

    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    first, times = _time(step, case["steps"], case["warmup"], sync=sync)
    out = _result(case["batch"], first, times, case["mode"] == "latency")
    if dev.type == "cuda":
        out["gpu_reserved_peak_mib"] = torch.cuda.max_memory_reserved(dev) / 2**20
    return out


def run_onnxruntime(case: dict[str, Any]) -> dict[str, Any]:
    import onnxruntime as ort

    from cnn_xp.export import to_onnx

    shape = tuple(case["shape"])
    net, _ = network(case["model"], shape, case.get("weights"))
    net.eval()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = case["threads"], 1
    session = ort.InferenceSession(to_onnx(net, shape).SerializeToString(), options, providers=["CPUExecutionProvider"])
    x, _ = _inputs(shape, case["batch"])
    first, times = _time(lambda: session.run(None, {"input": x}), case["steps"], case["warmup"])
    return _result(case["batch"], first, times, case["mode"] == "latency")


def run_peak(case: dict[str, Any]) -> dict[str, Any]:
    """The best float32 matrix-product rate (GFLOP/s) over square sizes, NumPy's BLAS and PyTorch's."""
    rates: dict[str, float] = {}
    for n in (1024, 2048, 3072):
        a = numpy.random.default_rng(0).random((n, n), dtype=numpy.float32)
        a @ a
        _, times = _time(lambda a=a: a @ a, 5, 1)
        rates["numpy"] = max(rates.get("numpy", 0.0), 2 * n**3 / min(times) / 1e9)
    try:
        import torch
    except ImportError:
        return rates
    torch.set_num_threads(case["threads"])
    for n in (1024, 2048, 3072):
        t = torch.rand(n, n)
        _, times = _time(lambda t=t: t @ t, 5, 2)
        rates["torch"] = max(rates.get("torch", 0.0), 2 * n**3 / min(times) / 1e9)
    return rates


def make_trained(model: str, shape: tuple[int, ...], steps: int, out: str) -> dict[str, Any]:
    """Train ``model`` ``steps`` steps of 100 bundled MNIST images (Adam, the run's defaults) and
    write its checkpoint to ``out``/last.safetensors: trained weights and optimizer state."""
    from cnn_xp.train.config import RunConfig
    from cnn_xp.train.run import Run

    if tuple(shape) != INPUTS["mnist"]:
        raise ValueError(f"trained weights for {shape} inputs need a checkpoint (no such data is bundled)")
    config = RunConfig(model=model, train_size=100 * steps, test_size=500, epochs=1, shift=0, device="cpu",
                       out=out, quiet=True, lr_schedule="constant")  # fmt: skip
    Run(config).fit()
    return {"checkpoint": os.path.join(out, "last.safetensors")}


def subnormals(weights: str) -> int:
    """How many subnormal float32 values a checkpoint's weights and optimizer state hold."""
    from cnn_xp.train import load_checkpoint

    ck = load_checkpoint(weights)
    arrays = list(ck.model_state.values())
    if ck.optimizer is not None:
        arrays += [a for slot in ck.optimizer["state"].values() for a in slot.values()]
    tiny = numpy.finfo(numpy.float32).tiny
    return int(sum(numpy.count_nonzero((a != 0) & (numpy.abs(a.astype(numpy.float32)) < tiny)) for a in arrays))


ENGINE_RUNNERS = {
    "cnn_xp": run_cnn_xp,
    "torch": run_torch,
    "channels_last": run_torch,
    "compile": run_torch,
    "onnxruntime": run_onnxruntime,
    "peak": run_peak,
}
