"""A corpus of malformed checkpoints, generated from one good file: every one is refused with
one line (exit status 2) by ``evaluate``, ``predict`` and ``train --resume``, and by
``Network.load_params`` where it concerns the model, at a cost of about the file's own size
(peak memory far under 200 MB), whatever the file claims."""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import safetensors.numpy

from cnn_xp import Adam, SimpleConvNet
from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.predict import main as predict_main
from cnn_xp.cli.train import main as train_main
from cnn_xp.train import load_checkpoint
from cnn_xp.train.checkpoint import save_checkpoint

PEAK_LIMIT = 200 * 2**20
NET_KW = {"conv_param": {"filter_num": 2, "filter_size": 5}, "hidden_size": 8}


def good_checkpoint(path: Path) -> Path:
    """A SimpleConvNet for MNIST after one epoch of 4 Adam steps, with the metadata the command
    line writes."""
    net = SimpleConvNet(**NET_KW, seed=0)
    opt = Adam(lr=0.002)
    rng = np.random.default_rng(0)
    x, t = rng.random((8, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, 8)
    for _ in range(4):
        opt.update(net.params, net.gradient(x, t))
    record = {"epoch": 1, "step": 4, "loss": 2.1, "train_acc": 0.2, "test_loss": 2.0, "test_acc": 0.25}
    trainer = {
        "epoch": 1,
        "step": 4,
        "step_in_epoch": 0,
        "history": [{**record, "seconds": 0.1, "images_per_s": 2000.0}],
        "best_test_acc": 0.25,
        "partial": {"loss_sum": 0.0, "hits": 0, "seen": 0, "seconds": 0.0},
        "data_seed": 0,
    }
    run = {
        "model": "simple",
        "dataset": "mnist",
        "batch_size": 50,
        "optimizer": "adam",
        "lr": 0.002,
        "lr_schedule": "exp",
        "lr_decay": 0.75,
        "shift": 0,
        "seed": 0,
        "dtype": "float32",
        "train_size": 200,
        "test_size": 100,
        "epochs": 2,
        "num_classes": 10,
    }
    return save_checkpoint(path, net, opt, trainer=trainer, run=run)


# --------------------------------------------------------------------------- writing files


def read(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        meta = json.loads(f.read(n))["__metadata__"]
    return safetensors.numpy.load_file(str(path)), meta


def write_raw(path: Path, tensors: dict[str, tuple[str, list[int], bytes | int]], meta: dict[str, str]) -> None:
    """A safetensors file by hand: ``(dtype, shape, data)``; an int for data declares that many
    bytes without writing them (a sparse file)."""
    header: dict = {"__metadata__": meta}
    offset, blobs = 0, []
    for name, (dtype, shape, data) in tensors.items():
        size = data if isinstance(data, int) else len(data)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for blob in blobs:
            if isinstance(blob, int):
                f.seek(blob, os.SEEK_CUR)
            else:
                f.write(blob)
        f.truncate(8 + len(text) + offset)


def raw_of(arrays: dict[str, np.ndarray]) -> dict[str, tuple[str, list[int], bytes | int]]:
    names = {
        np.dtype("float32"): "F32",
        np.dtype("float64"): "F64",
        np.dtype("float16"): "F16",
        np.dtype("int32"): "I32",
    }
    return {k: (names[v.dtype], list(v.shape), np.ascontiguousarray(v).tobytes()) for k, v in arrays.items()}


def _plain(spec: dict, pad: list | None = None) -> dict:
    """A book network's spec as a network of one's own (its layers, no constructor arguments)."""
    plain = {k: v for k, v in spec.items() if k != "kwargs"} | {"name": "Mine"}
    if pad is not None:
        plain["layers"] = [dict(plain["layers"][0], pad=pad), *plain["layers"][1:]]
    return plain


def _relus(count: int) -> list[dict]:
    return [{"name": f"R{i}", "type": "Relu"} for i in range(count)]


_PCG64_TOO_LARGE = {"bit_generator": "PCG64", "state": {"state": 2**200, "inc": 1}, "has_uint32": 0, "uinteger": 0}


def edit_meta(key: str, change: Callable[[dict], object]) -> Callable[..., None]:
    """A case that rewrites one JSON metadata entry (``change`` edits it in place, or returns a
    replacement); ``model`` may rewrite the model's description as well."""

    def make(good: Path, out: Path, model: Callable[[dict], dict] | None = None) -> None:
        arrays, meta = read(good)
        value = json.loads(meta[key])
        result = change(value)
        meta[key] = json.dumps(value if result is None else result)
        if model is not None:
            meta["model"] = json.dumps(model(json.loads(meta["model"])))
        safetensors.numpy.save_file(arrays, str(out), metadata=meta)

    return make


def set_meta(key: str, text: str | None) -> Callable[[Path, Path], None]:
    def make(good: Path, out: Path) -> None:
        arrays, meta = read(good)
        if text is None:
            meta.pop(key)
        else:
            meta[key] = text
        safetensors.numpy.save_file(arrays, str(out), metadata=meta)

    return make


def edit_arrays(change: Callable[[dict], None]) -> Callable[[Path, Path], None]:
    def make(good: Path, out: Path) -> None:
        arrays, meta = read(good)
        change(arrays)
        write_raw(out, raw_of(arrays), meta)

    return make


def raw_tensor(name: str, dtype: str, shape: list[int], data: bytes | int) -> Callable[[Path, Path], None]:
    """Replace or add one tensor as raw bytes (dtypes NumPy has no name for, sparse giants)."""

    def make(good: Path, out: Path) -> None:
        arrays, meta = read(good)
        tensors = raw_of(arrays)
        tensors[name] = (dtype, shape, data)
        write_raw(out, tensors, meta)

    return make


def bytes_file(data: bytes) -> Callable[[Path, Path], None]:
    return lambda good, out: out.write_bytes(data)


def model(change: Callable[[dict], object]) -> Callable[[Path, Path], None]:
    return edit_meta("model", change)


def layer(i: int, **settings: object) -> Callable[[Path, Path], None]:
    return model(lambda m: m["layers"][i].update(settings))


def generic(m: dict) -> None:
    """The same network described as a generic Network (no book kwargs)."""
    m["name"] = "Network"
    del m["kwargs"]


def kwargs(**values: object) -> Callable[[Path, Path], None]:
    def change(m: dict) -> None:
        m["kwargs"].update(values)
        del m["layers"]  # described by the book constructor alone, as files of format 1 are

    return model(change)


def deep_arrays(good: Path, out: Path) -> None:
    """Another architecture's arrays under this file's description."""
    from cnn_xp import DeepConvNet

    _, meta = read(good)
    deep = DeepConvNet(hidden_size=4, seed=0)
    arrays = {f"model/{k}": np.asarray(v) for k, v in deep.state_dict().items()}
    safetensors.numpy.save_file(arrays, str(out), metadata=meta)


def drop_optimizer_tensor(arrays: dict) -> None:
    del arrays["optim/m/W1"]


def zip_file(good: Path, out: Path) -> None:
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("data.pkl", pickle.dumps({"W1": 1}))


class Evil:
    def __reduce__(self):  # would run a command if unpickled
        return (os.system, ("echo pwned > /tmp/cnn_xp_pwned",))


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, Path], None]
    about_model: bool  # load_params reads it (the file, its model description, its tensors)


def case(name: str, make: Callable[[Path, Path], None], about_model: bool = True) -> Case:
    return Case(name, make, about_model)


CASES = [
    # ---- the file itself
    case("empty file", bytes_file(b"")),
    case("random bytes", bytes_file(bytes(range(256)) * 4)),
    case("pickle protocol 0", bytes_file(pickle.dumps({"W1": [1.0]}, protocol=0))),
    case("pickle protocol 2 running a command", bytes_file(pickle.dumps(Evil(), protocol=2))),
    case("pickle protocol 5", bytes_file(pickle.dumps({"W1": np.zeros(3)}, protocol=5))),
    case("zip archive (torch.save)", zip_file),
    case("header length beyond the file", bytes_file(struct.pack("<Q", 2**40) + b"{}")),
    case("header not JSON", bytes_file(struct.pack("<Q", 8) + b"{nope!!}")),
    case("truncated", lambda g, o: o.write_bytes(g.read_bytes()[:-40])),
    case("no metadata at all", lambda g, o: safetensors.numpy.save_file(read(g)[0], str(o))),
    # ---- format entries
    case("format of another program", set_meta("format", "other.program")),
    case("format missing, other metadata present", set_meta("format", None)),
    case("format_version not a number", set_meta("format_version", "two")),
    case("format_version from the future", set_meta("format_version", "99")),
    case("format_version zero", set_meta("format_version", "0")),
    case("unknown metadata entry", set_meta("comment", "hello")),
    case("model entry missing", set_meta("model", None)),
    case("model not JSON", set_meta("model", "{'name': 1")),
    case("model deeply nested JSON", set_meta("model", "[" * 100_000 + "]" * 100_000)),
    # ---- the model's description
    case("model a list", model(lambda m: [m])),
    case("model unknown entry", model(lambda m: m.update(extra=1))),
    case("model name not a string", model(lambda m: m.update(name=7))),
    case("book kwargs not an object", model(lambda m: m.update(kwargs=[1, 2]))),
    case("book kwargs unknown argument", kwargs(bias=False)),
    case("book kwargs claim hidden_size=60000", kwargs(hidden_size=60_000)),
    case("book kwargs negative hidden_size", kwargs(hidden_size=-8)),
    case("book kwargs hidden_size a string", kwargs(hidden_size="8")),
    case("book kwargs hidden_size a float", kwargs(hidden_size=8.0)),
    case("book kwargs input_dim of two numbers", kwargs(input_dim=[28, 28])),
    case("book kwargs zero filters", kwargs(conv_param={"filter_num": 0})),
    case("book kwargs filter larger than the image", kwargs(conv_param={"filter_size": 99})),
    case("book kwargs zero outputs", kwargs(output_size=0)),
    case("book kwargs dtype bfloat16", kwargs(dtype="bfloat16")),
    case("book kwargs unknown initialisation", kwargs(weight_init_std="magic")),
    case("layers contradict the book kwargs", layer(3, shape=[288, 60_000])),
    case("generic network without layers", model(lambda m: (generic(m), m.pop("layers")))),
    case("generic network with no layers", model(lambda m: (generic(m), m.update(layers=[])))),
    case("unregistered layer type", model(lambda m: (generic(m), m["layers"][1].update(type="Swish")))),
    case("layer without a name", model(lambda m: (generic(m), m["layers"][1].pop("name")))),
    case("duplicate layer names", model(lambda m: (generic(m), m["layers"][1].update(name="Conv1")))),
    case("layer setting unknown", model(lambda m: (generic(m), m["layers"][0].update(dilation=2)))),
    case("layer shape negative", model(lambda m: (generic(m), m["layers"][0].update(shape=[2, 1, 5, -5])))),
    case("layer claims a huge affine", model(lambda m: (generic(m), m["layers"][3].update(shape=[288, 60_000])))),
    case("pooling padding too large", model(lambda m: (generic(m), m["layers"][2].update(pad=[5, 5])))),
    case("unknown loss layer", model(lambda m: m.update(loss={"type": "Hinge"}))),
    case("loss layer with arrays", model(lambda m: m.update(loss={"type": "Affine", "shape": [2, 2]}))),
    case("input_dim with a zero", model(lambda m: (generic(m), m.update(input_dim=[0, 28, 28])))),
    case("dtype float16", model(lambda m: m.update(dtype="float16"))),
    # ---- the tensors
    case("a model tensor missing", edit_arrays(lambda a: a.pop("model/W2"))),
    case("an unused tensor", edit_arrays(lambda a: a.update({"model/W9": np.zeros(3, np.float32)}))),
    case("an unused sparse 2 GiB tensor", raw_tensor("model/extra", "F32", [2**29], 2**31)),
    case("a tensor of the wrong shape", edit_arrays(lambda a: a.update({"model/W3": np.zeros((8, 11), np.float32)}))),
    case("bf16 tensor", raw_tensor("model/W3", "BF16", [8, 10], bytes(160))),
    case("f16 tensor", edit_arrays(lambda a: a.update({"model/W3": np.zeros((8, 10), np.float16)}))),
    case("int32 tensor", edit_arrays(lambda a: a.update({"model/W3": np.zeros((8, 10), np.int32)}))),
    case("float64 tensor in a float32 model", edit_arrays(lambda a: a.update({"model/b3": np.zeros(10)}))),
    case("NaN in a weight", edit_arrays(lambda a: a["model/W2"].__setitem__((0, 0), np.nan))),
    case("inf in a bias", edit_arrays(lambda a: a["model/b1"].__setitem__(0, np.inf))),
    case("another architecture's arrays", deep_arrays),
    # ---- the optimizer (read by --resume, evaluate and predict alike)
    case("optimizer not JSON", set_meta("optimizer", "Adam!"), about_model=False),
    case("optimizer unknown", edit_meta("optimizer", lambda o: o.update(name="Lion")), about_model=False),
    case("negative learning rate", edit_meta("optimizer", lambda o: o["hyper"].update(lr=-0.1)), about_model=False),
    case("learning rate a string", edit_meta("optimizer", lambda o: o["hyper"].update(lr="0.1")), about_model=False),
    case("learning rate NaN", edit_meta("optimizer", lambda o: o["hyper"].update(lr=float("nan"))), about_model=False),
    case("beta1 above 1", edit_meta("optimizer", lambda o: o["hyper"].update(beta1=2.0)), about_model=False),
    case("unknown hyperparameter", edit_meta("optimizer", lambda o: o["hyper"].update(warmup=3)), about_model=False),
    case(
        "state names of another optimizer",
        edit_meta("optimizer", lambda o: o.update(state_names=["v"])),
        about_model=False,
    ),
    case("step counter of 10^12", edit_meta("optimizer", lambda o: o.update(iter=10**12)), about_model=False),
    case("negative step counter", edit_meta("optimizer", lambda o: o.update(iter=-1)), about_model=False),
    case("an optimizer state tensor missing", edit_arrays(drop_optimizer_tensor), about_model=False),
    # ---- the trainer's counters
    case("trainer not an object", set_meta("trainer", "[1, 2]"), about_model=False),
    case("trainer unknown entry", edit_meta("trainer", lambda t: t.update(lr=1)), about_model=False),
    case("trainer epoch negative", edit_meta("trainer", lambda t: t.update(epoch=-1)), about_model=False),
    case("trainer step a string", edit_meta("trainer", lambda t: t.update(step="4")), about_model=False),
    case("trainer step 10^12", edit_meta("trainer", lambda t: t.update(step=10**12)), about_model=False),
    case("trainer history not a list", edit_meta("trainer", lambda t: t.update(history={})), about_model=False),
    case("trainer history of another length", edit_meta("trainer", lambda t: t.update(epoch=3)), about_model=False),
    case("best accuracy above 1", edit_meta("trainer", lambda t: t.update(best_test_acc=1.5)), about_model=False),
    case(
        "history loss NaN", edit_meta("trainer", lambda t: t["history"][0].update(loss=float("nan"))), about_model=False
    ),
    # ---- the run's settings
    case("run not an object", set_meta("run", '"fast"'), about_model=False),
    case("run unknown setting", edit_meta("run", lambda r: r.update(warmup=5)), about_model=False),
    case("run unknown schedule", edit_meta("run", lambda r: r.update(lr_schedule="warmup")), about_model=False),
    case("run negative train size", edit_meta("run", lambda r: r.update(train_size=-5)), about_model=False),
    case("run batch size zero", edit_meta("run", lambda r: r.update(batch_size=0)), about_model=False),
    case("run network not a name", edit_meta("run", lambda r: r.update(model=["simple"])), about_model=False),
    case("run dtype float16", edit_meta("run", lambda r: r.update(dtype="float16")), about_model=False),
    case("run negative learning rate", edit_meta("run", lambda r: r.update(lr=-1.0)), about_model=False),
    case("run epochs a float", edit_meta("run", lambda r: r.update(epochs=2.5)), about_model=False),
    # ---- descriptions whose size or kind would do harm when built or run
    case("loss layer a Relu", edit_meta("model", lambda m: {**_plain(m), "loss": {"type": "Relu"}})),
    case("padding of 3000 on a network of one's own", edit_meta("model", lambda m: _plain(m, pad=[3000, 3000]))),
    case(
        "30,000 ReLU layers",
        edit_meta("model", lambda m: {**_plain(m), "layers": [*_plain(m)["layers"], *_relus(30_000)]}),
    ),
    case(
        "rng state out of range",
        lambda good, out: edit_meta("rng", lambda r: {"Drop": _PCG64_TOO_LARGE})(
            good,
            out,
            model=lambda m: {**_plain(m), "layers": [*_plain(m)["layers"], {"name": "Drop", "type": "Dropout"}]},
        ),
        about_model=False,
    ),
    # ---- random states
    case("rng not an object", set_meta("rng", "3"), about_model=False),
    case("rng for a layer that does not exist", set_meta("rng", json.dumps({"Dropout9": {}})), about_model=False),
    case("rng for a layer with weights", set_meta("rng", json.dumps({"Conv1": {"state": 1}})), about_model=False),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("corpus")
    good = good_checkpoint(root / "good.safetensors")
    files = {}
    for i, c in enumerate(CASES):
        files[c.name] = root / f"case{i:03d}.safetensors"
        c.make(good, files[c.name])
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(root / "digit.png")
    files["good"], files["image"] = good, root / "digit.png"
    return files


def test_the_corpus_is_large_and_its_good_file_works(corpus, capsys, tmp_path):
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)
    assert evaluate_main([str(corpus["good"]), "--device", "cpu", "--test-size", "20"]) == 0
    assert predict_main([str(corpus["good"]), str(corpus["image"]), "--device", "cpu"]) == 0
    SimpleConvNet(**NET_KW).load_params(corpus["good"])
    load_checkpoint(corpus["good"]).build_optimizer()


# Cases whose fault lies in what only resuming reads (the optimizer's entry and tensors, the
# trainer's counters): evaluate and predict read the model alone and work; --resume refuses.
TRAINING_ONLY = {
    "optimizer not JSON", "optimizer unknown", "an optimizer state tensor missing", "negative learning rate",
    "learning rate a string", "trainer step 10^12", "learning rate NaN", "trainer history of another length",
    "beta1 above 1", "unknown hyperparameter", "state names of another optimizer", "step counter of 10^12",
    "negative step counter",
}  # fmt: skip


def commands(path: Path, image: Path, out: Path) -> dict[str, Callable[[], int]]:
    return {
        "evaluate": lambda: evaluate_main([str(path), "--device", "cpu", "--test-size", "20"]),
        "predict": lambda: predict_main([str(path), str(image), "--device", "cpu"]),
        "resume": lambda: train_main(["--resume", str(path), "--device", "cpu", "--quiet", "--out", str(out)]),
    }


def peak_of(fn: Callable[[], object]) -> tuple[object, int]:
    tracemalloc.start()
    try:
        result = fn()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("c", CASES, ids=lambda c: c.name)
def test_each_malformed_checkpoint_is_one_line_and_exit_2(c, corpus, capsys, tmp_path):
    for command, run in commands(corpus[c.name], corpus["image"], tmp_path / "run").items():
        code, peak = peak_of(run)
        captured = capsys.readouterr()
        if c.name in TRAINING_ONLY and command != "resume":  # a part only resuming uses: not read here
            assert code == 0, f"{command}: exit {code}, stderr {captured.err!r}"
            continue
        lines = captured.err.strip().splitlines()
        assert code == 2 and len(lines) == 1, f"{command}: exit {code}, stderr {captured.err!r}"
        assert str(corpus[c.name].name) in lines[0] or (command == "resume" and "--resume" in lines[0]), lines[0]
        assert peak < PEAK_LIMIT, f"{command}: peak {peak / 2**20:.0f} MiB"
        assert not (tmp_path / "run" / "last.safetensors").exists()
    assert not Path("/tmp/cnn_xp_pwned").exists()


@pytest.mark.parametrize("c", [c for c in CASES if c.about_model], ids=lambda c: c.name)
def test_load_params_refuses_each_malformed_model_file(c, corpus):
    net = SimpleConvNet(**NET_KW, seed=1)
    before = {k: np.array(v) for k, v in net.state_dict().items()}
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            net.load_params(corpus[c.name])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "\n" not in str(info.value) and corpus[c.name].name in str(info.value)
    assert peak < PEAK_LIMIT, f"peak {peak / 2**20:.0f} MiB"
    for key, value in net.state_dict().items():  # nothing changed
        np.testing.assert_array_equal(value, before[key])


# Runs a module as ``python -m`` does and, at exit, writes the process's own peak resident
# memory (VmHWM: of this program's image only; ru_maxrss would also count the parent's memory
# that a forked child inherits) to the file named by the first argument.
PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def record():
    with open("/proc/self/status") as f, open(out, "w") as o:
        o.write(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
atexit.register(record)
sys.argv = sys.argv[1:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def rss_of_command(*args: str) -> tuple[int, str, float]:
    """(exit status, stderr, peak resident memory in MiB) of a fresh ``python -m ...`` process."""
    import tempfile

    with tempfile.NamedTemporaryFile(suffix=".peak") as peak:
        proc = subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, peak.name, *args], capture_output=True, text=True, timeout=120
        )
        kib = Path(peak.name).read_text().strip()
    return proc.returncode, proc.stderr, int(kib) / 1024


@pytest.mark.parametrize(
    "name",
    ["book kwargs claim hidden_size=60000", "an unused sparse 2 GiB tensor", "layer claims a huge affine"],
)
def test_big_claims_cost_what_the_file_costs_in_a_fresh_process(name, corpus, tmp_path):
    for args in (
        ("cnn_xp.evaluate", str(corpus[name]), "--device", "cpu"),
        ("cnn_xp.predict", str(corpus[name]), str(corpus["image"]), "--device", "cpu"),
        ("cnn_xp.train", "--resume", str(corpus[name]), "--device", "cpu", "--out", str(tmp_path / "r")),
    ):
        code, err, rss = rss_of_command(*args)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert rss < 200, f"{args[0]}: {rss:.0f} MiB"


@pytest.mark.slow
def test_every_case_in_a_fresh_process_stays_under_200_mb(corpus, tmp_path):
    worst = (0.0, "")
    for c in CASES:
        for args in (
            ("cnn_xp.evaluate", str(corpus[c.name]), "--device", "cpu"),
            ("cnn_xp.train", "--resume", str(corpus[c.name]), "--device", "cpu", "--out", str(tmp_path / "r")),
        ):
            if c.name in TRAINING_ONLY and args[0] == "cnn_xp.evaluate":
                continue  # evaluates (tested above)
            code, err, rss = rss_of_command(*args)
            assert code == 2 and len(err.strip().splitlines()) == 1, (c.name, err)
            worst = max(worst, (rss, f"{c.name} / {args[0]}"))
    assert worst[0] < 200, worst
    print(f"largest peak: {worst[0]:.0f} MiB ({worst[1]}) over {len(CASES)} files")


def test_an_unreadable_file_is_one_line(corpus, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("permissions do not stop root from reading a file")
    locked = tmp_path / "locked.safetensors"
    locked.write_bytes(corpus["good"].read_bytes())
    locked.chmod(0)
    for command, run in commands(locked, corpus["image"], tmp_path / "run").items():
        assert run() == 2, command
        assert "cannot be read" in capsys.readouterr().err
    with pytest.raises(ValueError, match="cannot be read"):
        SimpleConvNet(**NET_KW).load_params(locked)
