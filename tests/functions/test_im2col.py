"""im2col/col2im: hand-computed layouts, a naive reference, adjointness, dtypes, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cnn_xp import col2im, get_conv_outsize, im2col


def naive_im2col(x, fh, fw, stride, pad):
    """Straight from the definition: one row per output pixel, in (C, FH, FW) order."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - fh) // stride + 1, (w + 2 * pad - fw) // stride + 1
    rows = []
    for b, i, j in itertools.product(range(n), range(oh), range(ow)):
        rows.append(xp[b, :, i * stride : i * stride + fh, j * stride : j * stride + fw].reshape(-1))
    return np.array(rows, dtype=x.dtype).reshape(n * oh * ow, c * fh * fw)


def test_layout_by_hand_2x2_stride_2():
    x = np.arange(16).reshape(1, 1, 4, 4)
    expected = np.array([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]])
    np.testing.assert_array_equal(im2col(x, 2, 2, stride=2), expected)


def test_layout_by_hand_two_channels_with_padding():
    # x: channel 0 = [[1, 2], [3, 4]], channel 1 = 10 * channel 0; 2x2 window, pad 1, stride 2.
    x = np.array([[[[1, 2], [3, 4]], [[10, 20], [30, 40]]]])
    col = im2col(x, 2, 2, stride=2, pad=1)
    # Padded channel 0 is 4x4 with the data in the middle; windows start at (0,0),(0,2),(2,0),(2,2).
    expected = np.array(
        [
            [0, 0, 0, 1, 0, 0, 0, 10],
            [0, 0, 2, 0, 0, 0, 20, 0],
            [0, 3, 0, 0, 0, 30, 0, 0],
            [4, 0, 0, 0, 40, 0, 0, 0],
        ]
    )
    np.testing.assert_array_equal(col, expected)


def test_book_shapes():
    assert im2col(np.random.rand(1, 3, 7, 7), 5, 5, stride=1, pad=0).shape == (9, 75)
    assert im2col(np.random.rand(10, 3, 7, 7), 5, 5, stride=1, pad=0).shape == (90, 75)
    assert get_conv_outsize(28, 5, 1, 0) == 24


@pytest.mark.parametrize(
    ("n", "c", "h", "w", "fh", "fw", "stride", "pad"),
    [
        (2, 3, 7, 7, 3, 3, 1, 0),
        (1, 2, 6, 5, 2, 3, 2, 1),
        (3, 1, 5, 5, 5, 5, 1, 2),
        (2, 2, 8, 8, 3, 3, 3, 2),
        (1, 1, 4, 4, 1, 1, 1, 0),
        (2, 4, 9, 6, 4, 2, 2, 0),
    ],
)
def test_matches_naive_and_col2im_is_adjoint(n, c, h, w, fh, fw, stride, pad):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    col = im2col(x, fh, fw, stride, pad)
    np.testing.assert_array_equal(col, naive_im2col(x, fh, fw, stride, pad))
    y = rng.standard_normal(col.shape)
    lhs = np.sum(col * y)
    rhs = np.sum(x * col2im(y, x.shape, fh, fw, stride, pad))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs))


def test_col2im_of_ones_counts_window_overlaps_by_hand():
    # 3x3 input, 2x2 windows, stride 1: the centre pixel is in 4 windows, edges in 2, corners in 1.
    ones = np.ones((4, 4))
    np.testing.assert_array_equal(col2im(ones, (1, 1, 3, 3), 2, 2)[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.int32])
def test_dtype_is_kept(dtype):
    x = np.arange(2 * 3 * 5 * 5).reshape(2, 3, 5, 5).astype(dtype)
    col = im2col(x, 3, 3, stride=1, pad=1)
    assert col.dtype == dtype
    assert col2im(col, x.shape, 3, 3, 1, 1).dtype == dtype


def test_pair_stride_and_pad():
    x = np.random.default_rng(1).standard_normal((1, 2, 6, 7))
    col = im2col(x, 3, 2, stride=(2, 1), pad=(1, 0))
    assert col.shape == (get_conv_outsize(6, 3, 2, 1) * get_conv_outsize(7, 2, 1, 0), 2 * 3 * 2)


def test_on_backend_equals_numpy(backend):
    x = np.random.default_rng(2).standard_normal((2, 3, 6, 6))
    col = im2col(backend.asarray(x), 3, 3, 2, 1)
    backend.assert_matches(col, im2col(x, 3, 3, 2, 1))
    img = col2im(col, x.shape, 3, 3, 2, 1)
    backend.assert_matches(img, col2im(im2col(x, 3, 3, 2, 1), x.shape, 3, 3, 2, 1))


@pytest.mark.parametrize(
    ("args", "exc", "words"),
    [
        (dict(input_data=np.zeros((3, 4, 4)), filter_h=2, filter_w=2), ValueError, ["input_data", "4-D", "(3, 4, 4)"]),
        (
            dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=5, filter_w=2),
            ValueError,
            ["larger than the padded input", "(4, 4)"],
        ),
        (
            dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=2, filter_w=2, stride=0),
            ValueError,
            ["stride", ">= 1", "0"],
        ),
        (dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=2, filter_w=2, stride=-1), ValueError, ["stride", "-1"]),
        (dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=2, filter_w=2, pad=-1), ValueError, ["pad", ">= 0", "-1"]),
        (dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=0, filter_w=2), ValueError, ["filter_h", ">= 1"]),
        (dict(input_data=np.zeros((1, 1, 4, 4)), filter_h=2.5, filter_w=2), TypeError, ["filter_h", "float"]),
    ],
)
def test_im2col_bad_input(args, exc, words):
    with pytest.raises(exc) as info:
        im2col(**args)
    for word in words:
        assert word in str(info.value)


def test_col2im_bad_col_shape():
    with pytest.raises(ValueError, match=r"col: expected shape \(N\*OH\*OW, C\*FH\*FW\)=\(9, 4\).*got \(9, 5\)"):
        col2im(np.zeros((9, 5)), (1, 1, 4, 4), 2, 2)
    with pytest.raises(ValueError, match="input_shape"):
        col2im(np.zeros((9, 4)), (1, 4, 4), 2, 2)
