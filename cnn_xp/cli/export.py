"""``python -m cnn_xp.export CHECKPOINT OUT.onnx``: a checkpoint as an ONNX model, checked in ONNX Runtime."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy

from ..backend import to_numpy
from ..export import OPSET, OnnxUnavailableError, export_onnx
from ..layers import no_grad
from .common import OneLineParser, UsageError, check_output_file, checkpoint_arg, run_command

PROG = "python -m cnn_xp.export"
CHECK_BATCH = 16


def max_difference_in_onnxruntime(path: Path, net, softmax: bool) -> tuple[str, float] | None:
    """Run ``path`` in ONNX Runtime (CPU) on a random batch; return (its version, the largest
    absolute difference to ``net.predict``), or None when ONNX Runtime is not installed."""
    try:
        import onnxruntime
    except ImportError:
        return None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = [int(d) for d in session.get_inputs()[0].shape[1:]]
    x = numpy.random.default_rng(0).random((CHECK_BATCH, *shape), dtype=numpy.float32)
    (got,) = session.run(None, {"input": x})
    with no_grad():
        scores = net.predict(x, train_flg=False)
        if softmax:
            e = numpy.exp(scores - scores.max(axis=1, keepdims=True))
            scores = e / e.sum(axis=1, keepdims=True)
    return onnxruntime.__version__, float(numpy.max(numpy.abs(got - to_numpy(scores))))


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog,
        description="Export a checkpoint (last/best.safetensors) as an ONNX model (float32, dynamic batch "
        f"dimension N, opset {OPSET}) and, when ONNX Runtime is installed, check it against cnn_xp's predict.",
    )
    p.add_argument("checkpoint", type=Path, metavar="CHECKPOINT")
    p.add_argument("out", type=Path, metavar="OUT.onnx")
    p.add_argument("--softmax", action="store_true", help="end the model with a Softmax (output 'probabilities')")
    p.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset to declare (>= 13; default {OPSET})")
    args = p.parse_args(argv)
    check_output_file("OUT.onnx", args.out, inputs=[args.checkpoint])
    ckpt = checkpoint_arg(args.checkpoint)
    try:
        net = ckpt.build_model(device="cpu", dtype="float32").eval()
        classes = int(net.predict(numpy.zeros((1, *net.input_dim), numpy.float32)).shape[1]) if net.input_dim else 0
        export_onnx(
            net, args.out, softmax=args.softmax, opset=args.opset, preprocess=ckpt.preprocess,
            classes=ckpt.class_names(classes),
        )  # fmt: skip
    except OnnxUnavailableError as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:
        print(f"{prog}: error: could not write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    pre = ckpt.preprocess
    recipe = f"pixels * {pre.scale:.6g}" + (", less the mean, over the std, per channel" if pre.mean else "")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, opset {args.opset}, input 'input' (N, ...), "
          f"output '{'probabilities' if args.softmax else 'scores'}'); its input is {recipe}, as its metadata "
          f"'cnn_xp.preprocess' records: {json.dumps(pre.to_json())}")  # fmt: skip
    checked = max_difference_in_onnxruntime(args.out, net, args.softmax)
    if checked is None:
        print(f"not checked: onnxruntime is not installed ({'pip install ' + repr('cnn_xp[onnx]')})")
    else:
        version, diff = checked
        print(
            f"checked in ONNX Runtime {version}: max |difference| to cnn_xp's predict on {CHECK_BATCH} inputs: {diff:.2e}"
        )
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
