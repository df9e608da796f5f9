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


def rank_1_differs(argv: list[str]) -> int:
    """``rank_1_differs EXTRA... -- ARGS...``: every rank runs ``cnn_xp train ARGS``, rank 1 with
    EXTRA appended (another --seed, a dataset only it lacks, a missing --resume file, ...)."""
    split = argv.index("--")
    extra, args = argv[:split], argv[split + 1 :]
    distributed.init()
    return cli.main(args + extra if distributed.rank() == 1 else args)


def stall_rank_1(argv: list[str]) -> int:
    """Train, but rank 1 stops itself (SIGSTOP) at its third step, as a hung file system would."""
    import os
    import signal

    distributed.init()
    if distributed.rank() == 1:
        original = Trainer._local_step
        calls = []

        def stalled(self, xb, tb):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGSTOP)
            return original(self, xb, tb)

        Trainer._local_step = stalled  # type: ignore[method-assign]
    return cli.main(argv)


if __name__ == "__main__":
    job = {"fail_on_rank_1": fail_on_rank_1, "rank_1_differs": rank_1_differs, "stall_rank_1": stall_rank_1}
    if sys.argv[1] in job:
        sys.exit(job[sys.argv[1]](sys.argv[2:]))
    sys.exit(fail_on_rank_1(sys.argv[1:]))
