"""Your own images: a folder of class folders, trained on, evaluated and predicted from.

python examples/own_images.py                    # generated shapes, CPU, about 20 s
python examples/own_images.py --data path/to/photos --model resnet20 --epochs 20

Any folder of images works the same: DIR/<class>/*.png|jpg|... (a fifth of each class held out
for testing), or DIR/train/<class>/ and DIR/test/<class>/.  This example writes a folder of
coloured shapes first (cnn_xp.datasets.shapes) when no --data is given.
"""

from __future__ import annotations

from _common import device_from_args

from cnn_xp import to_device, to_numpy
from cnn_xp.datasets import load_image_folder
from cnn_xp.datasets.shapes import write_shapes_folder
from cnn_xp.train import load_checkpoint
from cnn_xp.train.config import RunConfig
from cnn_xp.train.run import Run

device, args = device_from_args(
    __doc__.splitlines()[0],
    [
        ("--data", {"default": None, "help": "a folder of class folders (default: generated shapes)"}),
        ("--model", {"default": "simple", "help": "a registered model: simple, deep, resnet20, ..."}),
        ("--epochs", {"type": int, "default": 10}),
    ],
    out="own_images",
)

# 1. The data: a folder of class folders; here 150 images of each of four shapes, mixed formats,
#    sizes, colour and grey.  Reading it once decodes and caches it; later runs start from the cache.
data = args.data or write_shapes_folder(args.out / "shapes", per_class=150, size=16)
folder = load_image_folder(data)
print(folder.report)

# 2. A run: the same settings as `cnn_xp train --dataset DIR --augment`.  It normalises each
#    channel with the training split's statistics and stores them, and the class names, in its
#    checkpoints.
config = RunConfig(
    model=args.model, dataset=str(data), epochs=args.epochs, batch_size=20, augment=True, device=str(device),
    out=str(args.out / "run"), quiet=True,
)  # fmt: skip
summary = Run(config).fit()
print(f"test accuracy after {args.epochs} epochs: {summary['final_test_acc']:.2%}")

# 3. The checkpoint knows its classes and its preprocessing: predict one test image the way
#    `cnn_xp predict` does.
checkpoint = load_checkpoint(args.out / "run" / "best.safetensors")
net = checkpoint.build_model(device=device).eval()
x, t = folder.splits["test"]
scores = net.predict(to_device(checkpoint.preprocess.apply_host(x[:1]), net.device))
names = checkpoint.class_names(len(folder.classes))
print(f"the first test image is a {names[int(t[0])]}; the network says {names[int(to_numpy(scores).argmax())]}")
