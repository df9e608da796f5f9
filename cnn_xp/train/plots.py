"""PNG figures of a run: learning curves and the first convolution's filters (matplotlib, Agg).

Figures are written atomically (a temporary file, then a rename), like every other output.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

import numpy

from ..serialization import write_atomically


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike[str]) -> None:
    plt = _pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(fig)
    write_atomically(path, buffer.getvalue())


def plot_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> None:
    """Loss (left) and train/test accuracy in percent (right) per epoch."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["loss"] for h in history], marker="o", label="train loss")
    if all(h.get("test_loss") is not None for h in history):
        ax_loss.plot(epochs, [h["test_loss"] for h in history], marker="s", label="test loss")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    ax_loss.legend()
    ax_acc.plot(epochs, [100 * h["train_acc"] for h in history], marker="o", label="train (running, training mode)")
    if all(h.get("test_acc") is not None for h in history):
        ax_acc.plot(epochs, [100 * h["test_acc"] for h in history], marker="s", label="test")
        best = max(history, key=lambda h: h["test_acc"])
        ax_acc.annotate(
            f"{100 * best['test_acc']:.2f}%",
            (best["epoch"], 100 * best["test_acc"]),
            textcoords="offset points",
            xytext=(0, -14),
            ha="center",
            fontsize=8,
        )
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    ax_acc.legend()
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if len(epochs) <= 12:  # each epoch its tick (a locator falls back to fractions on a short axis)
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    _save(fig, path)


def _grid(fig: Any, spec: Any, images: numpy.ndarray, limits: numpy.ndarray, cmap: str, nx: int) -> Any:
    """Draw (FN, H, W) ``images`` in a grid inside ``spec``; image i spans [-limits[i], limits[i]]."""
    fn = images.shape[0]
    ny = -(-fn // nx)
    cells = spec.subgridspec(ny, nx, hspace=0.08, wspace=0.08)
    shown = None
    for i in range(ny * nx):
        ax = fig.add_subplot(cells[i // nx, i % nx])
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= fn:
            ax.axis("off")
            continue
        shown = ax.imshow(images[i], cmap=cmap, vmin=-limits[i], vmax=limits[i], interpolation="nearest")
    return shown


def _as_rgb(images: numpy.ndarray, limits: numpy.ndarray) -> numpy.ndarray:
    """(FN, 3, H, W) signed values -> (FN, H, W, 3) in [0, 1], 0.5 meaning 0."""
    scaled = images / (2 * limits[:, None, None, None]) + 0.5
    return numpy.clip(scaled.transpose(0, 2, 3, 1), 0, 1)


def plot_filters(
    W: numpy.ndarray,
    path: str | os.PathLike[str],
    W0: numpy.ndarray | None = None,
    nx: int = 10,
    title: str | None = None,
) -> None:
    """The filters ``W`` (FN, C, FH, FW) of a first convolution, one small image each.

    Each filter is shown on its own symmetric scale (blue negative, red positive, white 0), so its
    structure is visible whatever its size. With ``W0`` (the weights before training) a second
    grid shows what training changed, ``W - W0``, on one common scale with a colour bar: the
    random initial weights often dominate the trained filters, and the change is where the
    learned edge and stroke detectors show.  Channel 0 is shown, or colour when C == 3.
    """
    plt = _pyplot()
    W = numpy.asarray(W, dtype=numpy.float64)
    fn, c = W.shape[:2]
    nx = min(nx, fn)
    ny = -(-fn // nx)
    panels = [("trained filters, each on its own scale (blue < 0 < red)", W, "own")]
    if W0 is not None:
        W0 = numpy.asarray(W0, dtype=numpy.float64)
        if W0.shape != W.shape:
            raise ValueError(f"W0: expected the shape of W {W.shape}, got {W0.shape}")
        panels.append(("change from the initial weights (W - W0), one common scale", W - W0, "common"))
    fig = plt.figure(figsize=(max(6.0, nx * 0.75 + 1.2), len(panels) * (ny * 0.75 + 0.7) + 0.6))
    outer = fig.add_gridspec(len(panels), 1, hspace=0.35, left=0.03, right=0.85, top=0.86, bottom=0.03)
    for row, (label, values, scaling) in enumerate(panels):
        flat = numpy.abs(values).reshape(fn, -1).max(axis=1)
        if scaling == "common":
            flat = numpy.full(fn, max(float(flat.max()), 1e-12))
        limits = numpy.maximum(flat, 1e-12)
        spec = outer[row]
        if c == 3:
            cells = spec.subgridspec(ny, nx, hspace=0.08, wspace=0.08)
            rgb = _as_rgb(values, limits)
            for i in range(ny * nx):
                ax = fig.add_subplot(cells[i // nx, i % nx], xticks=[], yticks=[])
                ax.imshow(rgb[i], interpolation="nearest") if i < fn else ax.axis("off")
            shown = None
        else:
            shown = _grid(fig, spec, values[:, 0], limits, "RdBu_r", nx)
        fig.text(0.03, spec.get_position(fig).y1 + 0.01, label, fontsize=9, va="bottom")
        if scaling == "common" and shown is not None:
            box = spec.get_position(fig)
            cax = fig.add_axes((0.88, box.y0, 0.025, box.height))
            fig.colorbar(shown, cax=cax).ax.tick_params(labelsize=7)
    fig.suptitle(title or f"first-layer filters: {fn} of {c}x{W.shape[2]}x{W.shape[3]}", fontsize=11)
    _save(fig, path)
