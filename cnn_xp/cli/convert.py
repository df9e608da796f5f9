"""``python -m cnn_xp.convert BOOK.pkl OUT.safetensors``: the book's trained weights for cnn_xp."""

from __future__ import annotations

import sys
from pathlib import Path

from ..checks import FLOAT_DTYPES
from .common import OneLineParser, UsageError, check_output_file, run_command

PROG = "python -m cnn_xp.convert"


def _main(argv: list[str] | None, prog: str) -> int:
    p = OneLineParser(
        prog=prog,
        description='Convert a weight pickle of "Deep Learning from Scratch" (ch07/params.pkl, '
        "ch08/deep_convnet_params.pkl, or one its scripts saved) to a cnn_xp parameters file. The pickle is read by "
        "an unpickler that accepts only a dict of NumPy arrays (nothing in it is run); the network (SimpleConvNet or "
        "DeepConvNet) and its input size are found from the arrays' shapes.",
    )
    p.add_argument("pickle", type=Path, metavar="BOOK.pkl")
    p.add_argument("out", type=Path, metavar="OUT.safetensors")
    p.add_argument("--dtype", choices=FLOAT_DTYPES, default=None, help="store as this dtype (default: the pickle's)")
    args = p.parse_args(argv)
    if not args.pickle.is_file():
        raise UsageError(f"BOOK.pkl: no such file: {args.pickle}")
    check_output_file("OUT.safetensors", args.out, inputs=[args.pickle])
    from ..book.weights import book_network, read_book_pickle

    try:
        net = book_network(read_book_pickle(args.pickle), dtype=args.dtype)
    except ValueError as exc:
        raise UsageError(f"BOOK.pkl: {exc}") from None
    net.save_params(args.out)
    kwargs = net.config["kwargs"]
    print(
        f"{args.pickle}: {len(net.params)} arrays of the book's {type(net).__name__}(input_dim={tuple(kwargs['input_dim'])}, "
        f"hidden_size={kwargs['hidden_size']}, output_size={kwargs['output_size']}) in {net.dtype}"
    )
    if type(net).__name__ == "DeepConvNet":
        print(
            "the book's test-time dropout scaling (x0.5 twice) is folded into W8 and b8: predict gives the book's scores"
        )
    print(f"written to {args.out}  (python -m cnn_xp.evaluate {args.out})")
    return 0


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    return run_command(prog, _main, argv)


if __name__ == "__main__":
    sys.exit(main())
