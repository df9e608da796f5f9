"""A batch split across threads (cnn_xp.models.shards) computes what the whole batch computes."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest

import cnn_xp
from cnn_xp import BatchNormalization, Convolution, DeepConvNet, Network, Relu, Residual, Sequential, SimpleConvNet
from cnn_xp.models.shards import MIN_SHARD
from cnn_xp.threads import Turnstile, get_num_threads, run_in_threads, set_num_threads

pytestmark = pytest.mark.skipif(
    cnn_xp.threads._blas().lib_controllers == [], reason="no BLAS library found by threadpoolctl: nothing to split"
)


@pytest.fixture
def threads() -> Iterator[None]:
    saved = get_num_threads()
    yield
    set_num_threads(saved)


def batch(n: int, dtype: str = "float64", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.random((n, 1, 28, 28)).astype(dtype), rng.integers(0, 10, n)


def run(net: Network, x: np.ndarray, t: np.ndarray, n_threads: int) -> tuple[float, np.ndarray, dict[str, np.ndarray]]:
    set_num_threads(n_threads)
    loss, scores = net.forward(x, t)
    grads = {k: g.copy() for k, g in net.backward().items()}
    return float(loss), scores, grads


def deep(dtype: str = "float64") -> DeepConvNet:
    return DeepConvNet(dtype=dtype, seed=3)


@pytest.mark.parametrize("make", [lambda: SimpleConvNet(dtype="float64", seed=1), deep], ids=["simple", "deep"])
@pytest.mark.parametrize("threads_used", [2, 3])
def test_split_batch_equals_whole_batch(threads: None, make, threads_used: int) -> None:
    net = make()
    x, t = batch(3 * MIN_SHARD + 5)
    state = {k: v for k, v in ((n, layer.extra_state()) for n, layer in net.layers.items()) if v is not None}
    whole = run(net, x, t, 1)
    assert not net._shards.split_last
    for name, s in state.items():  # the same Dropout masks: the generators start over
        net.layers[name].set_extra_state(s)
    split = run(net, x, t, threads_used)
    assert net._shards.split_last and len(net._shards._sizes) == threads_used
    assert split[0] == pytest.approx(whole[0], rel=1e-13)
    np.testing.assert_allclose(split[1], whole[1], rtol=1e-12, atol=1e-14)
    assert split[2].keys() == whole[2].keys()
    for key in whole[2]:
        np.testing.assert_allclose(split[2][key], whole[2][key], rtol=1e-10, atol=1e-14, err_msg=key)
    # the network's own layers hold the summed gradients, as the book's gradient() reads them
    np.testing.assert_array_equal(net.layers[0].dW, split[2]["W1"])


def test_float32_step_is_deterministic_and_close(threads: None) -> None:
    x, t = batch(100, "float32")
    a, b = SimpleConvNet(seed=1), SimpleConvNet(seed=1)
    ga, gb = run(a, x, t, 2)[2], run(b, x, t, 2)[2]
    for key in ga:
        np.testing.assert_array_equal(ga[key], gb[key])  # same thread count: bit-identical
    g1 = run(SimpleConvNet(seed=1), x, t, 1)[2]
    for key in ga:
        np.testing.assert_allclose(ga[key], g1[key], rtol=1e-4, atol=1e-6)


def test_small_batches_and_one_thread_stay_whole(threads: None) -> None:
    net = SimpleConvNet(dtype="float64", seed=0)
    x, t = batch(2 * MIN_SHARD - 1)
    run(net, x, t, 4)
    assert not net._shards.split_last
    x, t = batch(4 * MIN_SHARD)
    run(net, x, t, 1)
    assert not net._shards.split_last


def test_a_layer_with_its_own_forward_keeps_the_batch_whole(threads: None) -> None:
    """A hook or profiler set on a layer object would be shared by every shard's copy."""
    net = SimpleConvNet(dtype="float64", seed=0)
    relu = net.layers["Relu1"]
    seen: list[int] = []

    def hooked(x):
        seen.append(x.shape[0])
        return type(relu).forward(relu, x)

    relu.forward = hooked
    x, t = batch(64)
    run(net, x, t, 2)
    assert not net._shards.split_last and seen == [64]


def residual_bn_net(dtype: str = "float64") -> Network:
    """Batch normalisation inside a residual block inside a Sequential: composites split too."""
    rng = np.random.default_rng(0)

    def bn(c: int) -> BatchNormalization:
        return BatchNormalization(rng.random(c) + 0.5, rng.standard_normal(c) * 0.1)

    body = Sequential([("conv", Convolution(rng.standard_normal((4, 4, 3, 3)) * 0.3, None, pad=1)), ("bn", bn(4))])
    layers = [
        ("Conv", Convolution(rng.standard_normal((4, 1, 3, 3)), None)),
        ("BN", bn(4)),
        ("Stage", Sequential([("block", Residual(body)), ("relu", Relu())])),
        ("Affine", cnn_xp.Affine(rng.standard_normal((4 * 26 * 26, 10)) * 0.01, np.zeros(10))),
    ]
    return Network(layers).astype(dtype)


@pytest.mark.parametrize("threads_used", [2, 3])
def test_batchnorm_statistics_are_the_whole_batchs_when_it_is_split(threads: None, threads_used: int) -> None:
    """The shards add their sums: loss, scores, gradients and running statistics are the whole
    batch's (to float64 rounding), and the running statistics change once per step, not per shard."""
    x, t = batch(3 * MIN_SHARD + 5)
    nets = [residual_bn_net() for _ in range(2)]
    whole = run(nets[0], x, t, 1)
    split = run(nets[1], x, t, threads_used)
    assert not nets[0]._shards.split_last and nets[1]._shards.split_last
    assert split[0] == pytest.approx(whole[0], rel=1e-13)
    np.testing.assert_allclose(split[1], whole[1], rtol=1e-12, atol=1e-14)
    for key in whole[2]:
        np.testing.assert_allclose(split[2][key], whole[2][key], rtol=1e-10, atol=1e-13, err_msg=key)
    for key, value in nets[0].buffers.items():
        np.testing.assert_allclose(nets[1].buffers[key], value, rtol=1e-12, err_msg=key)
    with cnn_xp.no_grad():  # inference: each sample on its own, the running statistics
        np.testing.assert_allclose(nets[1].predict(x), nets[0].predict(x), rtol=1e-12, atol=1e-14)


def test_mismatched_labels_raise_the_whole_batch_error(threads: None) -> None:
    net = SimpleConvNet(dtype="float64")
    x, t = batch(64)
    set_num_threads(1)
    with pytest.raises(ValueError) as whole:
        net.loss(x, t[:50])
    set_num_threads(2)
    with pytest.raises(ValueError) as split:
        net.loss(x, t[:50])
    assert str(split.value) == str(whole.value) and "64" in str(split.value)


def test_a_failing_shard_raises_its_error_and_releases_the_others(threads: None) -> None:
    """A label out of range in the second shard of a Dropout network (whose shards wait for each
    other's masks): the error of the whole batch, no shard left waiting."""
    net = deep("float32")
    x, t = batch(64, "float32")
    t[40] = 10
    set_num_threads(2)
    before = threading.active_count()
    with pytest.raises(ValueError, match="10"):
        net.loss(x, t)
    assert threading.active_count() <= before + 1  # at most the pool's one worker, idle
    t[40] = 3
    net.loss(x, t)  # the network still works afterwards
    net.backward()


def test_evaluation_between_forward_and_backward_changes_nothing(threads: None) -> None:
    x, t = batch(64)
    a, b = SimpleConvNet(dtype="float64", seed=2), SimpleConvNet(dtype="float64", seed=2)
    set_num_threads(2)
    a.loss(x, t)
    ga = a.backward()
    b.loss(x, t)
    with cnn_xp.no_grad():
        b.predict(x[::-1].copy())
    b.accuracy(x, t, batch_size=64)
    gb = b.backward()
    for key in ga:
        np.testing.assert_array_equal(ga[key], gb[key])


def test_predict_split_under_no_grad(threads: None) -> None:
    net = deep()
    x, _ = batch(70)
    set_num_threads(1)
    with cnn_xp.no_grad():  # (with grad, the 3x3 convolutions would take Winograd: other rounding)
        whole = net.predict(x)
    set_num_threads(2)
    with cnn_xp.no_grad():
        split = net.predict(x)
    np.testing.assert_allclose(split, whole, rtol=1e-12)


def test_run_in_threads_orders_turns_and_propagates_errors() -> None:
    turnstile = Turnstile(3)
    order: list[int] = []

    def draw(shard: int) -> int:
        with turnstile.turn(shard):
            order.append(shard)
        return shard * 10

    assert run_in_threads(draw, 3, turnstile.abort) == [0, 10, 20]
    assert order == [0, 1, 2]
    turnstile.reset()

    def fail_first(shard: int) -> int:
        if shard == 0:
            raise KeyError("shard 0")
        with turnstile.turn(shard):  # shard 0 never takes its turn: released by the abort
            return shard

    with pytest.raises(KeyError, match="shard 0"):
        run_in_threads(fail_first, 3, turnstile.abort)


def test_turnstile_sums_of_consecutive_calls_never_mix() -> None:
    """sum() waits once per call, its parts alternating between two sets: a fast shard writes the
    next call's part while a slow one still reads this call's, and every shard gets every call's
    own total (timing shuffled by random sleeps)."""
    import random
    import time

    count, calls = 3, 200
    turnstile = Turnstile(count)

    def run(shard: int) -> list[int]:
        rng = random.Random(shard)
        totals = []
        for k in range(calls):
            if rng.random() < 0.1:
                time.sleep(rng.random() * 1e-3)
            totals.append(turnstile.sum(shard, 1000 * k + shard))
        return totals

    want = [sum(1000 * k + s for s in range(count)) for k in range(calls)]
    assert run_in_threads(run, count, turnstile.abort) == [want] * count
    turnstile.reset()
    assert run_in_threads(run, count, turnstile.abort) == [want] * count


def test_set_num_threads_checks_its_argument(threads: None) -> None:
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n: expected an int >= 1"):
            set_num_threads(bad)  # type: ignore[arg-type]
    set_num_threads(3)
    assert get_num_threads() == 3
