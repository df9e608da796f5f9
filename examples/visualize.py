"""First-layer filters before and after training — with what training changed in them — and the
first layer's activations for one image, saved as PNG (filters_before.png, filters_after.png,
activations.png) in --out (default runs/examples/visualize).

    python examples/visualize.py                  # CPU, 5000 images, 1 epoch (< 1 min)
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from _common import device_from_args

from cnn_xp import Adam, SimpleConvNet, to_device, to_numpy
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist
from cnn_xp.train import Trainer
from cnn_xp.train.plots import plot_filters

device, args = device_from_args(
    __doc__.splitlines()[0], [("--train-size", {"type": int, "default": 5000})], out="visualize"
)
model = SimpleConvNet(weight_init_std="he", seed=0, device=device)
W0 = np.array(to_numpy(model.params["W1"]))  # a host copy: training updates W1 in place
plot_filters(W0, args.out / "filters_before.png", title="first-layer filters at initialisation (He, seed 0)")

(x, t), (xt, tt) = load_mnist(normalize=False)
train = DataLoader(x[: args.train_size], t[: args.train_size], 100, seed=0, device=device, scale=1 / 255)
Trainer(model, Adam(lr=0.002), train, quiet=True).fit(1)
W = to_numpy(model.params["W1"])
r = np.corrcoef(W.ravel(), W0.ravel())[0, 1]
title = f"after 1 epoch on {args.train_size} images (correlation with the initial filters {r:.2f})"
plot_filters(W, args.out / "filters_after.png", W0=W0, title=title)  # the second grid shows W - W0

# Activations of the first convolution (after ReLU) for one test image: (1, 30, 24, 24).
image = to_device(xt[:1].astype(np.float32) / 255, device)
act = to_numpy(model.layers["Relu1"].forward(model.layers["Conv1"].forward(image)))[0]
fig, axes = plt.subplots(4, 8, figsize=(8, 4.4))
for i, ax in enumerate(axes.flat):
    ax.set_xticks([]), ax.set_yticks([])
    if i == 0:
        ax.imshow(to_numpy(image)[0, 0], cmap="gray"), ax.set_title(f"input ({tt[0]})", fontsize=7)
    elif i <= act.shape[0]:
        ax.imshow(act[i - 1], cmap="viridis"), ax.set_title(f"filter {i}", fontsize=7)
    else:
        ax.axis("off")
fig.tight_layout()
fig.savefig(args.out / "activations.png", dpi=100)
print("wrote", *(str(args.out / n) for n in ("filters_before.png", "filters_after.png", "activations.png")))
