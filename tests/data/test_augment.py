"""Random crops after padding and flips: what each image becomes, the same draws on a resume and
across ranks, and every array library a batch may live on."""

from __future__ import annotations

import numpy as np
import pytest

from cnn_xp.data import DataLoader
from cnn_xp.data.augment import crop_and_flip, draw


def _expected(x, pad, d):
    """One image at a time, written out: pad, crop, mirror."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    for i in range(n):
        padded = np.zeros((c, h + 2 * pad, w + 2 * pad), x.dtype)
        padded[:, pad : pad + h, pad : pad + w] = x[i]
        crop = padded[:, d.top[i] : d.top[i] + h, d.left[i] : d.left[i] + w]
        out[i] = crop[:, :, ::-1] if d.flip[i] else crop
    return out


def test_each_image_is_its_padded_crop_mirrored_where_drawn():
    x = np.random.default_rng(0).random((40, 3, 7, 9), dtype=np.float32)
    d = draw(5, 2, 3, 40, 2, slice(0, 40))
    assert d.flip.any() and not d.flip.all() and d.top.max() <= 4 and d.left.min() >= 0
    np.testing.assert_array_equal(crop_and_flip(x, 2, d), _expected(x, 2, d))


def test_on_every_array_library(backend):
    """On the device the batch lives on; array_api_strict, which has no gathers, gets its batches
    augmented on the host before the copy -- the same images either way."""
    rng = np.random.default_rng(1)
    x, t = rng.integers(0, 255, (6, 2, 5, 5), dtype=np.uint8), np.zeros(6, int)
    kw = {
        "batch_size": 6,
        "seed": 1,
        "shuffle": False,
        "augment": True,
        "crop_pad": 1,
        "scale": 1 / 255,
        "dtype": "float64",
    }
    (want, _), (got, _) = (next(iter(DataLoader(x, t, device=d, **kw))) for d in ("cpu", backend.device))
    backend.assert_matches(got, want)
    d = draw(1, 0, 0, 6, 1, slice(0, 6))
    np.testing.assert_array_equal(want, _expected(x.astype(np.float64) * (1 / 255), 1, d))


def test_the_loader_draws_from_seed_epoch_and_batch_and_ranks_take_their_slices():
    rng = np.random.default_rng(2)
    x, t = rng.integers(0, 255, (30, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, 30)
    kw = {"batch_size": 10, "seed": 3, "augment": True, "crop_pad": 2, "scale": 1 / 255}
    whole = [b[0] for b in DataLoader(x, t, **kw).batches(1)]
    again = [b[0] for b in DataLoader(x, t, **kw).batches(1, start=1)]  # a resume mid-epoch
    for a, b in zip(whole[1:], again, strict=True):
        np.testing.assert_array_equal(a, b)
    parts = [[b[0] for b in DataLoader(x, t, rank=r, world_size=2, **kw).batches(1)] for r in (0, 1)]
    for k, batch in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([parts[0][k], parts[1][k]]), batch)
    other_epoch = next(iter(DataLoader(x, t, **kw).batches(2)))[0]
    assert not np.array_equal(other_epoch, whole[0])


def test_crops_larger_than_half_the_image_are_refused():
    x, t = np.zeros((4, 1, 6, 6), np.uint8), np.zeros(4, int)
    with pytest.raises(ValueError, match=r"crop_pad: random crops need images .* at most half the image, got 4 px"):
        DataLoader(x, t, augment=True, crop_pad=4)
