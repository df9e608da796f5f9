"""The library API end to end: data, model, optimizer, Trainer, checkpoint, evaluation.

python examples/train_mnist.py                 # CPU, 10000 training images, 2 epochs (< 1 min)
python examples/train_mnist.py --device gpu --train-size 60000 --epochs 8
"""

from __future__ import annotations

from _common import device_from_args

from cnn_xp import Adam, SimpleConvNet
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist
from cnn_xp.optim import cosine
from cnn_xp.train import Trainer, load_checkpoint

device, args = device_from_args(
    __doc__.splitlines()[0],
    [("--train-size", {"type": int, "default": 10000}), ("--epochs", {"type": int, "default": 2})],
    out="train_mnist",
)

# 1. Data: uint8 images (N, 1, 28, 28) stay small on the host; the loader casts and scales on the device.
(x_train, t_train), (x_test, t_test) = load_mnist(normalize=False)
train = DataLoader(
    x_train[: args.train_size],
    t_train[: args.train_size],
    batch_size=100,
    shuffle=True,
    seed=0,
    device=device,
    scale=1 / 255,
    shift=2,
)
test = DataLoader(x_test, t_test, batch_size=1000, shuffle=False, device=device, scale=1 / 255)

# 2. Model and optimizer: the book's SimpleConvNet with He initialisation, Adam with cosine decay.
model = SimpleConvNet(weight_init_std="he", seed=0, device=device)
optimizer = Adam(lr=0.002)

# 3. Train. The Trainer writes last.safetensors / best.safetensors / metrics.csv to out_dir.
out = args.out
trainer = Trainer(model, optimizer, train, test, out_dir=out, lr_schedule=cosine(0.002, args.epochs * len(train)))
history = trainer.fit(args.epochs)
print(
    f"test accuracy after {args.epochs} epochs: {history[-1]['test_acc']:.2%} ({history[-1]['images_per_s']:.0f} images/s)"
)

# 4. A checkpoint is a safetensors file: load it on the CPU, whatever device wrote it.
checkpoint = load_checkpoint(out / "best.safetensors")
restored = checkpoint.build_model(device="cpu")
print(
    f"restored {checkpoint.model_config['name']} from {out / 'best.safetensors'}: "
    f"accuracy {restored.accuracy(load_mnist()[1][0], t_test, batch_size=1000):.2%} on the CPU"
)
