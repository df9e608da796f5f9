"""Train briefly, export to ONNX, and run the file in ONNX Runtime next to cnn_xp.

python examples/export_onnx.py                 # CPU, 3000 training images, 1 epoch (~10 s)
python examples/export_onnx.py --device gpu --out /tmp/onnx

Needs the onnx extra: pip install 'cnn_xp[onnx]' (onnx builds the graph, onnxruntime runs it).
"""

from __future__ import annotations

import sys

import numpy as np
from _common import device_from_args

import cnn_xp
from cnn_xp import Adam, SimpleConvNet
from cnn_xp.data import DataLoader
from cnn_xp.datasets import load_mnist
from cnn_xp.train import Trainer

device, args = device_from_args(
    __doc__.splitlines()[0],
    [
        ("--train-size", {"type": int, "default": 3000}),
    ],
    out="export_onnx",
)
try:
    import onnxruntime
except ImportError:
    print(f"{sys.argv[0]}: this example runs the model in ONNX Runtime: pip install 'cnn_xp[onnx]'", file=sys.stderr)
    sys.exit(2)

# 1. A briefly trained SimpleConvNet (any network of cnn_xp layers exports the same way).
(x, t), (xt, tt) = load_mnist(normalize=False)
train = DataLoader(x[: args.train_size], t[: args.train_size], 100, shuffle=True, seed=0, device=device, scale=1 / 255)
model = SimpleConvNet(weight_init_std="he", seed=0, device=device)
Trainer(model, Adam(lr=0.002), train, None, quiet=True).fit(1)

# 2. Export: float32, a dynamic batch dimension, opset 17; the file is written atomically.
path = args.out / "simple_convnet.onnx"
cnn_xp.export_onnx(model.eval(), path)
print(f"wrote {path} (opset {cnn_xp.export.OPSET}, input 'input' (N, 1, 28, 28), output 'scores' (N, 10))")

# 3. Run it in ONNX Runtime on 1000 test images and compare with cnn_xp on the same images.
images = (xt[:1000] / 255).astype(np.float32)
session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
(onnx_scores,) = session.run(None, {"input": images})
with cnn_xp.no_grad():
    ours = cnn_xp.to_numpy(model.predict(cnn_xp.to_device(images, model.device)))
print(
    f"ONNX Runtime {onnxruntime.__version__}: max |difference| to cnn_xp {np.max(np.abs(onnx_scores - ours)):.1e}, "
    f"same class for {np.mean(onnx_scores.argmax(1) == ours.argmax(1)):.1%} of images, "
    f"accuracy {np.mean(onnx_scores.argmax(1) == tt[:1000]):.2%}"
)
