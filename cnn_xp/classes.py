"""Human-readable class names of the datasets cnn_xp knows."""

from __future__ import annotations

from .datasets.cifar10 import CLASSES as CIFAR10_CLASSES

FASHION_MNIST = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10 = CIFAR10_CLASSES


def class_names(dataset: str, num_classes: int) -> list[str]:
    """Names for ``dataset`` ('mnist', 'fashion-mnist', a CIFAR-10 directory, ...); digits otherwise."""
    from .datasets import is_cifar10_directory

    if dataset == "fashion-mnist" and num_classes == 10:
        return list(FASHION_MNIST)
    if dataset not in ("mnist", "fashion-mnist") and num_classes == 10 and is_cifar10_directory(dataset):
        return list(CIFAR10)
    return [str(i) for i in range(num_classes)]
