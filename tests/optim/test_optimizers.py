"""Optimizers: 10 steps against straightforward reference formulas, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cnn_xp import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop, SimpleConvNet


def reference(name, hyper, params, grads_seq):
    """Textbook update rules written independently, element-wise in float64."""
    p = {k: v.astype(np.float64).copy() for k, v in params.items()}
    s1 = {k: np.zeros_like(v) for k, v in p.items()}
    s2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, grads in enumerate(grads_seq, start=1):
        for k in p:
            g = grads[k].astype(np.float64)
            lr = hyper["lr"]
            if name == "SGD":
                p[k] = p[k] - lr * g
            elif name == "Momentum":
                s1[k] = hyper["momentum"] * s1[k] - lr * g
                p[k] = p[k] + s1[k]
            elif name == "Nesterov":
                m = hyper["momentum"]
                v_new = m * s1[k] - lr * g
                # look-ahead form: p += -m * v_old + (1 + m) * v_new  ==  m*m*v - (1+m)*lr*g with v = m*v_old
                p[k] = p[k] - m * s1[k] + (1 + m) * v_new
                s1[k] = v_new
            elif name == "AdaGrad":
                s1[k] = s1[k] + g * g
                p[k] = p[k] - lr * g / (np.sqrt(s1[k]) + 1e-7)
            elif name == "RMSprop":
                d = hyper["decay_rate"]
                s1[k] = d * s1[k] + (1 - d) * g * g
                p[k] = p[k] - lr * g / (np.sqrt(s1[k]) + 1e-7)
            elif name == "Adam":
                b1, b2 = hyper["beta1"], hyper["beta2"]
                s1[k] = b1 * s1[k] + (1 - b1) * g
                s2[k] = b2 * s2[k] + (1 - b2) * g * g
                lr_t = lr * math.sqrt(1 - b2**t) / (1 - b1**t)
                p[k] = p[k] - lr_t * s1[k] / (np.sqrt(s2[k]) + 1e-7)
    return p


OPTIMIZERS = [
    (SGD, {"lr": 0.1}),
    (Momentum, {"lr": 0.05, "momentum": 0.9}),
    (Nesterov, {"lr": 0.05, "momentum": 0.8}),
    (AdaGrad, {"lr": 0.1}),
    (RMSprop, {"lr": 0.01, "decay_rate": 0.9}),
    (Adam, {"lr": 0.01, "beta1": 0.8, "beta2": 0.95}),
]


@pytest.mark.parametrize(("cls", "hyper"), OPTIMIZERS, ids=[c.__name__ for c, _ in OPTIMIZERS])
def test_ten_steps_match_reference(backend, float_dtype, cls, hyper):
    rng = np.random.default_rng(0)
    params = {"W1": rng.standard_normal((3, 4)).astype(float_dtype), "b1": rng.standard_normal(4).astype(float_dtype)}
    grads_seq = [{k: rng.standard_normal(v.shape).astype(float_dtype) for k, v in params.items()} for _ in range(10)]
    expected = reference(cls.__name__, hyper, params, grads_seq)
    on_dev = {k: backend.asarray(v) for k, v in params.items()}
    objects = {k: v for k, v in on_dev.items()}
    opt = cls(**hyper)
    for grads in grads_seq:
        opt.update(on_dev, {k: backend.asarray(v) for k, v in grads.items()})
    tol = dict(rtol=1e-12, atol=1e-12) if float_dtype == "float64" else dict(rtol=1e-5, atol=1e-6)
    for k in params:
        assert on_dev[k] is objects[k]  # updated in place: layers holding them stay in sync
        got = backend.numpy(on_dev[k])
        assert got.dtype == np.dtype(float_dtype)  # no upcast
        np.testing.assert_allclose(got, expected[k], **tol)
        for slot in opt.state.values():
            if k in slot:
                assert backend.numpy(slot[k]).dtype == np.dtype(float_dtype)
                assert type(slot[k]) is type(on_dev[k])


def test_network_training_steps_agree_with_numpy(backend, float_dtype):
    kw = dict(
        input_dim=(1, 8, 8),
        conv_param={"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
        hidden_size=5,
        output_size=3,
        dtype=float_dtype,
        seed=0,
    )
    ref, dev = SimpleConvNet(**kw), SimpleConvNet(**kw).to_device(backend.device)
    opt_ref, opt_dev = Adam(lr=0.01), Adam(lr=0.01)
    rng = np.random.default_rng(1)
    for _ in range(10):
        x, t = rng.standard_normal((4, 1, 8, 8)).astype(float_dtype), rng.integers(0, 3, 4)
        opt_ref.update(ref.params, ref.gradient(x, t))
        opt_dev.update(dev.params, dev.gradient(backend.asarray(x), backend.asarray(t)))
    for k in ref.params:
        backend.assert_matches(dev.params[k], ref.params[k], float_dtype)
        assert dev.layers  # layers see the updated arrays through params
    assert dev.params["W1"] is dev.layers["Conv1"].W


def test_state_dict_round_trip():
    rng = np.random.default_rng(0)
    p = {"W": rng.standard_normal(3)}
    a = Adam(lr=0.01)
    a.update(p, {"W": np.ones(3)})
    b = Adam()
    b.load_state_dict(a.state_dict())
    assert b.lr == 0.01 and b.iter == 1
    p2 = {"W": p["W"].copy()}
    a.update(p, {"W": np.ones(3)})
    b.update(p2, {"W": np.ones(3)})
    np.testing.assert_array_equal(p["W"], p2["W"])
    with pytest.raises(ValueError, match="is for optimizer 'Adam', not SGD"):
        SGD().load_state_dict(a.state_dict())


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: SGD(lr=0), ["lr", "(0.0, inf)", "0"]),
        (lambda: SGD(lr=-0.1), ["lr", "-0.1"]),
        (lambda: Momentum(momentum=1.5), ["momentum", "[0.0, 1.0]", "1.5"]),
        (lambda: RMSprop(decay_rate=-1), ["decay_rate", "-1"]),
        (lambda: Adam(beta1=1.0), ["beta1", "[0, 1)"]),
        (lambda: Adam(lr="fast"), ["lr", "'fast'"]),
    ],
)
def test_bad_hyperparameters(make, words):
    with pytest.raises(ValueError) as info:
        make()
    for w in words:
        assert w in str(info.value)


@pytest.mark.parametrize(("cls", "hyper"), OPTIMIZERS, ids=[c.__name__ for c, _ in OPTIMIZERS])
def test_bad_grads_change_nothing(cls, hyper):
    params = {"W1": np.ones((2, 2)), "b1": np.ones(2)}
    opt = cls(**hyper)
    opt.update(params, {"W1": np.ones((2, 2)), "b1": np.ones(2)})
    snapshot = {k: v.copy() for k, v in params.items()}
    state = {n: {k: v.copy() for k, v in s.items()} for n, s in opt.state.items()}
    with pytest.raises(ValueError, match=r"grads: no gradient for parameter 'b1'"):
        opt.update(params, {"W1": np.ones((2, 2))})
    with pytest.raises(ValueError, match=r"grads\['b1'\]: expected shape \(2,\) to match the parameter, got \(3,\)"):
        opt.update(params, {"W1": np.ones((2, 2)), "b1": np.ones(3)})
    for k in params:
        np.testing.assert_array_equal(params[k], snapshot[k])
    assert opt.iter == 1
    for n, s in opt.state.items():
        for k, v in s.items():
            np.testing.assert_array_equal(v, state[n][k])
