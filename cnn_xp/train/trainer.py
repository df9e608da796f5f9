"""Trainer: epochs over a DataLoader, evaluation, metrics, checkpoints, progress.

The loss and the training accuracy stay on the device and are synchronised only every
``sync_every`` steps (for the progress bar and the non-finite check), before a checkpoint,
and at the end of an epoch — never every step.
"""

from __future__ import annotations

import csv
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from ..backend import Device, get_array_module, parse_device, to_numpy
from ..data import DataLoader
from ..layers import Dropout
from ..models import Network
from ..optim import Optimizer, Schedule
from .checkpoint import save_checkpoint

Array = Any
HISTORY_FIELDS = ("epoch", "step", "loss", "train_acc", "test_loss", "test_acc", "seconds", "images_per_s")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, read-only, ...); the previous one is intact."""


class TrainingInterrupted(Exception):  # noqa: N818 - like KeyboardInterrupt, not an error
    """Ctrl-C (SIGINT) stopped training after a complete step; ``checkpoint`` is where it was saved."""

    def __init__(self, message: str, checkpoint: Path | None) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint


class Trainer:
    """Train ``model`` with ``optimizer`` on ``train_loader``; evaluate on ``test_loader``.

    ``device`` (default: the train loader's) is where the model and optimizer state are moved
    once, at construction; the loaders must deliver batches there.  With ``out_dir`` the
    trainer writes ``last.safetensors`` (every ``save_every`` steps and every epoch),
    ``best.safetensors`` (best test accuracy) and ``metrics.csv``.  ``progress``: True for a
    tqdm bar, False for plain log lines, None to choose by whether ``stream`` is a terminal;
    ``quiet`` silences both.  ``run`` is stored in checkpoints (the CLI's settings).
    ``lr_schedule(step)`` (see :mod:`cnn_xp.optim.schedules`) sets the learning rate before each step.
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
        self.model = model.to_device(self.device)
        self.optimizer = optimizer.to_device(self.device)
        self.train_loader, self.test_loader = train_loader, test_loader
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.save_every, self.sync_every = save_every, sync_every
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.progress = (not quiet) and (self.stream.isatty() if progress is None else progress)
        self.run = dict(run or {})
        self.lr_schedule = lr_schedule
        # counters (restored by load_state)
        self.epoch = 0  # completed epochs
        self.step = 0  # optimizer steps taken
        self.step_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best_test_acc: float | None = None
        self._partial = {"loss_sum": 0.0, "hits": 0, "seen": 0, "seconds": 0.0}
        self.last_checkpoint: Path | None = None
        self._interrupted = False

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
        }

    def load_state(self, state: dict[str, Any], rng: dict[str, Any] | None = None) -> None:
        """Restore counters, history and RNG states saved by :meth:`save_checkpoint`."""
        self.epoch, self.step = int(state.get("epoch", 0)), int(state.get("step", 0))
        self.step_in_epoch = int(state.get("step_in_epoch", 0))
        self.history = list(state.get("history", []))
        self.best_test_acc = state.get("best_test_acc")
        self._partial = {**self._partial, **state.get("partial", {})}
        if "data_seed" in state and int(state["data_seed"]) != self.train_loader.seed:
            raise ValueError(
                f"resume: the checkpoint was trained with data seed {state['data_seed']}, the train loader has {self.train_loader.seed}"
            )
        for name, layer_state in (rng or {}).items():
            layer = self.model.layers.get(name)
            if isinstance(layer, Dropout):
                layer.rng.set_state(layer_state)

    def _rng_states(self) -> dict[str, Any]:
        return {name: layer.rng.get_state() for name, layer in self.model.layers.items() if isinstance(layer, Dropout)}

    def save_checkpoint(self, path: str | os.PathLike[str]) -> Path:
        """Everything needed to resume exactly, written atomically.

        Raises CheckpointWriteError (an OSError) if the file cannot be written; the previous
        file at ``path`` is then untouched."""
        try:
            out = save_checkpoint(
                path, self.model, self.optimizer, trainer=self.state(), rng=self._rng_states(), run=self.run
            )
        except OSError as exc:
            name = Path(path).name
            kept = f"the previous {name} is intact" if Path(path).exists() else f"no {name} was written"
            raise CheckpointWriteError(
                exc.errno, f"could not write checkpoint {path}: {exc.strerror or exc}; {kept}"
            ) from exc
        self.last_checkpoint = Path(out)
        return self.last_checkpoint

    # ------------------------------------------------------------------ training

    def fit(self, epochs: int) -> list[dict[str, Any]]:
        """Train until ``epochs`` epochs are complete (continuing from where a resumed run was).

        Raises NonFiniteLossError at the first NaN/inf loss (naming epoch and step; no
        checkpoint is written after it) and TrainingInterrupted after saving a checkpoint on
        Ctrl-C. Returns the history: one dict per epoch with ``HISTORY_FIELDS``."""
        if epochs < 1:
            raise ValueError(f"epochs: expected an int >= 1, got {epochs}")
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.out_dir.glob(".*.safetensors.*.tmp"):
                stale.unlink(missing_ok=True)  # left by a process killed mid-write (SIGKILL)
        restore = self._install_sigint()
        try:
            while self.epoch < epochs:
                self._train_epoch(epochs)
                if self._interrupted:
                    break
                self._end_epoch(epochs)
        finally:
            restore()
        if self._interrupted:
            path = self.save_checkpoint(self.out_dir / "last.safetensors") if self.out_dir is not None else None
            where = f"; checkpoint saved to {path}" if path else ""
            raise TrainingInterrupted(f"interrupted at epoch {self.epoch + 1}, step {self.step_in_epoch}{where}", path)
        return self.history

    def _install_sigint(self) -> Any:
        """First Ctrl-C: finish the current step, save, stop. A second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum: int, frame: Any) -> None:
            self._interrupted = True
            signal.signal(signal.SIGINT, signal.default_int_handler)

        signal.signal(signal.SIGINT, handler)
        return lambda: signal.signal(signal.SIGINT, previous)

    def _train_epoch(self, epochs: int) -> None:
        model, opt, loader = self.model, self.optimizer, self.train_loader
        model.train()
        bar = self._bar(epochs)
        losses: list[Array] = []
        hits: list[Array] = []
        t0 = time.perf_counter()
        for xb, tb in loader.batches(self.epoch, self.step_in_epoch):
            if self.lr_schedule is not None:
                opt.lr = self.lr_schedule(self.step)
            loss = model.loss(xb, tb)
            opt.update(model.params, model.backward())
            losses.append(loss)
            hits.append(_hits(model.last_layer.y, tb))  # type: ignore[attr-defined]  # the softmax of this step
            self.step += 1
            self.step_in_epoch += 1
            self._partial["seen"] += int(xb.shape[0])
            due = self.save_every and self.step % self.save_every == 0
            if len(losses) >= self.sync_every or due or self._interrupted:
                self._sync(losses, hits, bar, t0)
                losses, hits = [], []
            if due and self.out_dir is not None:
                self._partial["seconds"] += time.perf_counter() - t0
                self.save_checkpoint(self.out_dir / "last.safetensors")
                t0 = time.perf_counter()
            if self._interrupted:
                break
        self._sync(losses, hits, bar, t0)
        self._partial["seconds"] += time.perf_counter() - t0
        if bar is not None:
            bar.close()

    def _sync(self, losses: list[Array], hits: list[Array], bar: Any, t0: float) -> None:
        """Bring the pending losses to the host (one transfer), check them, report."""
        if not losses:
            return
        xp = get_array_module(losses[0])
        values = to_numpy(xp.stack(losses))
        bad = [i for i, v in enumerate(values.tolist()) if not math.isfinite(v)]
        if bad:
            step_in_epoch = self.step_in_epoch - len(losses) + bad[0] + 1
            last = (
                f"the last good checkpoint is {self.last_checkpoint}"
                if self.last_checkpoint
                else "no checkpoint was written"
            )
            raise NonFiniteLossError(
                f"non-finite loss ({values[bad[0]]}) at epoch {self.epoch + 1}, step {step_in_epoch} "
                f"(global step {self.step - len(losses) + bad[0] + 1}); training stopped and {last}. "
                "Try a smaller --lr."
            )
        self._partial["loss_sum"] += float(values.astype("float64").sum())
        self._partial["hits"] += int(to_numpy(xp.sum(xp.stack(hits))))
        steps = self.step_in_epoch
        loss_now = float(values[-1])
        rate = self._partial["seen"] / max(self._partial["seconds"] + time.perf_counter() - t0, 1e-9)
        if bar is not None:
            bar.n = steps
            bar.set_postfix(loss=f"{loss_now:.4f}", img_s=f"{rate:.0f}", refresh=False)
            bar.refresh()
        elif not self.quiet and steps % max(len(self.train_loader) // 10, self.sync_every) < len(losses):
            print(
                f"epoch {self.epoch + 1} step {steps}/{len(self.train_loader)} loss {loss_now:.4f} {rate:.0f} img/s",
                file=self.stream,
                flush=True,
            )

    def _bar(self, epochs: int) -> Any:
        if not self.progress:
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=len(self.train_loader),
            initial=self.step_in_epoch,
            desc=f"epoch {self.epoch + 1}/{epochs}",
            unit="batch",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )

    def _end_epoch(self, epochs: int) -> None:
        p = self._partial
        test_loss, test_acc = self.evaluate(self.test_loader) if self.test_loader is not None else (None, None)
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
            print(
                f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  train {record['train_acc']:.2%}{test}  "
                f"{record['seconds']:.1f} s  {record['images_per_s']:.0f} img/s",
                file=self.stream,
                flush=True,
            )
        if self.out_dir is not None:
            self.save_checkpoint(self.out_dir / "last.safetensors")
            if test_acc is not None and (self.best_test_acc is None or test_acc > self.best_test_acc):
                self.best_test_acc = test_acc
                self.save_checkpoint(self.out_dir / "best.safetensors")
                self.last_checkpoint = self.out_dir / "last.safetensors"
            self.write_metrics(self.out_dir / "metrics.csv")
        elif test_acc is not None and (self.best_test_acc is None or test_acc > self.best_test_acc):
            self.best_test_acc = test_acc

    def evaluate(self, loader: DataLoader) -> tuple[float, float]:
        """(mean loss, accuracy) over all of ``loader``'s samples, in inference mode."""
        model = self.model
        was_training = model.training
        model.eval()
        loss_sum: Array = None
        hit_sum: Array = None
        n = 0
        try:
            for xb, tb in loader.batches(0):
                y = model.predict(xb)
                batch_loss = model.last_layer.forward(y, tb) * xb.shape[0]
                h = _hits(y, tb)
                loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
                hit_sum = h if hit_sum is None else hit_sum + h
                n += int(xb.shape[0])
        finally:
            model.train(was_training)
        return float(loss_sum) / n, int(hit_sum) / n

    def write_metrics(self, path: str | os.PathLike[str]) -> None:
        """The history as CSV, replaced atomically."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=HISTORY_FIELDS)
            writer.writeheader()
            writer.writerows({k: h.get(k) for k in HISTORY_FIELDS} for h in self.history)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def _hits(scores: Array, t: Array) -> Array:
    """Number of correct predictions in a batch, as a 0-d int64 array on the device."""
    xp = get_array_module(scores, t)
    labels = xp.argmax(t, axis=1) if t.ndim == 2 else xp.astype(t, xp.int64)
    return xp.sum(xp.astype(xp.argmax(scores, axis=1) == labels, xp.int64))
