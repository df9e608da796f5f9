"""ONNX export checked by ONNX Runtime (CPU): every layer type, both book networks, custom
networks, a trained checkpoint through the command line, and what goes wrong."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import cnn_xp
from cnn_xp import (
    Affine,
    AvgPooling,
    BatchNormalization,
    Convolution,
    DeepConvNet,
    Dropout,
    Layer,
    Network,
    Pooling,
    Relu,
    Sigmoid,
    SimpleConvNet,
)
from cnn_xp.cli.export import main as export_main
from cnn_xp.datasets import load_mnist
from cnn_xp.export import OPSET, export_onnx, register_onnx_converter, to_onnx
from cnn_xp.train import Trainer, save_checkpoint

onnx = pytest.importorskip("onnx", reason="ONNX export needs onnx: pip install 'cnn_xp[onnx]'")
ort = pytest.importorskip(
    "onnxruntime", reason="the exported models are checked in onnxruntime: pip install 'cnn_xp[onnx]'"
)

TOL = 1e-4  # float32, MNIST-scale inputs in [0, 1); measured differences are below 1e-5


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def max_diff_to_predict(net, path, shape, batches=(1, 7), seed=0):
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batches:  # one file, several batch sizes: the batch dimension is dynamic
        x = rng.random((n, *shape), dtype=np.float32)
        got = run_onnx(path, x)
        expected = np.asarray(net.predict(x, train_flg=False))
        assert got.shape == expected.shape
        worst = max(worst, float(np.max(np.abs(got - expected))))
    return worst


def rand(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def mlp(d_in, hidden, activation, seed=0):
    """Affine (d_in -> hidden), the named ``activation`` layer, Affine (hidden -> 2)."""
    rng = np.random.default_rng(seed)
    fc, out = Affine(rand(rng, d_in, hidden), rand(rng, hidden)), Affine(rand(rng, hidden, 2), rand(rng, 2))
    return Network([("fc", fc), activation, ("out", out)])


def every_layer_net(seed=0):
    """conv (stride 2, pad) + BatchNorm 4-D + Sigmoid + avg pool (pad) + max pool (pad) + Dropout +
    affine + BatchNorm 2-D + ReLU + affine, with non-trivial BatchNorm statistics."""
    rng = np.random.default_rng(seed)

    def bn(c):
        return BatchNormalization(
            np.abs(rand(rng, c)) + 0.5, rand(rng, c), running_mean=rand(rng, c), running_var=np.abs(rand(rng, c)) + 0.5
        )

    return Network(
        [
            ("conv", Convolution(rand(rng, 4, 3, 3, 3), rand(rng, 4), stride=2, pad=1)),  # 9x9 -> 5x5
            ("bn", bn(4)),
            ("sigmoid", Sigmoid()),
            ("avg", AvgPooling(3, 3, stride=2, pad=1)),  # -> 3x3
            ("max", Pooling(2, 2, stride=1, pad=1)),  # -> 4x4
            ("drop", Dropout(0.5, seed=0)),
            ("fc1", Affine(rand(rng, 4 * 4 * 4, 6), rand(rng, 6))),
            ("bn1d", bn(6)),
            ("relu", Relu()),
            ("fc2", Affine(rand(rng, 6, 3), rand(rng, 3))),
        ]
    )


@pytest.mark.parametrize(
    ("make", "shape"),
    [
        (lambda: SimpleConvNet(seed=0), (1, 28, 28)),
        (
            lambda: SimpleConvNet(
                input_dim=(3, 12, 10), conv_param={"filter_num": 5, "filter_size": 3, "pad": 1, "stride": 1}, seed=1
            ),
            (3, 12, 10),
        ),
        (lambda: DeepConvNet(seed=0), (1, 28, 28)),
    ],
    ids=["simple", "simple-3ch-pad", "deep"],
)
def test_book_networks_run_in_onnxruntime_like_predict(tmp_path, make, shape):
    net = make()
    path = export_onnx(net, tmp_path / "m.onnx")  # the input shape comes from the network
    assert max_diff_to_predict(net, path, shape) <= TOL


def test_every_layer_type_in_a_custom_network(tmp_path):
    net = every_layer_net()
    path = export_onnx(net, tmp_path / "m.onnx", input_shape=(3, 9, 9))
    assert max_diff_to_predict(net, path, (3, 9, 9)) <= TOL
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    # Dropout is no node (the identity at inference); each Affine flattens first
    assert ops == [
        *("Conv", "BatchNormalization", "Sigmoid", "AveragePool", "MaxPool"),
        *("Flatten", "Gemm", "BatchNormalization", "Relu", "Flatten", "Gemm", "Identity"),
    ]


def test_a_network_that_starts_with_an_affine_layer_needs_no_input_shape(tmp_path):
    net = mlp(12, 5, ("act", Sigmoid()))
    path = export_onnx(net, tmp_path / "mlp.onnx")
    assert max_diff_to_predict(net, path, (12,)) <= TOL


def test_softmax_option_outputs_probabilities(tmp_path):
    net = SimpleConvNet(seed=0)
    path = export_onnx(net, tmp_path / "p.onnx", softmax=True)
    x = np.random.default_rng(1).random((5, 1, 28, 28), dtype=np.float32)
    got = run_onnx(path, x)
    np.testing.assert_allclose(got.sum(axis=1), 1, rtol=1e-5)
    assert np.max(np.abs(got - softmax(np.asarray(net.predict(x, train_flg=False))))) <= TOL
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["probabilities"]


def test_graph_declares_opset_dynamic_batch_and_float32(tmp_path):
    model = to_onnx(SimpleConvNet(seed=0))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] and OPSET == 17
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    (out,) = model.graph.output
    assert out.name == "scores" and out.type.tensor_type.shape.dim[1].dim_value == 10
    assert all(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)
    onnx.checker.check_model(model, full_check=True)


def test_float64_networks_export_as_float32(tmp_path):
    net = SimpleConvNet(seed=0, dtype="float64")
    path = export_onnx(net, tmp_path / "m.onnx")
    assert max_diff_to_predict(net, path, (1, 28, 28)) <= TOL


def test_trained_checkpoint_through_the_command_line(tmp_path, capsys):
    """A briefly trained SimpleConvNet, saved as a checkpoint, exported by ``python -m cnn_xp.export``,
    gives ONNX Runtime the same scores and the same predicted classes on real test images."""
    (x, t), (xt, tt) = load_mnist(normalize=False)
    from cnn_xp.data import DataLoader

    net = SimpleConvNet(weight_init_std="he", seed=0)
    opt = cnn_xp.Adam(lr=0.002)
    train = DataLoader(x[:3000], t[:3000], 100, shuffle=True, seed=0, scale=1 / 255)
    Trainer(net, opt, train, None, quiet=True).fit(1)
    ckpt = save_checkpoint(tmp_path / "last.safetensors", net, opt)
    assert export_main([str(ckpt), str(tmp_path / "model.onnx")]) == 0
    out = capsys.readouterr().out
    assert f"opset {OPSET}" in out and "checked in ONNX Runtime" in out
    images = (xt[:500] / 255).astype(np.float32)
    got = run_onnx(tmp_path / "model.onnx", images)
    expected = np.asarray(net.eval().predict(images))
    assert np.max(np.abs(got - expected)) <= TOL
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    assert np.mean(expected.argmax(axis=1) == tt[:500]) > 0.85  # trained: the comparison is not of noise


class Swish(Layer):
    def forward(self, x):
        return x / (1 + cnn_xp.get_array_module(x).exp(-x))


def test_unknown_layer_is_refused_before_writing_and_can_be_registered(tmp_path):
    net = mlp(4, 3, ("swish", Swish()))
    target = tmp_path / "m.onnx"
    with pytest.raises(
        ValueError, match=r"no ONNX conversion for layer\(s\) \['swish \(Swish\)'\].*register_onnx_converter"
    ):
        export_onnx(net, target)
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left

    @register_onnx_converter(Swish)
    def _(layer, graph, x, name):
        return graph.node("Mul", [x, graph.node("Sigmoid", [x], f"{name}_sigmoid")], name)

    assert max_diff_to_predict(net, export_onnx(net, target), (4,)) <= TOL


def test_bad_arguments(tmp_path):
    net = every_layer_net()
    with pytest.raises(ValueError, match=r"input_shape: cannot tell"):
        export_onnx(net, tmp_path / "m.onnx")
    with pytest.raises(
        ValueError, match=r"input_shape: \(3, 8, 8\) does not fit this network: x: expected 64 features"
    ):
        export_onnx(net, tmp_path / "m.onnx", input_shape=(3, 8, 8))
    with pytest.raises(ValueError, match=r"input_shape: expected positive ints"):
        export_onnx(net, tmp_path / "m.onnx", input_shape=(3, 0, 9))
    with pytest.raises(ValueError, match=r"opset: expected an int >= 13"):
        export_onnx(SimpleConvNet(), tmp_path / "m.onnx", opset=9)
    with pytest.raises(TypeError, match=r"net: expected a cnn_xp Network"):
        export_onnx(Relu(), tmp_path / "m.onnx")
    with pytest.raises(TypeError, match=r"layer_type: expected a class"):
        register_onnx_converter("Relu")
    assert list(tmp_path.iterdir()) == []


def test_command_line_errors_are_one_line_exit_2(tmp_path, capsys):
    ckpt = tmp_path / "p.safetensors"
    SimpleConvNet(seed=0).save_params(ckpt)
    cases = [
        ([str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx")], "CHECKPOINT: no such file"),
        ([str(ckpt), str(tmp_path / "no" / "m.onnx")], "OUT.onnx: folder"),
        ([str(ckpt), str(tmp_path)], "is a folder, not a file"),
        ([str(ckpt), str(ckpt)], "is the input"),  # the checkpoint would be replaced by the ONNX file
        ([str(ckpt), "/dev/null"], "not a regular file"),
        ([str(ckpt), str(tmp_path / "m.onnx"), "--opset", "5"], "opset: expected an int >= 13"),
        ([str(ckpt), str(tmp_path / "m.onnx"), "--soft"], "unrecognized arguments: --soft"),  # no abbreviations
    ]
    for argv, words in cases:
        assert export_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err and err.startswith("python -m cnn_xp.export: error:"), err
    assert not (tmp_path / "m.onnx").exists()


def test_command_without_onnx_says_how_to_install(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "p.safetensors"
    SimpleConvNet(seed=0).save_params(ckpt)
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert export_main([str(ckpt), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "python -m cnn_xp.export: error: ONNX export needs the onnx package: pip install 'cnn_xp[onnx]'"
    assert not (tmp_path / "m.onnx").exists()


def test_command_without_onnxruntime_exports_and_says_it_did_not_check(tmp_path, capsys, monkeypatch):
    ckpt = tmp_path / "p.safetensors"
    SimpleConvNet(seed=0).save_params(ckpt)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert export_main([str(ckpt), str(tmp_path / "m.onnx"), "--softmax"]) == 0
    out = capsys.readouterr().out
    assert "output 'probabilities'" in out and "not checked: onnxruntime is not installed" in out
    monkeypatch.undo()
    x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    net = SimpleConvNet(seed=0)
    assert (
        np.max(np.abs(run_onnx(tmp_path / "m.onnx", x) - softmax(np.asarray(net.predict(x, train_flg=False))))) <= TOL
    )
