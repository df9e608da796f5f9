"""Arrays in and out through DLPack: PyTorch tensors (and any DLPack producer) go through
``to_device``, ``predict`` and the layers without a copy, and come back the same way."""

from __future__ import annotations

import numpy as np
import pytest

import cnn_xp
from cnn_xp import (
    Affine,
    BatchNormalization,
    Convolution,
    Network,
    Relu,
    SimpleConvNet,
    from_dlpack,
    to_device,
    to_numpy,
)
from cnn_xp.backend import CPU, Device, dlpack_device

from .helpers import gpu_skip_reason


class DLPackOnly:
    """A producer that array_api_compat does not know: only the two DLPack methods (as a
    library without array-API support would offer)."""

    def __init__(self, a):
        self._a = a
        self.shape, self.dtype, self.ndim = a.shape, a.dtype, a.ndim

    def __dlpack__(self, **kw):
        return self._a.__dlpack__(**kw)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def address(a) -> int:
    """Where an array's first element lives in memory."""
    return a.__array_interface__["data"][0]


def tiny_net(rng):
    W = rng.standard_normal((12, 4)).astype(np.float32)
    return Network([("fc", Affine(W, np.zeros(4, np.float32))), ("relu", Relu())])


def test_a_dlpack_producer_goes_through_predict_without_a_copy_and_comes_back():
    rng = np.random.default_rng(0)
    net = tiny_net(rng)
    host = rng.random((5, 3, 2, 2), dtype=np.float32)
    x = DLPackOnly(host)
    scores = net.predict(x)  # training mode: the Affine layer keeps its (reshaped) input
    assert isinstance(scores, np.ndarray)
    np.testing.assert_array_equal(scores, net.predict(host))
    kept = net.layers["fc"]._x
    assert np.shares_memory(kept, host)  # the layer read the producer's memory in place
    assert address(from_dlpack(DLPackOnly(scores))) == address(scores)


def test_from_dlpack_and_dlpack_device():
    a = np.arange(6.0)
    assert from_dlpack(a) is a
    assert dlpack_device(a) == CPU and dlpack_device(DLPackOnly(a)) == CPU and dlpack_device([1, 2]) is None
    b = from_dlpack(DLPackOnly(a))
    assert isinstance(b, np.ndarray) and address(b) == address(a)
    with pytest.raises(TypeError, match=r"x: expected a DLPack-capable array .* got list"):
        from_dlpack([1.0, 2.0])


def test_array_api_strict_devices_are_never_imported_implicitly():
    """array_api_strict's fake device1 reports itself as the CPU through DLPack, so a silent import
    would hide exactly the device mix-ups those arrays exist to catch."""
    xps = pytest.importorskip("array_api_strict")
    x = xps.asarray(np.zeros((1, 3, 2, 2), np.float32), device=xps.Device("device1"))
    with pytest.raises(ValueError, match=r"cannot be mixed"):
        tiny_net(np.random.default_rng(0)).predict(x)


def test_torch_cpu_batch_through_predict_and_back_without_copies(torch):
    net = SimpleConvNet(seed=0).eval()
    x = torch.rand(8, 1, 28, 28)
    on_cpu = to_device(x, "cpu")
    assert isinstance(on_cpu, np.ndarray) and address(on_cpu) == x.data_ptr()  # a view, not a copy
    assert address(to_numpy(x)) == x.data_ptr()
    scores = net.predict(x)
    np.testing.assert_array_equal(scores, net.predict(x.numpy()))
    back = torch.from_dlpack(scores)
    assert back.data_ptr() == address(scores) and back.shape == (8, 10)
    # labels as torch tensors too
    t = torch.randint(0, 10, (8,))
    assert float(net.loss(x, t)) == pytest.approx(float(net.loss(x.numpy(), t.numpy())), rel=1e-6)
    assert net.accuracy(x, t) == net.accuracy(x.numpy(), t.numpy())


def test_every_parametrised_layer_reads_torch_tensors_in_place(torch):
    rng = np.random.default_rng(0)
    conv = Convolution(rng.standard_normal((2, 3, 3, 3)), np.zeros(2))  # float64, as the tensor below
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    np.testing.assert_array_equal(conv.forward(x), conv.forward(x.numpy()))
    bn = BatchNormalization(np.ones(3), np.zeros(3))
    np.testing.assert_array_equal(bn.forward(x, train_flg=False), bn.forward(x.numpy(), train_flg=False))
    fc = Affine(rng.standard_normal((75, 4)), np.zeros(4))
    fc.forward(x)
    assert np.shares_memory(fc._x, x.numpy())


def test_tensor_that_requires_grad_is_refused_with_the_fix(torch):
    net = SimpleConvNet(seed=0)
    with pytest.raises(ValueError, match=r"x: its library refused to export it through DLPack .*detach\(\)"):
        net.predict(torch.rand(2, 1, 28, 28, requires_grad=True))
    net.predict(torch.rand(2, 1, 28, 28, requires_grad=True).detach())  # the fix works


def test_a_tensor_of_another_device_is_refused_not_moved(torch):
    """A CPU tensor given to a network whose parameters are on another device stays where it
    is: the layer says where each one lives (here the network is on array_api_strict's device1)."""
    xps = pytest.importorskip("array_api_strict")
    net = SimpleConvNet(seed=0).to_device(xps.Device("device1"))
    with pytest.raises(ValueError, match=r"x: array of type Tensor cannot be mixed .* cnn_xp.to_device"):
        net.predict(torch.rand(1, 1, 28, 28))


def test_torch_cuda_tensors_stay_on_their_gpu(torch):
    reason = gpu_skip_reason()
    if reason is not None or not torch.cuda.is_available():
        pytest.skip(reason or "this PyTorch build has no CUDA")
    net = SimpleConvNet(seed=0, device="gpu:0").eval()
    x = torch.rand(4, 1, 28, 28, device="cuda:0")
    assert dlpack_device(x) == Device("gpu", 0)
    on_gpu = to_device(x, "gpu:0")
    assert on_gpu.data.ptr == x.data_ptr()
    scores = net.predict(x)
    assert cnn_xp.backend.is_gpu_array(scores)
    assert torch.from_dlpack(scores).device.type == "cuda"
