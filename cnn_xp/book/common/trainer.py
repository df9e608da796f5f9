"""``from common.trainer import Trainer``: the book's training loop, as the book runs it.

Mini-batches are drawn with replacement by NumPy's global generator (``np.random.choice``),
the loss of every step is printed when ``verbose``, and train/test accuracy is measured on
``evaluate_sample_num_per_epoch`` samples at the start of each epoch — all as in the book,
so its scripts print what they printed. (cnn_xp's own :class:`cnn_xp.train.Trainer` shuffles
epochs, checkpoints and reports throughput instead.)
"""

from __future__ import annotations

from typing import Any

import numpy

from ...backend import to_numpy
from ...optim import OPTIMIZERS


class Trainer:
    """Train ``network`` (anything with ``gradient``, ``loss``, ``accuracy`` and ``params``) on
    host arrays with ``optimizer`` ('SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop' or
    'Adam', any case) built from ``optimizer_param``."""

    def __init__(
        self,
        network: Any,
        x_train: Any,
        t_train: Any,
        x_test: Any,
        t_test: Any,
        epochs: int = 20,
        mini_batch_size: int = 100,
        optimizer: str = "SGD",
        optimizer_param: dict[str, float] | None = None,
        evaluate_sample_num_per_epoch: int | None = None,
        verbose: bool = True,
    ) -> None:
        name = str(optimizer).lower()
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer: expected one of {sorted(OPTIMIZERS)} (any case), got {optimizer!r}")
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.optimizer = OPTIMIZERS[name](**(optimizer_param if optimizer_param is not None else {"lr": 0.01}))
        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0
        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

    def train_step(self) -> None:
        batch_mask = numpy.random.choice(self.train_size, self.batch_size)
        x_batch, t_batch = self.x_train[batch_mask], self.t_train[batch_mask]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = float(to_numpy(self.network.loss(x_batch, t_batch)))
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))
        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            x_train_sample, t_train_sample = self.x_train, self.t_train
            x_test_sample, t_test_sample = self.x_test, self.t_test
            if self.evaluate_sample_num_per_epoch is not None:
                t = self.evaluate_sample_num_per_epoch
                x_train_sample, t_train_sample = self.x_train[:t], self.t_train[:t]
                x_test_sample, t_test_sample = self.x_test[:t], self.t_test[:t]
            train_acc = self.network.accuracy(x_train_sample, t_train_sample)
            test_acc = self.network.accuracy(x_test_sample, t_test_sample)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, test acc:{test_acc} ===")
        self.current_iter += 1

    def train(self) -> None:
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
