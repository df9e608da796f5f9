"""The kernel policy (a context variable), the compiled kernels' signature table read from their
header, the checks before every kernel call, and the flushing of subnormal floats."""

from __future__ import annotations

import ctypes
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from cnn_xp import Adam, Relu
from cnn_xp.functions import native
from cnn_xp.functions.denormals import flushes_now, flushing
from cnn_xp.functions.fast_paths import (
    KernelPolicy,
    flush_denormals_enabled,
    ieee_denormals,
    native_enabled,
    numpy_kernels,
    policy,
    winograd_enabled,
)

from ..helpers import native_skip_reason


@pytest.fixture
def kernels():
    reason = native_skip_reason()  # (CI, which builds them, fails instead of skipping)
    if reason is not None:
        pytest.skip(reason)


def test_a_policy_change_holds_in_its_thread_and_the_threads_it_splits_into_only():
    seen: dict[str, bool] = {}
    inside, done = threading.Event(), threading.Event()

    def other() -> None:
        inside.wait(5)
        seen["other thread"] = native_enabled()
        done.set()

    worker = threading.Thread(target=other)
    worker.start()
    with numpy_kernels():
        inside.set()
        done.wait(5)
        seen["this thread"] = native_enabled()
    worker.join(5)
    assert seen == {"other thread": True, "this thread": False}
    assert native_enabled()


def test_the_policy_is_seeded_from_the_environment():
    env = {"CNN_XP_WINOGRAD": "2", "CNN_XP_NATIVE": "0", "CNN_XP_FLUSH_DENORMALS": "0"}
    assert KernelPolicy.from_environment(env) == KernelPolicy(True, True, 2, False, False)
    assert KernelPolicy.from_environment({"CNN_XP_FAST_PATHS": "0"}).fast_paths is False
    assert policy() == KernelPolicy.from_environment() or not winograd_enabled()


# --------------------------------------------------------------------------- the signature table


def test_the_header_types_every_function_the_library_exports():
    abi, table = native.header()
    text = Path(native.__file__).with_name("_kernels.h").read_text()
    assert abi == int(re.search(r"CNN_XP_KERNELS_ABI (\d+)", text).group(1))
    # every kernel of both dtypes; pointers, sizes and doubles as the declarations say
    assert table["adam_f32"] == (None, (ctypes.c_void_p,) * 4 + (ctypes.c_ssize_t,) + (ctypes.c_double,) * 4)
    assert table["relu_grad_f64"] == (None, (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_void_p))
    assert table["winograd4_scratch"] == (ctypes.c_ssize_t, (ctypes.c_ssize_t,) * 3)
    kernels = {name for name in table if name.endswith(("_f32", "_f64"))}
    assert len(kernels) == 2 * text.count("##S_(")
    # every function native.py calls is declared there
    called = set(re.findall(r'_call\(\s*f?"(?:\{family\})?(\w+)"', Path(native.__file__).read_text()))
    assert called and all(any(k.startswith(f"{c}_") or k.endswith(f"{c}_f32") for k in kernels) for c in called)


@pytest.mark.usefixtures("kernels")
def test_the_built_library_has_every_declared_function_with_the_headers_abi():
    lib = native._library()
    for name in native.header()[1]:
        assert hasattr(lib, name), name
    assert lib.cnn_xp_kernels_abi() == native.header()[0]


def _gcc_x86_64_linux_build() -> str | None:
    """Why the kernels' vector-width variants are not expected here, or None where they are."""
    import platform
    import shutil
    import sysconfig

    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return f"the variants are built for x86-64 Linux only, this is {platform.system()} {platform.machine()}"
    compiler = (sysconfig.get_config_var("CC") or "").split()
    if not compiler or "clang" in compiler[0] or shutil.which("nm") is None:
        return "the variants need GCC (target_clones) and nm to list the library's symbols"
    return None


@pytest.mark.usefixtures("kernels")
def test_each_kernel_is_built_for_every_vector_width_and_picked_at_load():
    """Where GCC builds for x86-64 Linux every kernel is an ifunc (target_clones: AVX-512, AVX2,
    baseline, resolved at load), not only the baseline build that would leave an AVX-512 core's
    vector units half used.  Their results are one's: the bit-exact tests of each kernel against
    the NumPy passes run on whichever variant this CPU picks."""
    import subprocess

    reason = _gcc_x86_64_linux_build()
    if reason is not None:
        pytest.skip(reason)
    library = native._library()
    assert library is not None
    symbols = subprocess.run(["nm", "-D", library._name], capture_output=True, text=True, check=True).stdout
    kinds = {line.split()[-1]: line.split()[-2] for line in symbols.splitlines() if len(line.split()) >= 2}
    kernels = [name for name in native.header()[1] if name.endswith(("_f32", "_f64"))]
    assert kernels and {name: kinds.get(name) for name in kernels} == dict.fromkeys(kernels, "i")


# --------------------------------------------------------------------------- checks before every call


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize(
    ("arrays", "words"),
    [
        (lambda p: (p.astype(np.float64), p, p.copy(), p.copy()), "g: expected dtype float64, got float32"),
        (lambda p: (np.frombuffer(p.tobytes(), np.float32), p.copy(), p.copy(), p.copy()), "p: the kernel writes it, but the array is read-only"),
        (lambda p: (p, p[:5], p.copy()[:5], p.copy()[:5]), "g: expected 6 elements"),
        (lambda p: (p, p, p.copy(), p.copy()), "p: the kernel writes it, but it overlaps g"),
        (lambda p: (np.ones(12, np.float32)[::2], p, p.copy(), p.copy()), "p: expected a C-contiguous, aligned array"),
    ],
    ids=["dtype", "read-only", "size", "alias", "strided"],
)  # fmt: skip
def test_a_kernel_is_never_called_with_arrays_that_do_not_fit(arrays, words):
    p, g, m, v = arrays(np.ones(6, np.float32))
    with pytest.raises(native.KernelArgumentError, match=words):
        native.adam(p, g, m, v, 0.1, 0.001, 0.01, 1e-7)


def test_adam_on_a_read_only_parameter_is_refused_before_anything_changes():
    """A parameter loaded from bytes or a read-only memory map: one ValueError naming it, and the
    optimizer's state is untouched (the compiled kernel would have written through it)."""
    W = np.frombuffer(np.ones(6, np.float32).tobytes(), np.float32).reshape(2, 3)
    opt = Adam(lr=0.1)
    with pytest.raises(ValueError, match=r"params\['W'\]: a read-only array"):
        opt.update({"W": W}, {"W": np.ones((2, 3), np.float32)})
    assert opt.iter == 0 and opt.state == {"m": {}, "v": {}} and np.all(W == 1)


def test_a_gradient_that_aliases_its_parameter_updates_as_the_array_passes_do(float_dtype):
    def step(native_on: bool) -> np.ndarray:
        p = np.linspace(-1, 1, 12).astype(float_dtype)
        opt = Adam(lr=0.1)
        with numpy_kernels() if not native_on else flushing():
            opt.update({"p": p}, {"p": p})  # the gradient is the parameter itself
        return p

    np.testing.assert_array_equal(step(True), step(False))


# --------------------------------------------------------------------------- subnormals


@pytest.mark.usefixtures("kernels")
def test_flushing_is_per_thread_and_undone_after_the_block():
    assert not flushes_now()
    seen: list[bool] = []
    asked, answered = threading.Event(), threading.Event()

    def other() -> None:  # started outside the block (a new thread copies its creator's setting)
        asked.wait(5)
        seen.append(flushes_now())
        answered.set()

    worker = threading.Thread(target=other)
    worker.start()
    with flushing():
        assert flushes_now() and flush_denormals_enabled()
        asked.set()
        answered.wait(5)
    worker.join(5)
    assert seen == [False]  # another thread keeps its own setting
    assert not flushes_now()
    with ieee_denormals(), flushing():
        assert not flushes_now()


@pytest.mark.usefixtures("kernels")
def test_a_network_flushes_subnormal_results_and_ieee_keeps_them():
    """What changes: a ReLU of subnormal inputs gives 0 inside a flushing block, the inputs
    themselves under IEEE; normal values are untouched."""
    x = np.array([[1e-40, -1e-40, 3e-39, 1.5, 2e-38]], np.float32)  # float32 subnormals: < 1.18e-38
    with ieee_denormals():
        assert Relu().forward(x * np.float32(1)).tolist()[0][0] > 0
    with flushing():
        y = Relu().forward(x * np.float32(1))  # DAZ reads them as 0; the product flushes
    np.testing.assert_array_equal(y, np.array([[0.0, 0.0, 0.0, 1.5, 2e-38]], np.float32))
