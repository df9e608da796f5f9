"""The book's weight pickles: read without running anything, converted, and giving the same
test accuracy in cnn_xp as the book's own code gives on the same images."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnn_xp import DeepConvNet, SimpleConvNet
from cnn_xp.book.weights import BookPickleError, book_network, read_book_pickle
from cnn_xp.cli.convert import main as convert_main
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.datasets import load_mnist

BOOK = Path(__file__).parent.parent / "fixtures" / "book"
SHIPPED = {"simple": BOOK / "ch07" / "params.pkl", "deep": BOOK / "ch08" / "deep_convnet_params.pkl"}
SENTINEL = Path("/tmp/cnn_xp_book_pickle_ran")

BOOKS_OWN_ACCURACY = """
import sys, numpy as np
sys.path[:0] = [{root!r}, {chapter!r}]
from cnn_xp.datasets import load_mnist          # the data only
from {module} import {cls}                      # the book's own network and common/ layers
_, (x, t) = load_mnist()
net = {cls}()
net.load_params({pkl!r})                        # the book's own pickle.load, on its own file
print(net.accuracy(x[:{n}], t[:{n}]))
"""


def books_own_accuracy(kind: str, n: int) -> float:
    chapter, module, cls = (
        ("ch07", "simple_convnet", "SimpleConvNet") if kind == "simple" else ("ch08", "deep_convnet", "DeepConvNet")
    )
    code = BOOKS_OWN_ACCURACY.format(
        root=str(BOOK), chapter=str(BOOK / chapter), module=module, cls=cls, pkl=str(SHIPPED[kind]), n=n
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True)
    return float(out.stdout.strip())


@pytest.mark.parametrize(("kind", "n"), [("simple", 1000), ("deep", 500)])
def test_converted_weights_give_the_books_own_accuracy(kind, n):
    net = book_network(read_book_pickle(SHIPPED[kind]))
    assert type(net) is (SimpleConvNet if kind == "simple" else DeepConvNet) and net.input_dim == (1, 28, 28)
    _, (x, t) = load_mnist()
    assert net.accuracy(x[:n], t[:n]) == books_own_accuracy(kind, n)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["simple", "deep"])
def test_converted_weights_on_the_whole_test_set(kind, capsys):
    """The figures of the closing note: the full 10,000 test images, cnn_xp and the book's code."""
    net = book_network(read_book_pickle(SHIPPED[kind]))
    _, (x, t) = load_mnist()
    ours, theirs = net.accuracy(x, t), books_own_accuracy(kind, 10_000)
    print(f"{kind}: cnn_xp {ours:.4f}, the book's code {theirs:.4f}")
    assert ours == theirs


def test_the_deep_conversion_folds_the_books_test_time_dropout():
    """The book's DeepConvNet scales by 0.5 after each dropout at test time: the converted
    network's scores are the book's scores (W8 x 0.25, b8 x 0.5), not just their argmax."""
    params = read_book_pickle(SHIPPED["deep"])
    net = book_network(params)
    x = load_mnist()[1][0][:8].astype(np.float64)
    h = x
    for _, layer in list(net.layers.items())[:17]:  # up to the first dropout, which is the identity here
        h = layer.forward(h, train_flg=False) if layer.uses_mode else layer.forward(h)
    book_scores = 0.5 * ((0.5 * h) @ params["W8"] + params["b8"])  # the book's Dropout(0.5), Affine2, Dropout(0.5)
    np.testing.assert_allclose(net.predict(x), book_scores, rtol=1e-12, atol=1e-12)


def test_convert_command_writes_a_file_evaluate_reads(tmp_path, capsys):
    out = tmp_path / "deep.safetensors"
    assert convert_main([str(SHIPPED["deep"]), str(out)]) == 0
    text = capsys.readouterr().out
    assert "DeepConvNet(input_dim=(1, 28, 28), hidden_size=50, output_size=10) in float64" in text and "folded" in text
    assert evaluate_main([str(out), "--device", "cpu", "--test-size", "500"]) == 0
    hits = capsys.readouterr().out
    net = book_network(read_book_pickle(SHIPPED["deep"]))
    _, (x, t) = load_mnist()
    assert f"({round(net.accuracy(x[:500], t[:500]) * 500)}/500)" in hits
    assert convert_main([str(SHIPPED["simple"]), str(tmp_path / "s.safetensors"), "--dtype", "float32"]) == 0
    assert SimpleConvNet().load_params(tmp_path / "s.safetensors") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.pkl", "out.safetensors"], "BOOK.pkl: no such file"),
        (["{bad}", "out.safetensors"], "not part of an array"),
        (["{simple}", "nodir/out.safetensors"], "OUT.safetensors: folder nodir does not exist"),
    ],
)
def test_convert_command_refuses_in_one_line(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.pkl").write_bytes(pickle.dumps(os.system))
    args = [a.format(bad=tmp_path / "bad.pkl", simple=SHIPPED["simple"]) for a in args]
    assert convert_main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


class RunsCommand:
    def __reduce__(self):
        return (os.system, (f"touch {SENTINEL}",))


class Evaluates:
    def __reduce__(self):
        return (eval, (f"open({str(SENTINEL)!r}, 'w')",))


class Plain:
    """A harmless class of the test's own: still not a dict of arrays."""

    def __init__(self) -> None:
        self.W1 = np.zeros(2)


def malicious(protocol: int) -> dict[str, bytes]:
    return {
        "os.system": pickle.dumps({"W1": RunsCommand()}, protocol=protocol),
        "eval": pickle.dumps(Evaluates(), protocol=protocol),
        "a class of its own": pickle.dumps({"W1": Plain()}, protocol=protocol),
        "an object array": pickle.dumps({"W1": np.array([None, 1], dtype=object)}, protocol=protocol),
        "an integer array": pickle.dumps({"W1": np.arange(3)}, protocol=protocol),
        "a list of arrays": pickle.dumps([np.zeros(2)], protocol=protocol),
        "a non-string key": pickle.dumps({1: np.zeros(2)}, protocol=protocol),
        "a number": pickle.dumps({"W1": 3.0}, protocol=protocol),
        "an empty dict": pickle.dumps({}, protocol=protocol),
        "truncated": pickle.dumps({"W1": np.zeros(4)}, protocol=protocol)[:-5],
    }


@pytest.mark.parametrize("protocol", range(6))
def test_malicious_pickles_are_refused_and_nothing_runs(protocol, tmp_path):
    SENTINEL.unlink(missing_ok=True)
    for what, data in malicious(protocol).items():
        path = tmp_path / f"{what}.pkl"
        path.write_bytes(data)
        with pytest.raises(BookPickleError, match=str(path).replace(".", r"\.")):
            read_book_pickle(path)
        with pytest.raises(ValueError, match="pickle"):  # cnn_xp's own loader never unpickles
            SimpleConvNet().load_params(path)
    assert not SENTINEL.exists()


@pytest.mark.parametrize("protocol", range(6))
def test_plain_dicts_of_float_arrays_come_back_exactly(protocol, tmp_path):
    rng = np.random.default_rng(protocol)
    arrays = {
        "W1": rng.standard_normal((3, 1, 2, 2)),
        "b1": rng.standard_normal(3).astype(np.float32),
        "F": np.asfortranarray(rng.standard_normal((4, 5))),
        "big_endian": rng.standard_normal(6).astype(">f8"),
        "half": rng.standard_normal(2).astype(np.float16),
    }
    path = tmp_path / "w.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=protocol))
    got = read_book_pickle(path)
    assert got.keys() == arrays.keys()
    for key, value in arrays.items():
        np.testing.assert_array_equal(got[key], value)
        assert got[key].dtype == value.dtype.newbyteorder("=")


def test_out_of_band_buffers_are_refused(tmp_path):
    buffers: list = []
    data = pickle.dumps({"W1": np.zeros(1000)}, protocol=5, buffer_callback=buffers.append)
    assert buffers  # the array's bytes are not in the file
    path = tmp_path / "oob.pkl"
    path.write_bytes(data)
    with pytest.raises(BookPickleError):
        read_book_pickle(path)


def test_load_params_on_a_pickle_names_the_convert_command(tmp_path):
    for protocol in (0, 2, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps({"W1": np.zeros(3)}, protocol=protocol))
        with pytest.raises(ValueError, match=r"is a pickle.*python -m cnn_xp\.convert"):
            SimpleConvNet().load_params(path)


def test_arrays_of_neither_network_are_refused():
    with pytest.raises(ValueError, match="neither the book's SimpleConvNet"):
        book_network({"W1": np.zeros((2, 2)), "b1": np.zeros(2)})
    bad = read_book_pickle(SHIPPED["simple"])
    bad["W2"] = np.zeros((4321, 100))
    with pytest.raises(ValueError, match="fit no square input size"):
        book_network(bad)


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        (b"\x80\x04N" + b"\x85" * 100_000 + b".", "nests more than 64 deep"),  # a key nested 100,000 tuples deep
        (b"\x80\x04Nr\xff\xff\xff\x7f.", "stores memo entry 2147483647"),  # 9 bytes that grew the memo to 2 GB
        (b"\x80\x04B\xff\xff\xff\x7f.", "expected 2147483647 bytes in a bytes4, but only 1 remain"),
        (b"\x80\x04h\x07.", "reads memo entry 7, which was never stored"),
        (b"\x80\x04" + b"N" * 2_000_000 + b".", "has more than"),
    ],
    ids=["deep nesting", "huge memo index", "huge declared length", "memo read before written", "opcode flood"],
)
def test_pickles_that_would_exhaust_the_unpickler_are_refused_in_one_line_before_it_runs(tmp_path, payload, words):
    import resource

    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BookPickleError, match=words):
        read_book_pickle(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB: no large allocation


def test_a_pickle_of_non_finite_weights_is_refused_not_converted(tmp_path, capsys):
    """(convert once wrote NaN weights with exit status 0, which evaluate then refused.)"""
    from cnn_xp.cli.convert import main as convert_main

    arrays = {k: v.copy() for k, v in read_book_pickle(SHIPPED["simple"]).items()}
    arrays["W2"][0, 0] = np.nan
    path = tmp_path / "nan.pkl"
    path.write_bytes(pickle.dumps(arrays))
    assert convert_main([str(path), str(tmp_path / "out.safetensors")]) == 2
    assert "array 'W2' holds non-finite values" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
