"""Trainer: epochs over a DataLoader, evaluation, metrics, checkpoints, progress.

The loss and the training accuracy stay on the device and are synchronised only every
``sync_every`` steps (for the progress bar and the non-finite check), before a checkpoint,
and at the end of an epoch — never every step.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

import numpy

from .. import distributed as _distributed
from ..backend import (
    Device,
    array_device,
    device_of,
    get_array_module,
    is_gpu_array,
    on_device,
    parse_device,
    to_device,
    to_numpy,
)
from ..checks import float_dtype_name
from ..data import DataLoader
from ..layers.grad_mode import no_grad
from ..models.network import Network, count_hits
from ..optim import Optimizer, Schedule
from ..serialization import write_atomically
from .checkpoint import save_checkpoint
from .run_lock import RunLock

Array = Any
HISTORY_FIELDS = ("epoch", "step", "loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss, test loss, weight or optimizer state; nothing
    non-finite was written."""


class DivergedError(NonFiniteLossError):
    """Training went astray while its numbers stayed finite: the loss far above where the run
    started, and accuracy at chance; nothing of it was written."""


DIVERGED_LOSS = 3.0  # times the run's starting loss ...
DIVERGED_ACCURACY = 1.5  # ... with accuracy at most this many times chance (1 / classes): a diverged run


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only, ...); the previous one is intact."""


STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")  # Ctrl-C; docker stop, Kubernetes, schedulers; a closed terminal


class TrainingInterrupted(Exception):  # noqa: N818 - like KeyboardInterrupt, not an error
    """Ctrl-C (SIGINT), SIGTERM or SIGHUP stopped training after a complete step; ``checkpoint``
    is where it was saved and ``signum`` which signal it was (the command exits 128 + signum)."""

    def __init__(self, message: str, checkpoint: Path | None, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.signum = int(signum)


class Trainer:
    """Train ``model`` with ``optimizer`` on ``train_loader``; evaluate on ``test_loader``.

    ``device`` (default: the train loader's) is where training runs: the loaders must deliver
    batches there and the model and the optimizer's state must already be there (the trainer
    checks; it moves nothing).  With ``out_dir`` the
    trainer writes ``last.safetensors`` (every ``save_every`` steps and every epoch),
    ``best.safetensors`` (best test accuracy) and ``metrics.csv``.  ``progress``: True for a
    tqdm bar, False for plain log lines, None to choose by whether ``stream`` is a terminal;
    ``quiet`` silences both.  ``run`` is stored in checkpoints (the CLI's settings).
    ``lr_schedule(step)`` (see :mod:`cnn_xp.optim.schedules`) sets the learning rate before each step.

    ``distributed=True`` (after :func:`cnn_xp.distributed.init`, under mpirun): rank 0's
    weights are broadcast to all ranks, gradients are averaged over ranks every step, metrics
    and evaluation are reduced over ranks, and only rank 0 prints and writes files. The
    loaders must be split with ``rank``/``world_size``; their ``batch_size`` is the global batch.
    """

    def __init__(
        self,
        model: Network,
        optimizer: Optimizer,
        train_loader: DataLoader,
        test_loader: DataLoader | None = None,
        *,
        device: str | Device | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        save_every: int = 0,
        sync_every: int = 20,
        progress: bool | None = None,
        quiet: bool = False,
        stream: TextIO | None = None,
        run: dict[str, Any] | None = None,
        lr_schedule: Schedule | None = None,
        distributed: bool = False,
    ) -> None:
        self.device = parse_device(device) if device is not None else train_loader.device
        for name, loader in (("train_loader", train_loader), ("test_loader", test_loader)):
            if loader is not None and loader.device != self.device:
                raise ValueError(
                    f"{name}: delivers batches on {loader.device} but the trainer's device is {self.device}; give both the same device"
                )
        if save_every < 0 or sync_every < 1:
            raise ValueError(
                f"save_every, sync_every: expected save_every >= 0 and sync_every >= 1, got {save_every}, {sync_every}"
            )
        self.distributed = bool(distributed)
        if self.distributed:
            if not _distributed.is_initialized():
                raise RuntimeError("distributed=True needs cnn_xp.distributed.init() first (and a launch with mpirun)")
            for name, loader in (("train_loader", train_loader), ("test_loader", test_loader)):
                if loader is not None and (loader.world_size, loader.rank) != (
                    _distributed.size(),
                    _distributed.rank(),
                ):
                    raise ValueError(
                        f"{name}: split for rank {loader.rank} of {loader.world_size}, but this is rank "
                        f"{_distributed.rank()} of {_distributed.size()}; pass rank= and world_size= to the DataLoader"
                    )
        for name, loader in (("train_loader", train_loader), ("test_loader", test_loader)):
            if loader is not None:
                _check_loader_labels(name, loader, model)  # before anything is moved or changed
        if out_dir is not None:
            model.spec()  # a network that files could not rebuild is refused now, not at the first checkpoint
        _check_on_device("model", model.state_dict().values(), self.device, "model.to_device(...)")
        _check_on_device(
            "optimizer", [a for slot in optimizer.state.values() for a in slot.values()], self.device,
            "optimizer.to_device(...)",
        )  # fmt: skip
        self.model = model
        if model.input_dim is None:  # recorded in checkpoints: evaluate/predict/export need it
            model.input_dim = tuple(int(d) for d in train_loader.x.shape[1:])
        self.optimizer = optimizer
        if self.distributed:
            _distributed.broadcast_params(self.model, root=0)  # every rank starts from rank 0's weights
        self.train_loader, self.test_loader = train_loader, test_loader
        primary = not self.distributed or _distributed.rank() == 0
        self.out_dir = Path(out_dir) if out_dir is not None and primary else None
        self.save_every, self.sync_every = save_every, sync_every
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet or not primary
        self.progress = (not self.quiet) and (self.stream.isatty() if progress is None else progress)
        self.run = dict(run or {})
        self.lr_schedule = lr_schedule
        # counters (restored by load_state)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.step_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_test_acc: float | None = None
        self._partial = {"loss_sum": 0.0, "hits": 0, "seen": 0, "seconds": 0.0}
        self.start_loss: float | None = (
            None  # the mean loss of the run's first steps: what divergence is judged against
        )
        self.last_checkpoint: Path | None = None
        self._interrupted = 0  # the stop signal this process received (0: none)
        self._progress_bar: Any = None  # one tqdm bar for the whole fit()
        self._clock = (time.perf_counter(), 0)  # (start of fit(), steps done then): for the time left
        self._stop = False  # agreed by all ranks at the last step

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "step": self.step,
            "step_in_epoch": self.step_in_epoch,
            "history": self.history,
            "best_test_acc": self.best_test_acc,
            "partial": self._partial,
            "data_seed": self.train_loader.seed,
            "start_loss": self.start_loss,
        }

    def load_state(self, state: dict[str, Any], rng: dict[str, Any] | None = None) -> None:
        """Restore counters, history and the network's random states saved by :meth:`save_checkpoint`
        (``rng``: :meth:`Network.extra_state` output). The counters must fit the train loader:
        ``step = epoch * len(train_loader) + step_in_epoch``; else ValueError and nothing changes."""
        epoch, step = int(state.get("epoch", 0)), int(state.get("step", 0))
        step_in_epoch = int(state.get("step_in_epoch", 0))
        per_epoch = len(self.train_loader)
        if step_in_epoch > per_epoch or step != epoch * per_epoch + step_in_epoch:  # == : an epoch done, not yet closed
            raise ValueError(
                f"resume: the checkpoint's counters (epoch {epoch}, step {step}, step in epoch {step_in_epoch}) do not "
                f"fit {per_epoch} steps per epoch of this train loader (another batch size or data set?)"
            )
        if rng:
            self.model.set_extra_state(rng)
        self.epoch, self.step, self.step_in_epoch = epoch, step, step_in_epoch
        self.history = list(state.get("history", []))
        self.start_loss = state.get("start_loss")
        self.best_test_acc = state.get("best_test_acc")
        self._partial = {**self._partial, **state.get("partial", {})}
        if "data_seed" in state and int(state["data_seed"]) != self.train_loader.seed:
            raise ValueError(
                f"resume: the checkpoint was trained with data seed {state['data_seed']}, the train loader has {self.train_loader.seed}"
            )

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Everything needed to resume exactly, written atomically.

        Raises CheckpointWriteError (an OSError) if the file cannot be written, and
        NonFiniteLossError if a weight or an optimizer state holds NaN or inf (a diverged run
        never replaces a good checkpoint); the previous file at ``path`` is then untouched."""
        if self.step_in_epoch:  # a checkpoint within an epoch: judged on the epoch's steps so far
            p = self._partial
            self._check_diverged(p["loss_sum"] / max(self.step_in_epoch, 1), p["hits"] / max(p["seen"], 1))
        bad = self._non_finite_state()
        if bad is not None:
            raise NonFiniteLossError(
                f"non-finite values in {bad} at epoch {self.epoch + (self.step_in_epoch > 0)}, step "
                f"{self.step_in_epoch} (global step {self.step}); training stopped and {self._last_good()}. "
                "Try a smaller --lr."
            )
        try:
            out = save_checkpoint(path, self.model, self.optimizer, trainer=self.state(), run=self.run)
        except OSError as exc:
            name = Path(path).name
            kept = f"the previous {name} is intact" if Path(path).exists() else f"no {name} was written"
            raise CheckpointWriteError(
                exc.errno, f"could not write checkpoint {path}: {exc.strerror or exc}; {kept}"
            ) from exc
        self.last_checkpoint = Path(out)
        return self.last_checkpoint

    def _non_finite_state(self) -> str | None:
        """The name of the first parameter, buffer or optimizer state holding NaN/inf, else None
        (one host read for all of them: this runs before checkpoints only)."""
        arrays = [(f"the model's {k}", v) for k, v in self.model.state_dict().items()]
        arrays += [
            (f"the optimizer's {n}[{k!r}]", a) for n, slot in self.optimizer.state.items() for k, a in slot.items()
        ]
        xp = get_array_module(arrays[0][1])
        finite = to_numpy(xp.stack([xp.all(xp.isfinite(a)) for _, a in arrays]))
        return next((name for (name, _), ok in zip(arrays, finite.tolist(), strict=True) if not ok), None)

    def _last_good(self) -> str:
        return (
            f"the last good checkpoint is {self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was written"
        )

    # ------------------------------------------------------------------ training

    def fit(self, epochs: int) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are complete (continuing from where a resumed run was).

        Raises NonFiniteLossError at the first NaN/inf loss (naming epoch and step; no
        checkpoint is written after it) and TrainingInterrupted after saving a checkpoint on
        Ctrl-C. Returns the history: one dict per epoch with ``HISTORY_FIELDS``."""
        if epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs}")
        # one run per output folder (a second one is refused, naming this process); a folder this
        # run created and left empty (it failed before writing anything) is removed again
        with RunLock(self.out_dir) if self.out_dir is not None else contextlib.nullcontext():
            self._run(epochs)
        return self.history

    def _run(self, epochs: int) -> None:
        restore = self._install_stop_handlers()
        self._clock = (time.perf_counter(), self._steps_done())  # for the whole run's time left
        self._progress_bar = self._bar(epochs)
        try:
            with on_device(self.device):  # every step's arrays and kernels on the trainer's GPU
                while self.epoch < epochs:
                    self._train_epoch(epochs)
                    if self._stop:
                        break
                    self._end_epoch(epochs)
        finally:
            restore()
            if self._progress_bar is not None:
                self._progress_bar.close()
                self._progress_bar = None
        if self._stop:
            path = self.save_checkpoint(self.out_dir / "last.safetensors") if self.out_dir is not None else None
            where = f"; checkpoint saved to {path}" if path else ""
            signum = self._interrupted or signal.SIGINT  # a distributed peer's signal stops this rank too
            by = "" if signum == signal.SIGINT else f" by {signal.Signals(signum).name}"
            raise TrainingInterrupted(
                f"interrupted{by} at epoch {self.epoch + 1}, step {self.step_in_epoch}{where}", path, signum
            )

    def _install_stop_handlers(self) -> Any:
        """First Ctrl-C, SIGTERM or SIGHUP: finish the current step, save, stop. A second one acts
        at once (Ctrl-C raises KeyboardInterrupt; the others get the handler that was there before)."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        signals = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
        previous = {s: signal.getsignal(s) for s in signals}

        def handler(signum: int, frame: Any) -> None:
            self._interrupted = self._interrupted or signum
            for s in signals:
                signal.signal(s, signal.default_int_handler if s == signal.SIGINT else previous[s])

        for s in signals:
            signal.signal(s, handler)
        return lambda: [signal.signal(s, h) for s, h in previous.items()]

    def _train_epoch(self, epochs: int) -> None:
        model, opt, loader = self.model, self.optimizer, self.train_loader
        model.train()
        bar = self._progress_bar
        if bar is not None:
            bar.set_description(f"epoch {self.epoch + 1}/{epochs}", refresh=False)
        losses: list[Array] = []  # per step: loss * local batch size, on the device
        counts: list[int] = []
        hits: list[Array] = []
        t0 = time.perf_counter()
        for xb, tb in loader.batches(self.epoch, self.step_in_epoch):
            if self.lr_schedule is not None:
                opt.lr = self.lr_schedule(self.step)
            n = int(xb.shape[0])
            loss, grads, hit = self._local_step(xb, tb)
            if self.distributed:
                # one collective: weighted mean gradient, plus whether any rank was interrupted;
                # all ranks stop after the same step (a Ctrl-C seen later waits for the next one)
                grads, (stops,) = _distributed.allreduce_step(grads, count=n, extra=(float(self._interrupted),))
                opt.update(model.params, grads)
                self._stop = stops > 0
            else:
                opt.update(model.params, grads)
                self._stop = bool(self._interrupted)  # a Ctrl-C during this step stops after it
            losses.append(loss * n)
            counts.append(n)
            hits.append(hit)
            self.step += 1
            self.step_in_epoch += 1
            due = self.save_every and self.step % self.save_every == 0
            if len(losses) >= self.sync_every or due or self._stop:
                self._sync(losses, counts, hits, bar, t0, epochs)
                losses, counts, hits = [], [], []
            if due and self.out_dir is not None:
                self._partial["seconds"] += time.perf_counter() - t0
                self.save_checkpoint(self.out_dir / "last.safetensors")
                t0 = time.perf_counter()
            if self._stop:
                break
        self._sync(losses, counts, hits, bar, t0, epochs)
        self._partial["seconds"] += time.perf_counter() - t0

    def _local_step(self, xb: Array, tb: Array) -> tuple[Array, dict[str, Array], Array]:
        """Loss, gradients and correct predictions of this process's part of the batch
        (zeros for an empty part: a rank may get no sample of a small final batch)."""
        model = self.model
        if xb.shape[0] == 0:
            xp = get_array_module(xb)
            zero = next(iter(model.params.values()))
            grads = {k: xp.zeros_like(v) for k, v in model.params.items()}
            return (
                xp.zeros((), dtype=zero.dtype, device=array_device(zero)),
                grads,
                xp.zeros((), dtype=xp.int64, device=array_device(zero)),
            )
        loss, scores = model.forward(xb, tb)
        grads = model.backward()
        return loss, grads, count_hits(scores, tb)

    def _sync(
        self, losses: list[Array], counts: list[int], hits: list[Array], bar: Any, t0: float, epochs: int
    ) -> None:
        """Bring the pending losses to the host (one transfer), sum them over ranks, check, report."""
        if not losses:
            return
        xp = get_array_module(losses[0])
        local = numpy.concatenate(
            [
                to_numpy(xp.stack(losses)).astype(numpy.float64),
                numpy.asarray(counts, dtype=numpy.float64),
                [float(to_numpy(xp.sum(xp.stack(hits))))],
            ]
        )
        total = _distributed.allreduce_sum(local) if self.distributed else local
        k = len(losses)
        per_step = total[:k] / numpy.maximum(total[k : 2 * k], 1.0)  # global mean loss of each step
        bad = [i for i, v in enumerate(per_step.tolist()) if not math.isfinite(v)]
        if bad:
            step_in_epoch = self.step_in_epoch - k + bad[0] + 1
            raise NonFiniteLossError(
                f"non-finite loss ({per_step[bad[0]]}) at epoch {self.epoch + 1}, step {step_in_epoch} "
                f"(global step {self.step - k + bad[0] + 1}); training stopped and {self._last_good()}. "
                "Try a smaller --lr."
            )
        if self.start_loss is None:
            self.start_loss = float(per_step[0])  # the first step: before any update of this run
        self._partial["loss_sum"] += float(per_step.sum())
        self._partial["hits"] += int(total[2 * k])
        self._partial["seen"] += int(total[k : 2 * k].sum())
        steps = self.step_in_epoch
        loss_now = float(per_step[-1])
        rate = self._partial["seen"] / max(self._partial["seconds"] + time.perf_counter() - t0, 1e-9)
        if bar is not None:
            bar.n = self._steps_done()
            bar.set_postfix(loss=f"{loss_now:.4f}", img_s=f"{rate:.0f}", refresh=False)
            bar.refresh()
        elif not self.quiet and steps % max(len(self.train_loader) // 10, self.sync_every) < k:
            print(
                f"epoch {self.epoch + 1} step {steps}/{len(self.train_loader)} loss {loss_now:.4f} {rate:.0f} img/s  "
                f"{self._run_progress(epochs)}",
                file=self.stream,
                flush=True,
            )

    def _steps_done(self) -> int:
        return self.epoch * len(self.train_loader) + self.step_in_epoch

    def _run_progress(self, epochs: int) -> str:
        """``run 37% (2:10 left)``: the whole run's progress and, from this process's pace so far
        (evaluation included), the time it still needs."""
        total = epochs * len(self.train_loader)
        done = self._steps_done()
        start, done_at_start = self._clock
        elapsed, done_here = time.perf_counter() - start, done - done_at_start
        left = "?" if done_here <= 0 else _clock_text(elapsed / done_here * (total - done))
        return f"run {done / max(total, 1):.0%} ({left} left)"

    def _bar(self, epochs: int) -> Any:
        """One tqdm bar for the whole run (all epochs' steps), so its time left is the run's."""
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=epochs * len(self.train_loader),
            initial=self._steps_done(),
            desc=f"epoch {self.epoch + 1}/{epochs}",
            unit="batch",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def _say(self, line: str) -> None:
        """A log line that does not break the progress bar."""
        if self._progress_bar is not None:
            self._progress_bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _end_epoch(self, epochs: int) -> None:
        p = self._partial
        test_loss, test_acc = self.evaluate(self.test_loader) if self.test_loader is not None else (None, None)
        if test_loss is not None and not math.isfinite(test_loss):
            raise NonFiniteLossError(
                f"non-finite test loss ({test_loss}) after epoch {self.epoch + 1}; training stopped and "
                f"{self._last_good()}. Try a smaller --lr."
            )
        self._check_diverged(p["loss_sum"] / max(self.step_in_epoch, 1), p["hits"] / max(p["seen"], 1))
        record = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "loss": p["loss_sum"] / max(self.step_in_epoch, 1),
            "train_acc": p["hits"] / max(p["seen"], 1),
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": p["seconds"],
            "images_per_s": p["seen"] / max(p["seconds"], 1e-9),
        }
        self.history.append(record)
        self.epoch += 1
        self.step_in_epoch = 0
        self._partial = {"loss_sum": 0.0, "hits": 0, "seen": 0, "seconds": 0.0}
        if not self.quiet:
            test = f"  test {test_acc:.2%}" if test_acc is not None else ""
            self._say(
                f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  train {record['train_acc']:.2%}{test}  "
                f"{record['seconds']:.1f} s  {record['images_per_s']:.0f} img/s  {self._run_progress(epochs)}"
            )
        if self.out_dir is not None:
            self.save_checkpoint(self.out_dir / "last.safetensors")
            if test_acc is not None and (self.best_test_acc is None or test_acc > self.best_test_acc):
                self.best_test_acc = test_acc
                self.save_checkpoint(self.out_dir / "best.safetensors")
                self.last_checkpoint = self.out_dir / "last.safetensors"
            try:
                self.write_metrics(self.out_dir / "metrics.csv")
            except OSError as exc:
                raise CheckpointWriteError(
                    exc.errno,
                    f"could not write {self.out_dir / 'metrics.csv'}: {exc.strerror or exc}; the checkpoints are intact",
                ) from exc
        elif test_acc is not None and (self.best_test_acc is None or test_acc > self.best_test_acc):
            self.best_test_acc = test_acc

    def _check_diverged(self, loss: float, accuracy: float) -> None:
        """Raise DivergedError if the run's loss is far above its start while its training accuracy
        is at chance (weights that exploded but stayed finite, as a far too large learning rate
        does); nothing is written then."""
        if self.start_loss is None or not self.step:
            return
        classes = self._classes()
        if loss > DIVERGED_LOSS * max(self.start_loss, 1e-3) and accuracy <= DIVERGED_ACCURACY / classes:
            raise DivergedError(
                f"the run diverged: training loss {loss:.4g} in epoch {self.epoch + 1}, against {self.start_loss:.4g} "
                f"at its start, and training accuracy {accuracy:.1%} (chance: {1 / classes:.1%}); training stopped and "
                f"{self._last_good()}. Try a smaller --lr."
            )

    def _classes(self) -> int:
        if not hasattr(self, "_num_classes"):
            x = self.train_loader.x[:1]
            with no_grad(), on_device(self.device):
                scores = self.model.predict(
                    to_device(numpy.asarray(x, dtype=float_dtype_name(self.model.dtype)), self.device)
                )
            self._num_classes = int(scores.shape[1])
        return self._num_classes

    def evaluate(self, loader: DataLoader) -> tuple[float, float]:
        """(mean loss, accuracy) over all of ``loader``'s samples, in inference mode."""
        tally = self.model.tally(loader.batches(0), with_loss=True)
        sums = numpy.asarray([0.0 if tally.loss is None else float(tally.loss), float(tally.hits), float(tally.n)])
        if self.distributed:
            sums = _distributed.allreduce_sum(sums)  # every rank evaluated its own slice
        return float(sums[0] / sums[2]), float(sums[1] / sums[2])

    def write_metrics(self, path: str | os.PathLike[str]) -> None:
        """The history as CSV, replaced atomically (a fresh temporary file, then a rename)."""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS)
        writer.writeheader()
        writer.writerows({k: h.get(k) for k in HISTORY_FIELDS} for h in self.history)
        write_atomically(path, buffer.getvalue().encode())


def _check_loader_labels(name: str, loader: DataLoader, model: Network) -> None:
    """Labels of ``loader`` (host arrays) against the model's number of classes, once, on the host:
    the training step then reads nothing back from the device to check them."""
    t = loader.t
    if t.ndim != 1 or t.shape[0] == 0:
        return  # one-hot targets: their shape is checked by the loss on every step, for free
    with on_device(model.device), no_grad():
        probe = model.predict(to_device(numpy.asarray(loader.x[:1], dtype=float_dtype_name(model.dtype)), model.device))
    classes = int(probe.shape[1])
    if t.dtype.kind not in "iu" or int(t.min()) < 0 or int(t.max()) >= classes:
        raise ValueError(
            f"{name}: labels must be integers in [0, {classes}) for this model's {classes} classes, "
            f"got {t.dtype} labels in [{t.min()}, {t.max()}]"
        )


def _check_on_device(name: str, arrays: Any, device: Any, fix: str) -> None:
    """Raise ValueError unless the arrays of ``arrays`` live on ``device`` (one array tells:
    layers and optimizers keep theirs together)."""
    for a in arrays:
        if isinstance(device, Device):
            ok = (is_gpu_array(a) or isinstance(a, numpy.ndarray)) and device_of(a) == device
        else:  # another array library's device (torch.device, ...): its own arrays there
            ok = not isinstance(a, numpy.ndarray) and not is_gpu_array(a) and array_device(a) == device
        if not ok:
            lib = type(a).__module__.split(".")[0]
            where = device_of(a) if isinstance(a, numpy.ndarray) or is_gpu_array(a) else array_device(a)
            raise ValueError(
                f"{name}: holds {lib} arrays on {where} but the loaders deliver batches on {device if isinstance(device, Device) else repr(device)}; move it first "
                f"with {fix}"
            )
        return


def _clock_text(seconds: float) -> str:
    """``1:02:03`` / ``2:03``."""
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"
