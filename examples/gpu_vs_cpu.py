"""The same network on the CPU and the GPU: agreement of outputs and gradients, and the speed-up.

python examples/gpu_vs_cpu.py        # skips the GPU half, saying why, when there is no GPU

Writes its figures to runs/examples/gpu_vs_cpu/results.json (--out DIR).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

import cnn_xp
from cnn_xp import DeepConvNet, SimpleConvNet, to_numpy


def throughput(net, x, t, steps=5) -> float:
    opt = cnn_xp.Adam()
    for _ in range(2):  # warm-up
        opt.update(net.params, net.gradient(x, t))
    float(net.loss(x, t))  # synchronise before timing
    start = time.perf_counter()
    for _ in range(steps):
        opt.update(net.params, net.gradient(x, t))
    float(net.loss(x, t))  # waits for the GPU to finish
    return steps * x.shape[0] / (time.perf_counter() - start)


parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--device", default="gpu", help="the GPU to compare with the CPU: gpu or gpu:N")
parser.add_argument(
    "--out", type=Path, default=Path("runs") / "examples" / "gpu_vs_cpu", help="folder for results.json"
)
cli = parser.parse_args()
gpu_spec = cli.device
rng = np.random.default_rng(0)
x = rng.random((100, 1, 28, 28), dtype=np.float32)
t = rng.integers(0, 10, 100)
try:
    gpu_device = cnn_xp.parse_device(gpu_spec)
    reason = None if gpu_device.is_gpu else f"--device {gpu_spec} is not a GPU"
except cnn_xp.GPUUnavailableError as exc:
    reason = str(exc)
results: dict = {"gpu": None if reason is not None else str(gpu_device), "skipped": reason, "networks": {}}
for name, make in (("SimpleConvNet", SimpleConvNet), ("DeepConvNet", DeepConvNet)):
    cpu = make(seed=0, device="cpu").eval()  # eval: no dropout, so both devices compute the same function
    row = results["networks"][name] = {"cpu_images_per_s": throughput(make(seed=0), x, t)}
    print(f"{name}: CPU {row['cpu_images_per_s']:.0f} images/s")
    if reason is not None:
        continue
    gpu = make(seed=0, device=gpu_device).eval()
    xg, tg = cnn_xp.to_device(x, gpu_device), cnn_xp.to_device(t, gpu_device)
    diff_out = np.max(np.abs(to_numpy(gpu.predict(xg)) - cpu.predict(x)))
    g_cpu, g_gpu = cpu.gradient(x, t), gpu.gradient(xg, tg)
    diff_grad = max(
        float(np.max(np.abs(to_numpy(g_gpu[k]) - g_cpu[k])) / (np.max(np.abs(g_cpu[k])) + 1e-12)) for k in g_cpu
    )
    gpu_rate = throughput(make(seed=0, device=gpu_device), xg, tg)
    row.update(max_output_diff=float(diff_out), max_relative_gradient_diff=diff_grad, gpu_images_per_s=gpu_rate)
    print(
        f"{name}: max |output diff| {diff_out:.2e}, max relative gradient diff {diff_grad:.2e}, GPU {gpu_rate:.0f} images/s"
    )
if reason is not None:
    print(f"GPU half skipped: {reason}", file=sys.stderr)
cli.out.mkdir(parents=True, exist_ok=True)
(cli.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
print(f"results: {cli.out / 'results.json'}")
