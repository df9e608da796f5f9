"""The start of a distributed run: every rank prepares, then all agree to start, or all stop.

A rank that fails while preparing (a bad setting, a checkpoint or dataset missing on its node)
must not leave the others waiting in the first collective: :func:`start_together` gathers every
rank's status before any collective of training, and stops every rank (:class:`JobStopped`) when
one failed or when their stored plans -- every setting that shapes the run's collectives
included -- differ; rank 0 says which rank and why.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from .. import distributed


class JobStopped(Exception):  # noqa: N818 - an outcome, already reported
    """The ranks of a distributed run agreed not to start; ``code`` is the exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def start_together(status: dict[str, Any], prog: str) -> None:
    """Every rank brings its ``status`` (``ok``, and ``run`` or ``code``/``message``); all go on only
    if all are ready with the same settings. Otherwise every rank stops (JobStopped) and rank 0
    says which rank failed and why, or which settings differ."""
    statuses = distributed.agree(status)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if distributed.rank() == 0 else (lambda line: None)
    failed = [(r, s) for r, s in enumerate(statuses) if not s["ok"]]
    if failed:
        for r, s in failed:
            say(f"{prog}: error on rank {r}: {s['message']}")
        raise JobStopped(max(int(s["code"]) for _, s in failed))
    first = statuses[0]["run"]
    differ = [
        f"rank {r} has {key} {s['run'].get(key)!r} where rank 0 has {first.get(key)!r}"
        for r, s in enumerate(statuses[1:], start=1)
        for key in sorted(set(first) | set(s["run"]))
        if s["run"].get(key) != first.get(key)
    ]
    if differ:
        say(f"{prog}: error: the ranks were started with different settings: {'; '.join(differ)}")
        raise JobStopped(2)


def prepare_together(prepare: Callable[[Callable[[dict[str, Any]], None]], Any], prog: str, usage_error: type) -> Any:
    """``prepare(gate)`` on every rank of a distributed run, the ranks agreeing at ``gate(plan)``
    (before the first collective); a failure before the gate stops all ranks through
    :func:`start_together` (exit status 2 for ``usage_error``, else 1), one after it ends the job
    with MPI_Abort.  Returns what ``prepare`` returns; raises JobStopped when the ranks stop."""
    passed = False

    def gate(plan: dict[str, Any]) -> None:
        nonlocal passed
        passed = True
        start_together({"ok": True, "run": plan}, prog)

    try:
        return prepare(gate)
    except JobStopped:
        raise
    except Exception as exc:
        if passed:  # failed after all ranks started: end them all
            if distributed.size() > 1:
                distributed.abort(
                    f"{prog}: error on rank {distributed.rank()}: {exc}", code=2 if isinstance(exc, usage_error) else 1
                )
            raise
        code, text = (2, str(exc)) if isinstance(exc, usage_error) else (1, f"{type(exc).__name__}: {exc}")
        start_together({"ok": False, "code": code, "message": text}, prog)
        raise AssertionError("unreachable: start_together stops every rank on a failure") from exc
