"""The run's figures: curves.png's epoch axis."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp.train import plots


@pytest.mark.parametrize("epochs", [1, 2, 7])
def test_curves_have_whole_epochs_on_their_axis(epochs, monkeypatch, tmp_path):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    history = [
        {"epoch": e, "loss": 1.0 / e, "test_loss": 1.1 / e, "train_acc": 0.5 + 0.05 * e, "test_acc": 0.5 + 0.04 * e}
        for e in range(1, epochs + 1)
    ]
    plots.plot_curves(history, tmp_path / "curves.png")
    (fig,) = figures
    fig.canvas.draw()
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), (epochs, ticks)
        assert set(range(1, epochs + 1)) >= set(np.round(ticks).astype(int)) or epochs > 5
