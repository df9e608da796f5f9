"""Learning-rate schedules: values by hand, and the step-only property that makes resume exact."""

from __future__ import annotations

import math

import pytest

from cnn_xp.optim import constant, cosine, exponential


def test_values_by_hand():
    assert constant(0.1)(12345) == 0.1
    c = cosine(1.0, 10)
    assert c(0) == 1.0 and abs(c(5) - 0.5) < 1e-15 and c(10) == 0.0 and c(20) == 0.0
    e = exponential(0.002, 0.75, steps_per_epoch=600)
    assert e(0) == 0.002 and math.isclose(e(600), 0.0015) and math.isclose(e(1800), 0.002 * 0.75**3)
    assert math.isclose(e(300), 0.002 * math.sqrt(0.75))  # smooth within an epoch


def test_exponential_has_no_horizon():
    """The same step gives the same rate however long the run will be: resume stays exact."""
    assert exponential(0.01, 0.5, 100)(250) == exponential(0.01, 0.5, 100)(250)


@pytest.mark.parametrize(
    ("make", "word"),
    [
        (lambda: cosine(0.1, 0), "total_steps"),
        (lambda: exponential(0.1, 1.5, 10), "decay"),
        (lambda: exponential(0.1, 0.5, 0), "steps_per_epoch"),
    ],
)
def test_bad_arguments(make, word):
    with pytest.raises(ValueError, match=word):
        make()
