"""Build a new network from the layers — two convolutions with BatchNorm, Dropout — train it,
and rebuild it from its checkpoint (which records the layers, so any such network comes back).

python examples/custom_network.py              # CPU, 5000 training images, 1 epoch (< 1 min)

Writes the run (checkpoints, metrics, plots) into runs/examples/custom_network/ (--out DIR).
"""

from __future__ import annotations

import numpy as np
from _common import device_from_args

import cnn_xp
from cnn_xp import Adam, Affine, BatchNormalization, Convolution, Dropout, Network, Pooling, Relu
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist
from cnn_xp.train import Trainer, load_checkpoint

device, args = device_from_args(
    __doc__.splitlines()[0],
    [("--train-size", {"type": int, "default": 5000}), ("--epochs", {"type": int, "default": 1})],
    out="custom_network",
)
rng = np.random.default_rng(0)


def conv(c_in: int, c_out: int) -> Convolution:
    """3x3 'same' convolution with He-initialised weights (out, in, kh, kw), placed on the device."""
    W = cnn_xp.he_normal((c_out, c_in, 3, 3), fan_in=c_in * 9, rng=rng)
    return Convolution(
        cnn_xp.to_device(W, device), cnn_xp.to_device(np.zeros(c_out, np.float32), device), stride=1, pad=1
    )


def bn(c: int) -> BatchNormalization:
    return BatchNormalization(
        cnn_xp.to_device(np.ones(c, np.float32), device), cnn_xp.to_device(np.zeros(c, np.float32), device)
    )


def affine(d_in: int, d_out: int) -> Affine:
    W = cnn_xp.he_normal((d_in, d_out), fan_in=d_in, rng=rng)
    return Affine(cnn_xp.to_device(W, device), cnn_xp.to_device(np.zeros(d_out, np.float32), device))


# (N, 1, 28, 28) -> conv 16 -> BN -> ReLU -> pool -> (N, 16, 14, 14) -> conv 32 -> BN -> ReLU -> pool -> (N, 32, 7, 7)
model = Network(
    [
        ("conv1", conv(1, 16)),
        ("bn1", bn(16)),
        ("relu1", Relu()),
        ("pool1", Pooling(2, 2, stride=2)),
        ("conv2", conv(16, 32)),
        ("bn2", bn(32)),
        ("relu2", Relu()),
        ("pool2", Pooling(2, 2, stride=2)),
        ("fc1", affine(32 * 7 * 7, 64)),
        ("relu3", Relu()),
        ("drop", Dropout(0.3, seed=0)),
        ("fc2", affine(64, 10)),
    ]
)
print(model)
print("parameters:", {k: tuple(v.shape) for k, v in model.params.items()})  # W1, b1, gamma1, beta1, ...

(x, t), (xt, tt) = load_mnist(normalize=False)
train = DataLoader(x[: args.train_size], t[: args.train_size], 100, shuffle=True, seed=0, device=device, scale=1 / 255)
test = DataLoader(xt[:2000], tt[:2000], 1000, shuffle=False, device=device, scale=1 / 255)
history = Trainer(model, Adam(lr=0.002), train, test, out_dir=args.out, quiet=True).fit(args.epochs)
print(f"test accuracy: {history[-1]['test_acc']:.2%}")
# The checkpoint holds the network's description: the same layers come back, with their weights,
# BatchNorm statistics and dropout generator (cnn_xp evaluate/predict and --resume take it too).
restored = load_checkpoint(args.out / "last.safetensors").build_model(device=device)
acc = restored.accuracy(cnn_xp.to_device(xt[:2000] / np.float32(255), device), cnn_xp.to_device(tt[:2000], device))
print(f"rebuilt from {args.out / 'last.safetensors'}: {type(restored).__name__} of {len(restored.layers)} layers, "
      f"test accuracy {acc:.2%}")  # fmt: skip
