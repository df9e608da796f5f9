"""The book's own ch05-ch08 scripts, run both ways — with their imports prefixed by
``cnn_xp.book.`` and unmodified through ``python -m cnn_xp.book`` — and, where both run, beside
the book's own code (its ``common/``, ``simple_convnet.py`` and ``deep_convnet.py``) on the same
data. Only data sizes and iteration counts are cut for speed (:data:`CUTS`)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BOOK = Path(__file__).parent.parent / "fixtures" / "book"

# script -> substitutions that cut sizes and iteration counts (nothing else is changed)
LOAD = "load_mnist(flatten=False)\n"
CUTS: dict[str, list[tuple[str, str]]] = {
    "ch05/train_neuralnet.py": [("iters_num = 10000", "iters_num = 200")],
    "ch06/batch_norm_test.py": [
        ("x_train = x_train[:1000]\nt_train = t_train[:1000]", "x_train = x_train[:200]\nt_train = t_train[:200]"),
        ("max_epochs = 20", "max_epochs = 2"),
        ("np.logspace(0, -4, num=16)", "np.logspace(0, -4, num=2)"),
    ],
    "ch06/hyperparameter_optimization.py": [
        ("optimization_trial = 100", "optimization_trial = 2"),
        ("epocs=50", "epocs=2"),
    ],
    "ch06/optimizer_compare_mnist.py": [("max_iterations = 2000", "max_iterations = 20")],
    "ch06/overfit_dropout.py": [("epochs=301", "epochs=2")],
    "ch06/overfit_weight_decay.py": [("max_epochs = 201", "max_epochs = 2")],
    "ch06/weight_init_compare.py": [("max_iterations = 2000", "max_iterations = 20")],
    "ch07/train_convnet.py": [
        ("#x_train, t_train = x_train[:5000], t_train[:5000]", "x_train, t_train = x_train[:300], t_train[:300]"),
        ("#x_test, t_test = x_test[:1000], t_test[:1000]", "x_test, t_test = x_test[:100], t_test[:100]"),
        ("max_epochs = 20", "max_epochs = 2"),
    ],
    "ch08/train_deepnet.py": [
        (LOAD, LOAD + "x_train, t_train, x_test, t_test = x_train[:200], t_train[:200], x_test[:100], t_test[:100]\n"),
        ("epochs=20", "epochs=1"),
    ],
    "ch08/misclassified_mnist.py": [
        ("#sampled = 1000", "sampled = 500"),
        ("#x_test = x_test[:sampled]", "x_test = x_test[:sampled]"),
        ("#t_test = t_test[:sampled]", "t_test = t_test[:sampled]"),
    ],
    "ch08/half_float_network.py": [("sampled = 10000", "sampled = 500")],
}
SCRIPTS = {
    "ch05": ["gradient_check.py", "train_neuralnet.py"],
    # ch06/batch_norm_gradient_check.py is left out: its numerical gradient of 100,000 weights takes 40 s a run
    "ch06": [
        "batch_norm_test.py",
        "hyperparameter_optimization.py",
        "optimizer_compare_mnist.py",
        "optimizer_compare_naive.py",
        "overfit_dropout.py",
        "overfit_weight_decay.py",
        "weight_init_activation_histogram.py",
        "weight_init_compare.py",
    ],
    "ch07": ["gradient_check.py", "visualize_filter.py", "apply_filter.py", "train_convnet.py", "simple_convnet.py"],
    "ch08": [
        "misclassified_mnist.py",
        "half_float_network.py",
        "train_deepnet.py",
        "deep_convnet.py",
        "awesome_net.py",
    ],
}
# the imports of modules cnn_xp.book provides (common.multi_layer_net, say, stays the book's)
PREFIX = re.compile(
    r"^(\s*from\s+)((?:common\.(?:layers|util|functions|gradient|optimizer|trainer)|dataset|simple_convnet|deep_convnet)\b)",
    re.MULTILINE,
)
# the book's dataset/mnist.py downloads MNIST; its own code is given the bundled data instead
OWN_MNIST = "from cnn_xp.book.dataset.mnist import load_mnist  # the data only: every network is the book's\n"


@pytest.fixture
def book(tmp_path) -> Path:
    """A copy of the book's tree with :data:`CUTS` applied."""
    return cut_book(tmp_path / "book")


def cut_book(root: Path) -> Path:
    """Copy the book's tree to ``root`` with :data:`CUTS` applied; returns ``root``."""
    shutil.copytree(BOOK, root)
    for name, subs in CUTS.items():
        path = root / name
        text = path.read_text()
        for old, new in subs:
            assert old in text, (name, old)
            text = text.replace(old, new)
        path.write_text(text)
    return root


def run(args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def unmodified(book: Path, chapter: str, script: str) -> str:
    return run([sys.executable, "-m", "cnn_xp.book", script], book / chapter).stdout


def prefixed(book: Path, chapter: str, script: str) -> str:
    path = book / chapter / script
    text = PREFIX.sub(r"\1cnn_xp.book.\2", path.read_text())
    (book / chapter / f"prefixed_{script}").write_text(text)
    return run([sys.executable, f"prefixed_{script}"], book / chapter).stdout


def books_own(book: Path, chapter: str, script: str) -> str:
    (book / "dataset" / "__init__.py").write_text("")
    (book / "dataset" / "mnist.py").write_text(OWN_MNIST)
    return run([sys.executable, script], book / chapter).stdout


def numbers(text: str, key: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{key}[:\s]*(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)", text)]


@pytest.mark.parametrize("chapter", [pytest.param("ch05", marks=pytest.mark.slow), "ch07"])  # ch05: 18 s
def test_gradient_check_both_ways_beside_the_books_own(book, chapter):
    ours = [unmodified(book, chapter, "gradient_check.py"), prefixed(book, chapter, "gradient_check.py")]
    own = books_own(book, chapter, "gradient_check.py")
    keys = ["W1", "b1", "W2", "b2"] + (["W3", "b3"] if chapter == "ch07" else [])
    for out in [*ours, own]:
        diffs = [numbers(out, k)[0] for k in keys]
        # mean |numerical - backprop| per parameter. The scripts draw unseeded weights, and a ReLU
        # kink within h of an activation moves a mean by up to ~3e-4 (seen in the book's own runs
        # too): a bound for a script's output. The exact checks, seeded, are in
        # tests/models/test_book_semantics.py.
        assert len(diffs) == len(keys) and max(diffs) < 2e-3, out


@pytest.mark.slow
@pytest.mark.parametrize("chapter", SCRIPTS)
def test_every_script_runs_both_ways(book, chapter):
    for script in SCRIPTS[chapter]:
        if script == "visualize_filter.py" or script == "apply_filter.py":
            shutil.copy(BOOK / "ch07" / "params.pkl", book / "ch07" / "params.pkl")  # the book's shipped weights
        a = unmodified(book, chapter, script)
        b = prefixed(book, chapter, script)
        if script.startswith("train_"):
            assert ("Saved Network Parameters!" in a and "Saved Network Parameters!" in b) or chapter == "ch05"
    if chapter == "ch07":  # params.pkl as train_convnet.py saved it (safetensors bytes) loads back
        assert (book / "ch07" / "params.pkl").read_bytes()[8:9] == b"{"
        unmodified(book, "ch07", "visualize_filter.py")


@pytest.mark.slow
def test_misclassified_mnist_prints_what_the_books_own_code_prints(book):
    """The shipped deep_convnet_params.pkl through the restricted unpickler: the same accuracy
    and the same misclassified images as the book's own DeepConvNet, both ways."""
    ours = unmodified(book, "ch08", "misclassified_mnist.py")
    own = books_own(book, "ch08", "misclassified_mnist.py")
    assert numbers(ours, "test accuracy") == numbers(own, "test accuracy")
    assert ours.splitlines()[-1] == own.splitlines()[-1]  # {view index: (label, inference), ...}
    assert prefixed(book, "ch08", "misclassified_mnist.py").splitlines()[-1] == own.splitlines()[-1]


@pytest.mark.slow
def test_half_float_network_as_the_books_own(book):
    ours = numbers(unmodified(book, "ch08", "half_float_network.py"), r"\.\.\. \n")
    own = numbers(books_own(book, "ch08", "half_float_network.py"), r"\.\.\. \n")
    assert len(ours) == 2 and ours == own, (ours, own)
