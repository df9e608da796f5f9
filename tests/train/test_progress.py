"""Progress a person can plan with: the whole run's progress and time left, bar or plain lines."""

from __future__ import annotations

import io

from cnn_xp import Adam
from cnn_xp.train import Trainer

from .conftest import loaders, small_net


def test_plain_lines_show_the_whole_runs_progress_and_time_left(mnist_small):
    train, test = loaders(mnist_small)
    stream = io.StringIO()
    Trainer(small_net(), Adam(lr=0.01), train, test, stream=stream, sync_every=2).fit(2)
    lines = stream.getvalue().splitlines()
    epoch_lines = [line for line in lines if line.startswith("epoch 1/2") or line.startswith("epoch 2/2")]
    assert len(epoch_lines) == 2
    assert "run 50% (" in epoch_lines[0] and " left)" in epoch_lines[0]
    assert "run 100% (0:00 left)" in epoch_lines[1]
    step_lines = [line for line in lines if " step " in line]
    assert step_lines and all("% (" in line and " left)" in line for line in step_lines)


def test_the_bar_covers_the_whole_run(mnist_small):
    train, test = loaders(mnist_small)  # 400 images, batch 50: 8 steps an epoch
    stream = io.StringIO()
    Trainer(small_net(), Adam(lr=0.01), train, test, progress=True, stream=stream, sync_every=2).fit(2)
    text = stream.getvalue()
    assert "/16 [" in text and "/8 [" not in text  # one bar of 2 x 8 steps, with tqdm's time left
    assert "epoch 2/2" in text and "16/16" in text
