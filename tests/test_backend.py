"""The backend: device parsing, transfers, GPU detection with CuPy absent or broken."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

import cnn_xp
from cnn_xp import backend
from cnn_xp.backend import CPU, Device, GPUUnavailableError, parse_device


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("cpu", CPU), ("CPU", CPU), (" cpu ", CPU), ("cpu:0", CPU), (Device("cpu"), CPU)],
)
def test_parse_cpu_specs(spec, expected):
    assert parse_device(spec) == expected


@pytest.mark.parametrize("spec", ["tpu", "gpu:-1", "gpu:x", "cuda:1:2", "", "cpu:1", "gpu0", "auto:0"])
def test_unknown_device_strings_raise_value_error_naming_them(spec):
    with pytest.raises(ValueError, match="device") as info:
        parse_device(spec)
    assert repr(spec) in str(info.value)
    assert "'cpu', 'gpu', 'gpu:N'" in str(info.value)


def test_non_string_device_is_type_error():
    with pytest.raises(TypeError, match="device: expected a str"):
        parse_device(3)


def test_device_validates_its_fields():
    with pytest.raises(ValueError, match="kind"):
        Device("tpu")
    with pytest.raises(ValueError, match="index"):
        Device("gpu", -1)
    assert str(Device("gpu", 2)) == "gpu:2" and Device("gpu", 2).is_gpu


def test_default_device_comes_from_environment(monkeypatch):
    monkeypatch.setenv("CNN_XP_DEVICE", "cpu")
    assert parse_device(None) == CPU
    monkeypatch.setenv("CNN_XP_DEVICE", "nonsense")
    with pytest.raises(ValueError, match="nonsense"):
        parse_device(None)
    monkeypatch.delenv("CNN_XP_DEVICE")
    assert parse_device(None) == CPU


def test_get_array_module_takes_namespace_from_arrays():
    import array_api_compat.numpy as compat_np

    x = np.zeros(3)
    assert backend.get_array_module(x) is compat_np
    assert backend.get_array_module(x, None, np.ones(2)) is compat_np
    assert backend.get_array_module(np.float32(1), x) is compat_np  # a NumPy scalar: not the fast case
    with pytest.raises(TypeError):
        backend.get_array_module(None)  # no array at all, as array_namespace says


def test_get_array_module_refuses_mixed_libraries():
    xps = pytest.importorskip("array_api_strict")
    with pytest.raises(TypeError):
        backend.get_array_module(np.zeros(2), xps.asarray([1.0]))
    with pytest.raises(TypeError):
        backend.get_array_module(xps.asarray([1.0]), np.zeros(2))


def test_to_numpy_and_to_cpu_do_not_copy_host_arrays():
    x = np.arange(6.0)
    assert cnn_xp.to_numpy(x) is x
    assert cnn_xp.to_device(x, "cpu") is x


def test_strict_device_round_trip():
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    x = np.arange(6.0).reshape(2, 3)
    y = cnn_xp.to_device(x, dev)
    assert y.device == dev
    with pytest.raises(RuntimeError):
        np.asarray(y)  # the fake device refuses silent conversion...
    np.testing.assert_array_equal(cnn_xp.to_numpy(y), x)  # ...but an explicit transfer works


def test_rng_is_reproducible_and_keeps_dtype():
    a = backend.RNG(5).uniform((3, 4), like=np.zeros(1, np.float32))
    b = backend.RNG(5).uniform((3, 4), like=np.zeros(1, np.float32))
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.all((a >= 0) & (a < 1))


# ---------------------------------------------------------------- GPU detection without a GPU


@pytest.fixture
def fake_cupy(monkeypatch):
    """Install a stand-in ``cupy`` module and reset the backend's import cache."""

    def install(module):
        monkeypatch.setitem(sys.modules, "cupy", module)
        monkeypatch.setattr(backend, "_cupy", None)
        monkeypatch.setattr(backend, "_cupy_error", None)
        monkeypatch.setattr(backend, "_cupy_tried", False)

    yield install
    monkeypatch.setattr(backend, "_cupy_tried", False)


class CUDARuntimeError(RuntimeError):
    pass


def _cupy_module(available: bool, count: int | Exception) -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.is_available = lambda: available

    def get_count():
        if isinstance(count, Exception):
            raise count
        return count

    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=get_count))
    return cupy


def test_no_cupy_installed(fake_cupy):
    fake_cupy(None)  # sys.modules[name] = None makes `import cupy` raise ImportError
    assert backend.gpu_available() is False
    with pytest.raises(GPUUnavailableError) as info:
        parse_device("gpu")
    msg = str(info.value)
    assert "CuPy is not installed" in msg and "cnn_xp[cuda12]" in msg and "'cpu' or 'auto'" in msg
    assert parse_device("auto") == CPU


def test_cupy_installed_without_driver(fake_cupy):
    fake_cupy(_cupy_module(False, CUDARuntimeError("cudaErrorInsufficientDriver")))
    assert backend.gpu_available() is False
    with pytest.raises(GPUUnavailableError, match="no usable CUDA driver"):
        parse_device("cuda:0")
    assert parse_device("auto") == CPU


def test_releasing_gpu_memory_without_a_driver_does_nothing(fake_cupy):
    """``cnn_xp train`` releases CuPy's pools when it returns; with CuPy installed but no driver
    its pools raise as soon as they are touched, so the release must not reach them."""
    cupy = _cupy_module(False, CUDARuntimeError("cudaErrorInsufficientDriver"))

    def pool():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    cupy.get_default_memory_pool = cupy.get_default_pinned_memory_pool = pool
    fake_cupy(cupy)
    assert backend.gpu_available() is False  # CuPy imported, as any device probe does
    backend.release_gpu_memory()


def test_cupy_runtime_error_never_escapes_gpu_available(fake_cupy):
    fake_cupy(_cupy_module(True, CUDARuntimeError("cudaErrorNoDevice")))
    assert backend.gpu_available() is False
    with pytest.raises(GPUUnavailableError, match="cudaErrorNoDevice"):
        parse_device("gpu")


def test_missing_gpu_index_names_the_count(fake_cupy):
    fake_cupy(_cupy_module(True, 2))
    assert backend.gpu_available(1) is True
    with pytest.raises(GPUUnavailableError, match="there is no GPU 3: this machine has 2"):
        parse_device("gpu:3")
    assert parse_device("gpu:1") == Device("gpu", 1)


def test_real_environment_gpu_available_never_raises():
    assert backend.gpu_available() in (True, False)


def test_strided_view_reads_the_elements_of_a_stepping_view_and_never_past_the_array(torch):
    from cnn_xp.backend import strided_view

    base = np.arange(12.0)
    stepping = base[::2]  # 1-D, but every other element: strides count in elements, not in bytes
    np.testing.assert_array_equal(strided_view(stepping, 1, (2, 2), (2, 1)), [[2.0, 4.0], [6.0, 8.0]])
    t = torch.arange(12.0)[::2]
    assert strided_view(t, 1, (2, 2), (2, 1)).tolist() == [[2.0, 4.0], [6.0, 8.0]]
    with pytest.raises(ValueError, match=r"reaches element 6 of an array of 6"):
        strided_view(stepping, 1, (2, 2), (4, 1))  # as_strided itself would read past the end
    with pytest.raises(ValueError, match="negative"):
        strided_view(stepping, 0, (2,), (-1,))
    assert strided_view(stepping, 0, (0, 3), (3, 1)).shape == (0, 3)
