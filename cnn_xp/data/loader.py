"""DataLoader: shuffled mini-batches of host arrays, delivered on the target device and dtype."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy

from ..backend import Device, HostToDevice, get_array_module, indexes_by_arrays, on_device, parse_device
from ..checks import check_int, float_dtype_name
from .augment import Draws, crop_and_flip, draw
from .preprocess import Preprocess

Array = Any


class DataLoader:
    """Mini-batches ``(x, t)`` of host arrays ``x`` (N, ...) and ``t`` (N,) or (N, K).

    * Each epoch is a permutation of all N samples (no sampling with replacement), drawn from
      ``numpy.random.default_rng([seed, epoch])``: the order of epoch e depends only on the
      seed and e, so a run resumed mid-way sees exactly the batches it would have seen.
    * ``drop_last`` drops the final partial batch; otherwise it is yielded.
    * Batches arrive on ``device`` with images cast to ``dtype`` and multiplied by ``scale``
      (e.g. uint8 images with ``scale=1/255``); the cast happens on the device, so a GPU gets
      the 4x smaller uint8 batch.
    * ``preprocess`` (a :class:`~cnn_xp.data.preprocess.Preprocess`: scale, per-channel mean and
      standard deviation) turns pixels into inputs on the device; ``scale`` alone is the old form.
    * ``augment`` crops each image at a random place after zero-padding by ``crop_pad`` pixels
      and mirrors it left-right with probability 1/2, on the device (:mod:`cnn_xp.data.augment`),
      drawn from the seed, the epoch and the batch: a resumed run sees the same images.
    * ``shift`` > 0 translates each training image by a random whole number of pixels in
      [-shift, shift] along H and W (zero fill), drawn from ``default_rng([seed, epoch, batch])``
      so that a resumed run applies the same shifts.
    * With ``world_size`` N > 1 (data-parallel training) ``batch_size`` is the *global* batch:
      every rank draws the same permutation and takes its own contiguous slice of each global
      batch (the first ``B mod N`` ranks get one sample more; a rank may get none of a final
      batch smaller than N), so N ranks together see exactly the batches — and shifts — one
      process would. ``len()`` counts global batches.  On a GPU the next batch's copy overlaps the current step
      (see :class:`cnn_xp.backend.HostToDevice`); on the CPU, unshuffled batches of an array
      already in ``dtype`` are views, not copies.
    """

    def __init__(
        self,
        x: numpy.ndarray,
        t: numpy.ndarray,
        batch_size: int = 100,
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int | None = None,
        device: str | Device | None = "cpu",
        dtype: Any = "float32",
        scale: float | None = None,
        shift: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        augment: bool = False,
        crop_pad: int = 4,
        preprocess: Preprocess | None = None,
    ) -> None:
        if not isinstance(x, numpy.ndarray) or not isinstance(t, numpy.ndarray):
            raise TypeError(f"x, t: expected host NumPy arrays, got {type(x).__name__} and {type(t).__name__}")
        if x.ndim < 2 or x.shape[0] == 0:
            raise ValueError(f"x: expected a non-empty array (N, ...), got shape {x.shape}")
        if t.shape[0] != x.shape[0]:
            raise ValueError(
                f"t: expected {x.shape[0]} targets to match x of shape {x.shape}, got t of shape {t.shape}"
            )
        if x.dtype.kind == "f" and not numpy.isfinite(x).all():
            bad = int(numpy.argmin(numpy.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)))
            raise ValueError(
                f"x: contains non-finite values (NaN or inf), first in sample {bad}; expected finite inputs"
            )
        if t.dtype.kind == "f" and not numpy.isfinite(t).all():
            raise ValueError("t: contains non-finite values (NaN or inf); expected finite targets")
        self.x, self.t = x, t
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        if self.drop_last and self.batch_size > x.shape[0]:
            raise ValueError(
                f"batch_size: {batch_size} is larger than the {x.shape[0]} samples and drop_last=True would yield nothing"
            )
        self.seed = int(numpy.random.default_rng().integers(2**63)) if seed is None else check_int("seed", seed, 0)
        self.device = parse_device(device)
        self.dtype = numpy.dtype(float_dtype_name(dtype))
        self.shift = check_int("shift", shift, 0)
        if self.shift and x.ndim != 4:
            raise ValueError(f"shift: random translation needs images (N, C, H, W), got x of shape {x.shape}")
        if self.shift and self.shift > min(x.shape[2], x.shape[3]) // 2:
            h, w = x.shape[2], x.shape[3]
            raise ValueError(
                f"shift: expected at most half the image, {min(h, w) // 2} px for {h}x{w} images, got {self.shift} "
                "(larger shifts move most of the image out of view)"
            )
        self.augment = bool(augment)
        self.crop_pad = check_int("crop_pad", crop_pad, 0)
        if self.augment and (x.ndim != 4 or self.crop_pad > min(x.shape[2], x.shape[3]) // 2):
            raise ValueError(
                f"crop_pad: random crops need images (N, C, H, W) and padding of at most half the image, got "
                f"{self.crop_pad} px for x of shape {x.shape}"
            )
        if preprocess is not None and scale is not None:
            raise ValueError("scale, preprocess: give one of them (a Preprocess holds its own scale)")
        self.preprocess = preprocess if preprocess is not None else (Preprocess(scale) if scale is not None else None)
        self.world_size = check_int("world_size", world_size, 1)
        self._on_device = indexes_by_arrays(self.device)  # augment after the copy, on the device
        self.rank = check_int("rank", rank, 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank: expected 0 <= rank < world_size={self.world_size}, got {rank}")
        self.epoch = 0

    def __len__(self) -> int:
        n = self.x.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Samples per epoch (after ``drop_last``)."""
        return len(self) * self.batch_size if self.drop_last else self.x.shape[0]

    def order(self, epoch: int) -> numpy.ndarray | None:
        """Sample order of ``epoch`` (None: the natural order)."""
        if not self.shuffle:
            return None
        return numpy.random.default_rng([self.seed, epoch]).permutation(self.x.shape[0])

    def local_range(self, n: int) -> tuple[int, int]:
        """This rank's [start, stop) within a global batch of ``n`` samples."""
        q, r = divmod(n, self.world_size)
        start = self.rank * q + min(self.rank, r)
        return start, start + q + (1 if self.rank < r else 0)

    def _host_batch(self, order: numpy.ndarray | None, epoch: int, k: int) -> tuple[numpy.ndarray, numpy.ndarray]:
        lo, hi = k * self.batch_size, min((k + 1) * self.batch_size, self.x.shape[0])
        a, b = self.local_range(hi - lo)
        idx: slice | numpy.ndarray = slice(lo + a, lo + b) if order is None else order[lo + a : lo + b]
        xb, tb = self.x[idx], self.t[idx]
        if self.augment and not self._on_device:  # a library without gathers: crops made here
            draws = self._draws(epoch, k)
            assert draws is not None
            xb = crop_and_flip(xb, self.crop_pad, draws)
        if self.shift:
            # shifts are drawn for the whole global batch, then sliced: same as one process
            rng = numpy.random.default_rng([self.seed, epoch, k])
            dy = rng.integers(-self.shift, self.shift + 1, hi - lo)[a:b]
            dx = rng.integers(-self.shift, self.shift + 1, hi - lo)[a:b]
            xb = translate(xb, self.shift, dy, dx)
        return xb, tb

    def _draws(self, epoch: int, k: int) -> Draws | None:
        """The random crops and flips of global batch ``k`` (this rank's part), or None."""
        if not self.augment:
            return None
        lo, hi = k * self.batch_size, min((k + 1) * self.batch_size, self.x.shape[0])
        a, b = self.local_range(hi - lo)
        return draw(self.seed, epoch, k, hi - lo, self.crop_pad, slice(a, b))

    def _finish(self, xb: Array, tb: Array, own: bool, draws: Draws | None) -> tuple[Array, Array]:
        """Cast, preprocess and augment on the device.  With ``own`` (on a GPU) the received
        arrays are ring buffers that a later batch overwrites, so what is yielded is always a new
        array (the cast is the copy)."""
        xp = get_array_module(xb)
        target = getattr(xp, self.dtype.name)
        with on_device(xb):
            copied = xb.dtype != target or own
            if copied:
                xb = xp.astype(xb, target, copy=True)
            if draws is not None:  # pixels: the padding is black, as torchvision's RandomCrop pads
                xb, copied = crop_and_flip(xb, self.crop_pad, draws), True
            if self.preprocess is not None:  # in place on our own copy; a view of the caller's data is never written
                xb = self.preprocess.apply(xb, copy=not copied)
            if (tb.ndim == 2 and tb.dtype != target) or own:
                tb = xp.astype(tb, target if tb.ndim == 2 else tb.dtype, copy=True)
        return xb, tb

    @property
    def scale(self) -> float | None:
        return None if self.preprocess is None else self.preprocess.scale

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[Array, Array]]:
        """The batches of ``epoch`` from batch index ``start`` on (for resuming mid-epoch).
        Each call has its own copy ring on a GPU, so iterators over one loader may interleave."""
        order = self.order(epoch)
        ks = range(start, len(self))
        if not ks:
            return
        copier = HostToDevice(self.device)
        try:
            ticket = copier.submit(self._host_batch(order, epoch, ks[0]))
            for k in ks:
                xb, tb = copier.receive(ticket)
                if k + 1 < len(self):
                    ticket = copier.submit(self._host_batch(order, epoch, k + 1))  # overlaps this step on a GPU
                yield self._finish(xb, tb, copier.recycles, self._draws(epoch, k) if self._on_device else None)
        finally:
            copier.close()

    def __iter__(self) -> Iterator[tuple[Array, Array]]:
        """One epoch; the next ``iter()`` gives the next epoch's order."""
        epoch = self.epoch
        self.epoch += 1
        return self.batches(epoch)


def translate(x: numpy.ndarray, shift: int, dy: numpy.ndarray, dx: numpy.ndarray) -> numpy.ndarray:
    """Image n of ``x`` (N, C, H, W) moved by (dy[n], dx[n]) pixels, |dy|, |dx| <= ``shift``,
    zero-filled: ``out[n, :, y, x] = x[n, :, y - dy[n], x - dx[n]]``."""
    n, c, h, w = x.shape
    padded = numpy.zeros((n, c, h + 2 * shift, w + 2 * shift), dtype=x.dtype)
    padded[:, :, shift : shift + h, shift : shift + w] = x
    rows = numpy.asarray(shift - dy)[:, None] + numpy.arange(h)  # (N, H) source rows in the padded image
    cols = numpy.asarray(shift - dx)[:, None] + numpy.arange(w)
    return padded[
        numpy.arange(n)[:, None, None, None],
        numpy.arange(c)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]
