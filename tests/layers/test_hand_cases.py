"""Exact small cases computed by hand for convolution and max pooling."""

from __future__ import annotations

import numpy as np

from cnn_xp import AvgPooling, Convolution, Pooling


def test_conv_forward_backward_no_pad():
    # x = [[0,1,2],[3,4,5],[6,7,8]], W = ones 2x2, b = 1: each output = window sum + 1.
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    conv = Convolution(np.ones((1, 1, 2, 2)), np.array([1.0]))
    out = conv.forward(x)
    np.testing.assert_array_equal(
        out, [[[[0 + 1 + 3 + 4 + 1, 1 + 2 + 4 + 5 + 1], [3 + 4 + 6 + 7 + 1, 4 + 5 + 7 + 8 + 1]]]]
    )
    dx = conv.backward(np.ones((1, 1, 2, 2)))
    np.testing.assert_array_equal(dx[0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]])  # windows covering each pixel
    np.testing.assert_array_equal(conv.dW[0, 0], [[0 + 1 + 3 + 4, 1 + 2 + 4 + 5], [3 + 4 + 6 + 7, 4 + 5 + 7 + 8]])
    np.testing.assert_array_equal(conv.db, [4.0])


def test_conv_with_pad_and_stride():
    # 2x2 input [[1,2],[3,4]], pad 1 -> 4x4, 2x2 kernel [[1,0],[0,2]], stride 2 -> 2x2 output.
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    conv = Convolution(np.array([[[[1.0, 0.0], [0.0, 2.0]]]]), np.zeros(1), stride=2, pad=1)
    out = conv.forward(x)
    # Padded image rows: [0 0 0 0], [0 1 2 0], [0 3 4 0], [0 0 0 0]. Windows start at (0,0),
    # (0,2), (2,0), (2,2); the kernel's 1 reads the window's top-left, its 2 the bottom-right:
    # (0,0): 1*0 + 2*x[0,0] = 2;  (0,2): 1*0 + 2*0 = 0;  (2,0): 0 + 0 = 0;  (2,2): 1*x[1,1] + 2*0 = 4.
    np.testing.assert_array_equal(out, [[[[2.0, 0.0], [0.0, 4.0]]]])
    dx = conv.backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]))
    # x[0,0] is read by output (0,0) through weight 2; x[1,1] by output (1,1) through weight 1;
    # x[0,1] and x[1,0] fall between windows (stride 2) and get no gradient.
    np.testing.assert_array_equal(dx, [[[[2.0, 0.0], [0.0, 1000.0]]]])


def test_conv_several_channels_and_filters():
    # 2 input channels of ones and twos (2x2), two 1x1... use 2x2 filters covering the whole image.
    x = np.stack([np.ones((2, 2)), 2 * np.ones((2, 2))])[None]  # (1, 2, 2, 2)
    W = np.zeros((3, 2, 2, 2))
    W[0, 0] = 1  # sums channel 0: 4
    W[1, 1] = 1  # sums channel 1: 8
    W[2] = 0.5  # half the sum of both: 6
    conv = Convolution(W, np.array([0.0, 1.0, -1.0]))
    np.testing.assert_array_equal(conv.forward(x).reshape(3), [4.0, 9.0, 5.0])
    dx = conv.backward(np.array([1.0, 2.0, 4.0]).reshape(1, 3, 1, 1))
    # dx[c] = sum_f dout[f] * W[f, c]: channel 0 = 1*1 + 4*0.5 = 3; channel 1 = 2*1 + 4*0.5 = 4
    np.testing.assert_array_equal(dx[0, 0], np.full((2, 2), 3.0))
    np.testing.assert_array_equal(dx[0, 1], np.full((2, 2), 4.0))
    np.testing.assert_array_equal(conv.db, [1.0, 2.0, 4.0])
    np.testing.assert_array_equal(conv.dW[2, 1], np.full((2, 2), 4.0 * 2))


def test_max_pool_forward_backward_by_hand():
    x = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 8.0, 1.0], [0.0, 0.0, 1.0, 1.0], [9.0, 0.0, 1.0, 7.0]]]])
    pool = Pooling(2, 2, stride=2)
    np.testing.assert_array_equal(pool.forward(x), [[[[5.0, 8.0], [9.0, 7.0]]]])
    dx = pool.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((4, 4))
    expected[0, 1], expected[1, 2], expected[3, 0], expected[3, 3] = 1, 2, 3, 4
    np.testing.assert_array_equal(dx[0, 0], expected)


def test_max_pool_ties_go_to_first_and_overlapping_windows_accumulate():
    x = np.array([[[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]]])
    pool = Pooling(2, 2, stride=1)  # two overlapping windows, both max 1 at (0,0) (first tie)
    np.testing.assert_array_equal(pool.forward(x), [[[[1.0, 1.0]]]])
    dx = pool.backward(np.array([[[[1.0, 10.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[1.0, 10.0, 0.0], [0.0, 0.0, 0.0]])


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 2, 2))
    np.testing.assert_array_equal(Pooling(2, 2, stride=2, pad=1).forward(x), -np.ones((1, 1, 2, 2)))


def test_avg_pool_by_hand():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    pool = AvgPooling(2, 2, stride=2)
    np.testing.assert_array_equal(pool.forward(x), [[[[2.5, 4.5], [10.5, 12.5]]]])
    np.testing.assert_array_equal(pool.backward(np.full((1, 1, 2, 2), 4.0))[0, 0], np.ones((4, 4)))


def test_integer_inputs_work_like_the_book():
    x = np.arange(2 * 1 * 4 * 4).reshape(2, 1, 4, 4)  # np.arange gives int64
    conv = Convolution(np.ones((2, 1, 2, 2), dtype=np.float32), np.zeros(2, dtype=np.float32))
    out = conv.forward(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0, 0, 0], 0 + 1 + 4 + 5)
    assert Pooling(2, 2, 2).forward(x).dtype == x.dtype
    assert AvgPooling(2, 2, 2).forward(x).dtype == np.float32
