"""Small MPI jobs launched by test_launch.py with mpirun."""

from __future__ import annotations

import sys

from cnn_xp import distributed
from cnn_xp.cli import train as cli
from cnn_xp.train.trainer import Trainer


def fail_on_rank_1(argv: list[str]) -> int:
    """Train, but rank 1 raises at its third step: the job must end, not hang."""
    distributed.init()
    if distributed.rank() == 1:
        original = Trainer._local_step
        calls = []

        def broken(self, xb, tb):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("simulated failure on rank 1")
            return original(self, xb, tb)

        Trainer._local_step = broken  # type: ignore[method-assign]
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(fail_on_rank_1(sys.argv[1:]))
