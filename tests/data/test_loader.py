"""DataLoader: permutations, batch sizes, determinism, device and dtype, resuming mid-epoch."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp.data import DataLoader

from ..helpers import gpu_skip_reason

X = np.arange(23 * 1 * 2 * 2, dtype=np.uint8).reshape(23, 1, 2, 2)
T = np.arange(23, dtype=np.uint8)


def collect(loader, epoch=None):
    batches = list(loader) if epoch is None else list(loader.batches(epoch))
    return [(np.asarray(x), np.asarray(t)) for x, t in batches]


def test_each_epoch_is_a_permutation():
    loader = DataLoader(X, T, batch_size=5, seed=1)
    assert len(loader) == 5
    for _ in range(3):
        batches = collect(loader)
        assert [b[1].size for b in batches] == [5, 5, 5, 5, 3]
        seen = np.concatenate([b[1] for b in batches])
        assert sorted(seen.tolist()) == list(range(23))  # every sample exactly once
        for x, t in batches:  # images travel with their labels
            np.testing.assert_array_equal(x[:, 0, 0, 0], (t.astype(np.float32) * 4))
    assert loader.epoch == 3


def test_epochs_differ_and_seed_reproduces():
    a, b = DataLoader(X, T, 5, seed=7), DataLoader(X, T, 5, seed=7)
    e0, e1 = collect(a), collect(a)
    assert not np.array_equal(np.concatenate([t for _, t in e0]), np.concatenate([t for _, t in e1]))
    np.testing.assert_array_equal(np.concatenate([t for _, t in collect(b)]), np.concatenate([t for _, t in e0]))
    c = DataLoader(X, T, 5, seed=8)
    assert not np.array_equal(np.concatenate([t for _, t in collect(c)]), np.concatenate([t for _, t in e0]))


def test_drop_last_and_no_shuffle():
    loader = DataLoader(X, T, batch_size=5, shuffle=False, drop_last=True)
    batches = collect(loader)
    assert len(loader) == 4 and len(batches) == 4 and loader.num_samples == 20
    np.testing.assert_array_equal(np.concatenate([t for _, t in batches]), np.arange(20))


def test_dtype_and_scale():
    (x, t), *_ = collect(DataLoader(X, T, 4, shuffle=False, dtype="float64", scale=1 / 255))
    assert x.dtype == np.float64 and t.dtype == np.uint8
    np.testing.assert_allclose(x, X[:4] / 255)


def test_no_needless_copies_on_cpu():
    xf = X.astype(np.float32)
    loader = DataLoader(xf, T, 5, shuffle=False)
    x, _ = next(iter(loader))
    assert np.shares_memory(x, xf)  # a view of the host array, not a copy


def test_resume_from_the_middle_of_an_epoch():
    loader = DataLoader(X, T, 5, seed=3)
    full = collect(loader, epoch=4)
    tail = [(np.asarray(x), np.asarray(t)) for x, t in loader.batches(4, start=2)]
    for (xa, ta), (xb, tb) in zip(full[2:], tail, strict=True):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(xa, xb)


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        (dict(batch_size=0), ValueError, ["batch_size", ">= 1", "0"]),
        (dict(batch_size=30, drop_last=True), ValueError, ["batch_size", "30", "23 samples"]),
        (dict(dtype="int32"), ValueError, ["dtype", "int32"]),
        (dict(device="tpu"), ValueError, ["device", "'tpu'"]),
        (dict(seed=-1), ValueError, ["seed", "-1"]),
    ],
)
def test_bad_arguments(kwargs, exc, words):
    with pytest.raises(exc) as info:
        DataLoader(X, T, **{"batch_size": 5, **kwargs})
    for w in words:
        assert w in str(info.value)


def test_mismatched_and_empty_arrays():
    with pytest.raises(
        ValueError, match=r"t: expected 23 targets to match x of shape \(23, 1, 2, 2\), got t of shape \(22,\)"
    ):
        DataLoader(X, T[:-1])
    with pytest.raises(ValueError, match="x: expected a non-empty array"):
        DataLoader(X[:0], T[:0])


@pytest.mark.gpu
def test_batches_arrive_on_the_gpu():
    reason = gpu_skip_reason()
    if reason:
        pytest.skip(reason)
    import cupy

    loader = DataLoader(X, T, 5, seed=1, device="gpu", scale=1 / 255)
    host = DataLoader(X, T, 5, seed=1, scale=1 / 255)
    for (xg, tg), (xc, tc) in zip(loader, host, strict=True):
        assert isinstance(xg, cupy.ndarray) and xg.dtype == cupy.float32
        np.testing.assert_array_equal(cupy.asnumpy(tg), tc)
        np.testing.assert_allclose(cupy.asnumpy(xg), xc, rtol=1e-6)


def test_shift_translates_each_image_and_is_reproducible():
    x = np.zeros((6, 1, 9, 9), dtype=np.uint8)
    x[:, 0, 3:6, 3:6] = np.arange(1, 10, dtype=np.uint8).reshape(3, 3)  # a patch away from the border
    t = np.arange(6, dtype=np.uint8)
    loader = DataLoader(x, t, 3, shuffle=False, seed=4, shift=2, dtype="float64")
    batches = collect(loader, epoch=0)
    for xb, _ in batches:
        for img in xb[:, 0]:
            ys, xs = np.nonzero(img)
            dy, dx = ys.min() - 3, xs.min() - 3
            assert -2 <= dy <= 2 and -2 <= dx <= 2
            np.testing.assert_array_equal(img, np.roll(x[0, 0], (dy, dx), axis=(0, 1)))  # content intact
    shifts = {tuple(np.argwhere(img)[0]) for xb, _ in batches for img in xb[:, 0]}
    assert len(shifts) > 1  # images get different shifts
    again = collect(DataLoader(x, t, 3, shuffle=False, seed=4, shift=2, dtype="float64"), epoch=0)
    for (a, _), (b, _) in zip(batches, again, strict=True):
        np.testing.assert_array_equal(a, b)
    tail = [np.asarray(xb) for xb, _ in loader.batches(0, start=1)]
    np.testing.assert_array_equal(tail[0], batches[1][0])  # resuming mid-epoch repeats the same shifts


def test_shift_needs_images():
    with pytest.raises(ValueError, match=r"shift: random translation needs images \(N, C, H, W\)"):
        DataLoader(np.zeros((4, 10)), np.zeros(4, np.uint8), 2, shift=1)
