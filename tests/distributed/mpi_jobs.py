"""Small MPI jobs launched by the distributed tests with mpirun."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from cnn_xp import distributed
from cnn_xp.cli import train as cli
from cnn_xp.train.trainer import Trainer


def train_with_rank_1_at_step_3(argv: list[str], action: Callable[[], None]) -> int:
    """Train; rank 1 runs ``action`` at its third step."""
    distributed.init()
    if distributed.rank() == 1:
        original = Trainer._local_step
        calls = []

        def step(self, xb, tb):
            calls.append(1)
            if len(calls) == 3:
                action()
            return original(self, xb, tb)

        Trainer._local_step = step  # type: ignore[method-assign]
    return cli.main(argv)


def fail_on_rank_1(argv: list[str]) -> int:
    """Rank 1 raises at its third step: the job must end, not hang."""

    def fail() -> None:
        raise RuntimeError("simulated failure on rank 1")

    return train_with_rank_1_at_step_3(argv, fail)


def stall_rank_1(argv: list[str]) -> int:
    """Rank 1 stops itself (SIGSTOP) at its third step, as a hung file system would."""
    return train_with_rank_1_at_step_3(argv, lambda: os.kill(os.getpid(), signal.SIGSTOP))


def rank_1_differs(argv: list[str]) -> int:
    """``rank_1_differs EXTRA... -- ARGS...``: every rank runs ``cnn_xp train ARGS``, rank 1 with
    EXTRA appended (another --seed, a dataset only it lacks, a missing --resume file, ...)."""
    split = argv.index("--")
    extra, args = argv[:split], argv[split + 1 :]
    distributed.init()
    return cli.main(args + extra if distributed.rank() == 1 else args)


if __name__ == "__main__":
    jobs = {"fail_on_rank_1": fail_on_rank_1, "rank_1_differs": rank_1_differs, "stall_rank_1": stall_rank_1}
    if sys.argv[1] in jobs:
        sys.exit(jobs[sys.argv[1]](sys.argv[2:]))
    sys.exit(fail_on_rank_1(sys.argv[1:]))
