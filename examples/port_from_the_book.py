"""The book's ch. 7 training loop (train_convnet.py), ported by changing the imports only —
then moved to the GPU with one line.

    python examples/port_from_the_book.py                 # CPU, 2000 iterations' worth cut to 300 (< 1 min)
    python examples/port_from_the_book.py --device gpu
"""

from __future__ import annotations

import numpy as np
from _common import device_from_args

# Before:  from dataset.mnist import load_mnist / from simple_convnet import SimpleConvNet / from common.optimizer import Adam
from cnn_xp import Adam, SimpleConvNet, to_device
from cnn_xp.datasets import load_mnist

device, args = device_from_args(
    __doc__.splitlines()[0], [("--iters", {"type": int, "default": 300})], out="port_from_the_book"
)

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)

network = SimpleConvNet(
    input_dim=(1, 28, 28),
    conv_param={"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
    hidden_size=100,
    output_size=10,
    weight_init_std=0.01,
)
network.to_device(device)  # <- the one line that moves the book's network to the GPU
x_train, t_train, x_test, t_test = (to_device(a, device) for a in (x_train, t_train, x_test, t_test))  # data goes along

optimizer = Adam(lr=0.001)
batch_size, train_loss_list = 100, []
rng = np.random.default_rng(0)
for i in range(args.iters):
    batch_mask = to_device(rng.choice(x_train.shape[0], batch_size), device)
    x_batch, t_batch = x_train[batch_mask], t_train[batch_mask]
    grads = network.gradient(x_batch, t_batch)
    optimizer.update(network.params, grads)
    train_loss_list.append(network.loss(x_batch, t_batch))  # stays on the device; no sync per step
    if i % 100 == 0:
        print(f"iteration {i}: loss {float(train_loss_list[-1]):.4f}")

print(f"test accuracy: {network.accuracy(x_test, t_test):.4f}")
network.save_params(args.out / "params.safetensors")  # the book wrote params.pkl with pickle; this is safetensors
print(f"saved {args.out / 'params.safetensors'}")
