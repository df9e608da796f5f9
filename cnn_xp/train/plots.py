"""PNG figures of a run: learning curves and the first convolution's filters (matplotlib, Agg)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Loss (left) and train/test accuracy (right) per epoch."""
    plt = _pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", label="train loss")
    if all(h.get("test_loss") is not None for h in history):
        ax_loss.plot(epochs, [h["test_loss"] for h in history], marker="s", label="test loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [h["train_acc"] for h in history], marker="o", label="train (running, training mode)")
    if all(h.get("test_acc") is not None for h in history):
        ax_acc.plot(epochs, [h["test_acc"] for h in history], marker="s", label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    ax_acc.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_filters(W: numpy.ndarray, path: str | os.PathLike[str], nx: int = 8) -> None:
    """Filters ``W`` (FN, C, FH, FW) in a grid, like the book's ``filter_show``: one grey image
    per filter (channel 0; RGB when C == 3), each scaled to its own range."""
    plt = _pyplot()
    fn = W.shape[0]
    ny = int(numpy.ceil(fn / nx))
    fig = plt.figure(figsize=(nx * 0.9, ny * 0.9))
    fig.subplots_adjust(left=0, right=1, bottom=0, top=1, hspace=0.05, wspace=0.05)
    for i in range(fn):
        ax = fig.add_subplot(ny, nx, i + 1, xticks=[], yticks=[])
        if W.shape[1] == 3:
            img = W[i].transpose(1, 2, 0)
            img = (img - img.min()) / max(float(img.max() - img.min()), 1e-12)
            ax.imshow(img, interpolation="nearest")
        else:
            ax.imshow(W[i, 0], cmap="gray_r", interpolation="nearest")
    fig.savefig(path, dpi=100)
    plt.close(fig)
