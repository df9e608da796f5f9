"""Folders of images as datasets: ``DIR/train/<class>/`` and ``DIR/test/<class>/``, or
``DIR/<class>/`` alone with a held-out test fraction -- torchvision's ``ImageFolder`` layout.

* **Files**: PNG, JPEG, BMP, WebP and GIF (its first frame), any case of the extension, found
  recursively inside each class folder (symbolic links followed, loops cut); hidden files and
  folders are left out, as is anything else (counted in the report).  Class names are the
  folder names, sorted.
* **Pixels**: every image is converted to ``channels`` (1: grey, ``L``; 3: ``RGB``, alpha
  dropped; default: 3 if any image has colour, else 1) and resized to ``image_size`` (H, W)
  (default: the most common size) with Pillow's bilinear filter (antialiased when shrinking).
  An image smaller than a quarter of that size on a side is not enlarged: it is skipped.
* **Splits**: with ``DIR/<class>/`` only, each class's images are shuffled by ``seed`` and the
  last ``test_fraction`` of them (at least one, when the class has two) form the test split.
* **Problems**: a file Pillow cannot read (corrupt, truncated, a text file named ``.png``),
  one above Pillow's decompression-bomb limit, an unreadable folder or a symbolic-link loop is
  skipped, and :attr:`ImageFolder.report` says how many images each split and class has, how
  many were skipped and why, with the first paths; ``strict=True`` makes any skip an error.
  No class folders, an empty class folder, a single class, no images at all, or class folders
  that differ between ``train/`` and ``test/`` are errors (ValueError naming the folder).
* **Speed**: headers are read and images decoded by a pool of threads (Pillow decodes without
  the GIL), straight into a cache of uint8 arrays (``.npy``) -- in ``DIR/.cnn_xp_cache/`` when
  ``DIR`` is writable, else in the user's cache folder (``$CNN_XP_CACHE``, else
  ``$XDG_CACHE_HOME/cnn_xp`` or ``~/.cache/cnn_xp``) -- keyed by every file's path, size and
  modification time and by the settings.  A later run with the same files and settings reads
  the cache, memory-mapped: it starts in seconds, and a dataset larger than memory is read from
  disk as the batches need it.  cnn_xp writes and removes only its own cache folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
CACHE_NAME = ".cnn_xp_cache"
CACHE_MARK = "cnn_xp-cache.json"  # in every cache folder cnn_xp wrote: only those are ever removed
CACHE_VERSION = 1  # of the decoding (conversion, resizing): a change makes new cache entries
RESIZE = "bilinear"
SPLITS = ("train", "test")
MAX_SIDE = 4096  # an image size (H, W) larger than this is refused


@dataclass(frozen=True)
class FolderOptions:
    """How a folder of images becomes arrays (see the module's docstring)."""

    channels: int | None = None
    image_size: tuple[int, int] | None = None
    test_fraction: float = 0.2
    seed: int = 0
    strict: bool = False

    def __post_init__(self) -> None:
        if self.channels not in (None, 1, 3):
            raise ValueError(f"channels: expected 1 (grey) or 3 (colour), got {self.channels!r}")
        if self.image_size is not None:
            size = tuple(self.image_size)
            if len(size) != 2 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= MAX_SIDE for v in size
            ):
                raise ValueError(f"image_size: expected (H, W), each in [1, {MAX_SIDE}], got {self.image_size!r}")
            object.__setattr__(self, "image_size", (int(size[0]), int(size[1])))
        f = self.test_fraction
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1:
            raise ValueError(f"test_fraction: expected a number in (0, 1), got {f!r}")

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> FolderOptions:
        known = {
            k: options[k]
            for k in ("channels", "image_size", "test_fraction", "seed", "strict")
            if options.get(k) is not None
        }
        return cls(**known)


@dataclass
class ImageFolder:
    """A folder read as a dataset: ``splits[name] = (x uint8 (N, C, H, W), t int64 (N,))``."""

    root: Path
    classes: list[str]
    splits: dict[str, tuple[numpy.ndarray, numpy.ndarray]]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    ignored: int = 0  # files that are not images (by extension) or outside class folders
    cache: Path | None = None
    from_cache: bool = False

    @property
    def report(self) -> str:
        """One line: images per split and class, what was skipped and why (the first paths)."""
        parts = []
        for name, (_, t) in self.splits.items():
            counts = numpy.bincount(t, minlength=len(self.classes))
            per_class = ", ".join(f"{c} {int(n)}" for c, n in zip(self.classes, counts, strict=True))
            parts.append(f"{name} {int(t.shape[0])} ({per_class})")
        line = f"{self.root}: read {'; '.join(parts)}"
        if self.skipped:
            why = Counter(reason for _, reason in self.skipped)
            first = ", ".join(path for path, _ in self.skipped[:3])
            line += (
                f"; skipped {len(self.skipped)} ({', '.join(f'{r}: {n}' for r, n in why.most_common())}; e.g. {first})"
            )
        if self.ignored:
            line += f"; ignored {self.ignored} file(s) that are not images"
        if self.from_cache:
            line += " [from the cache]"
        return line


# --------------------------------------------------------------------------- finding the files


def is_image_folder(directory: str | os.PathLike[str]) -> bool:
    """True for a folder with class folders (directly, or under train/ and test/) holding images."""
    root = Path(directory)
    if not root.is_dir():
        return False
    try:
        base = root / "train" if (root / "train").is_dir() and (root / "test").is_dir() else root
        for sub in _subfolders(base):
            for _, _, files in os.walk(sub, followlinks=False):
                if any(f.lower().endswith(IMAGE_EXTENSIONS) for f in files):
                    return True
    except OSError:
        return False
    return False


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class _Scan:
    classes: list[str]
    files: dict[str, list[tuple[str, int]]]  # split -> (path, label); "all" before a fraction split
    skipped: list[tuple[str, str]]
    ignored: int


def _walk_class(folder: Path, skipped: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Image files under ``folder`` (sorted), and how many other files; symlink loops and unreadable
    folders go to ``skipped``."""
    images, ignored, seen = [], 0, set()

    def unreadable(error: OSError) -> None:
        skipped.append((str(error.filename or folder), f"unreadable folder ({error.strerror or error})"))

    for top, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        try:
            stat = os.stat(top)
        except OSError as exc:
            unreadable(exc)
            dirs[:] = []
            continue
        if (stat.st_dev, stat.st_ino) in seen:  # a symbolic link back to a folder already walked
            skipped.append((top, "symbolic-link loop"))
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            if name.lower().endswith(IMAGE_EXTENSIONS):
                images.append(os.path.join(top, name))
            else:
                ignored += 1
    return images, ignored


def _scan(root: Path, options: FolderOptions) -> _Scan:
    skipped: list[tuple[str, str]] = []
    if not root.is_dir():
        raise ValueError(f"{root}: no such folder")
    split_layout = (root / "train").is_dir() and (root / "test").is_dir()
    bases = {s: root / s for s in SPLITS} if split_layout else {"all": root}
    folders = {s: {p.name: p for p in _subfolders(base)} for s, base in bases.items()}
    if split_layout and set(folders["train"]) != set(folders["test"]):
        only_train, only_test = (
            sorted(set(folders["train"]) - set(folders["test"])),
            sorted(set(folders["test"]) - set(folders["train"])),
        )
        raise ValueError(
            f"{root}: the class folders differ between train/ and test/: only in train/ {only_train}, only in "
            f"test/ {only_test}; each class needs a folder in both"
        )
    first = next(iter(folders.values()))
    classes = sorted(first)
    if not classes:
        where = f"{root}/train" if split_layout else str(root)
        raise ValueError(
            f"{where}: no class folders; expected DIR/<class>/ (or DIR/train/<class>/ and DIR/test/<class>/) holding images"
        )
    if len(classes) == 1:
        raise ValueError(f"{root}: only one class folder ({classes[0]!r}); a classifier needs at least two classes")
    files: dict[str, list[tuple[str, int]]] = {}
    ignored = sum(1 for base in bases.values() for p in base.iterdir() if p.is_file() and not p.name.startswith("."))
    for split, by_name in folders.items():
        files[split] = []
        for label, name in enumerate(classes):
            images, other = _walk_class(by_name[name], skipped)
            ignored += other
            if not images:
                raise ValueError(f"{by_name[name]}: the class folder holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            files[split] += [(path, label) for path in images]
    return _Scan(classes, files, skipped, ignored)


def _fraction_split(
    files: list[tuple[str, int]], n_classes: int, fraction: float, seed: int
) -> dict[str, list[tuple[str, int]]]:
    """Each class's files shuffled by ``seed``, its last ``fraction`` (at least one of two or more) held out."""
    rng = numpy.random.default_rng([seed, 2024])
    out: dict[str, list[tuple[str, int]]] = {"train": [], "test": []}
    for label in range(n_classes):
        mine = [f for f in files if f[1] == label]
        order = rng.permutation(len(mine))
        held = min(len(mine) - 1, max(1, round(fraction * len(mine)))) if len(mine) > 1 else 0
        picked = [mine[i] for i in order]
        out["train"] += sorted(picked[: len(mine) - held])
        out["test"] += sorted(picked[len(mine) - held :])
    return out


# --------------------------------------------------------------------------- decoding


def _probe(path: str) -> tuple[str, tuple[int, int], bool] | str:
    """(path, (H, W), has colour) from the header, or why the file cannot be used."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and w * h > limit:
                return f"decompression bomb ({w}x{h} pixels, over Pillow's limit of {Image.MAX_IMAGE_PIXELS})"
            return path, (h, w), im.mode not in ("1", "L", "LA", "I", "I;16", "F")
    except Image.DecompressionBombError:
        return f"decompression bomb (over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels)"
    except UnidentifiedImageError:
        return "not an image Pillow can read"
    except (OSError, ValueError, SyntaxError) as exc:
        return f"corrupt or unreadable ({type(exc).__name__}: {str(exc)[:60]})"


def read_image(
    path: str | os.PathLike[str], channels: int, size: tuple[int, int], out: numpy.ndarray | None = None
) -> numpy.ndarray:
    """One image file as uint8 (C, H, W) pixels: its first frame, converted to ``channels`` (1:
    ``L``, 3: ``RGB``) and resized to ``size`` (H, W) with Pillow's bilinear filter -- what a
    folder dataset holds and what ``cnn_xp predict`` feeds a network.  Written into ``out`` when
    given.  Raises ValueError naming the file for one Pillow cannot use."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            w, h = opened.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and w * h > limit:
                raise ValueError(f"decompression bomb ({w}x{h} pixels, over Pillow's limit of {limit})")
            opened.seek(0)  # a GIF's first frame
            im = opened.convert("L" if channels == 1 else "RGB")
            if im.size != (size[1], size[0]):
                im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
            a = numpy.asarray(im, dtype=numpy.uint8)
    except Image.DecompressionBombError:
        raise ValueError(
            f"{path}: decompression bomb (over Pillow's limit of {Image.MAX_IMAGE_PIXELS} pixels)"
        ) from None
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    except (OSError, SyntaxError) as exc:  # truncated, corrupt, unreadable
        raise ValueError(f"{path}: corrupt or unreadable ({type(exc).__name__}: {str(exc)[:60]})") from None
    pixels = a[None] if channels == 1 else a.transpose(2, 0, 1)
    if out is None:
        return numpy.ascontiguousarray(pixels)
    out[...] = pixels
    return out


def _decode(path: str, channels: int, size: tuple[int, int], out: numpy.ndarray) -> str | None:
    """:func:`read_image` into ``out``; None, or why it failed."""
    try:
        read_image(path, channels, size, out)
    except ValueError as exc:
        return str(exc).removeprefix(f"{path}: ")
    return None


def _workers() -> int:
    return max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)))


# --------------------------------------------------------------------------- the cache


def _cache_root(root: Path) -> Path:
    own = root / CACHE_NAME
    if os.access(root, os.W_OK) and (not own.exists() or os.access(own, os.W_OK)):
        return own
    base = os.environ.get("CNN_XP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cnn_xp"
    )
    return Path(base) / "folders"


def _key(root: Path, scan: _Scan, options: FolderOptions) -> str:
    digest = hashlib.sha256()
    settings = {"version": CACHE_VERSION, "root": os.path.realpath(root), "channels": options.channels,
                "image_size": options.image_size, "test_fraction": options.test_fraction, "seed": options.seed,
                "resize": RESIZE}  # fmt: skip
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for split, files in scan.files.items():
        for path, label in files:
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            digest.update(f"{split}\0{label}\0{path}\0{stamp}\n".encode())
    return digest.hexdigest()[:24]


def _read_cache(folder: Path) -> ImageFolder | None:
    try:
        meta = json.loads((folder / CACHE_MARK).read_text())
        splits = {
            s: (
                numpy.load(folder / f"{s}_x.npy", mmap_mode="r", allow_pickle=False),
                numpy.load(folder / f"{s}_t.npy", allow_pickle=False),
            )
            for s in meta["splits"]
        }
        return ImageFolder(
            Path(meta["root"]), list(meta["classes"]), splits, [tuple(p) for p in meta["skipped"]], int(meta["ignored"]),
            folder, True,
        )  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None  # missing or damaged: decoded again


def _prune(cache_root: Path, keep: str) -> None:
    """Remove the older cache folders of this data folder: only folders cnn_xp wrote (marked)."""
    try:
        for entry in cache_root.iterdir():
            if entry.name != keep and entry.is_dir() and not entry.is_symlink() and (entry / CACHE_MARK).is_file():
                shutil.rmtree(entry, ignore_errors=True)
    except OSError:
        pass


# --------------------------------------------------------------------------- reading


_memo: dict[tuple[str, FolderOptions], tuple[str, ImageFolder]] = {}


def load_image_folder(
    directory: str | os.PathLike[str],
    channels: int | None = None,
    image_size: tuple[int, int] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    strict: bool = False,
) -> ImageFolder:
    """A folder of images as a dataset (see the module's docstring): decoded once, then read from
    the cache.  Raises ValueError naming the folder or file for what cannot be used (and, with
    ``strict``, for any file that would be skipped)."""
    root = Path(directory)
    options = FolderOptions(channels, image_size, test_fraction, seed, strict)
    scan = _scan(root, options)
    key = _key(root, scan, options)
    memo = _memo.get((os.path.realpath(root), options))
    if memo is not None and memo[0] == key:
        folder = memo[1]
    else:
        cache_root = _cache_root(root)
        folder = _read_cache(cache_root / key) or _decode_all(root, scan, options, cache_root, key)
        _memo[(os.path.realpath(root), options)] = (key, folder)
    if strict and folder.skipped:
        path, why = folder.skipped[0]
        raise ValueError(f"{path}: {why} (and {len(folder.skipped) - 1} more skipped; strict: nothing may be skipped)")
    return folder


def _decode_all(root: Path, scan: _Scan, options: FolderOptions, cache_root: Path, key: str) -> ImageFolder:
    skipped = list(scan.skipped)
    everything = [f for files in scan.files.values() for f in files]
    with ThreadPoolExecutor(_workers()) as pool:
        probes = list(pool.map(_probe, [path for path, _ in everything]))
    good: dict[str, tuple[tuple[int, int], bool]] = {}
    for (path, _), probe in zip(everything, probes, strict=True):
        if isinstance(probe, str):
            skipped.append((path, probe))
        else:
            good[path] = (probe[1], probe[2])
    if not good:
        raise ValueError(
            f"{root}: no image could be read ({len(skipped)} skipped: {skipped[0][1] if skipped else 'none found'})"
        )
    size = options.image_size or Counter(s for s, _ in good.values()).most_common(1)[0][0]
    channels = options.channels or (3 if any(colour for _, colour in good.values()) else 1)
    for path, ((h, w), _) in list(good.items()):
        if 4 * h < size[0] or 4 * w < size[1]:
            skipped.append((path, f"too small ({h}x{w}) to enlarge to {size[0]}x{size[1]}"))
            del good[path]
    files = scan.files
    if "all" in files:
        files = _fraction_split(
            [f for f in files["all"] if f[0] in good], len(scan.classes), options.test_fraction, options.seed
        )
    else:
        files = {s: [f for f in fs if f[0] in good] for s, fs in files.items()}
    cache_root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{key}.", suffix=".tmp", dir=cache_root))
    try:
        splits = {}
        for split in SPLITS:
            chosen = files[split]
            x = numpy.lib.format.open_memmap(work / f"{split}_x.npy", "w+", numpy.uint8, (len(chosen), channels, *size))
            with ThreadPoolExecutor(_workers()) as pool:
                failures = list(
                    pool.map(_decode, [p for p, _ in chosen], [channels] * len(chosen), [size] * len(chosen), x)
                )
            keep = [i for i, why in enumerate(failures) if why is None]
            skipped += [(chosen[i][0], why) for i, why in enumerate(failures) if why is not None]
            t = numpy.asarray([chosen[i][1] for i in keep], dtype=numpy.int64)
            if len(keep) < len(chosen):  # compact: the failed rows out
                compact = numpy.lib.format.open_memmap(
                    work / f"{split}_y.npy", "w+", numpy.uint8, (len(keep), channels, *size)
                )
                compact[...] = x[keep]
                compact.flush()
                del x, compact
                os.replace(work / f"{split}_y.npy", work / f"{split}_x.npy")
            else:
                x.flush()
                del x
            numpy.save(work / f"{split}_t.npy", t)
            counts = numpy.bincount(t, minlength=len(scan.classes))
            if split == "train" and (counts == 0).any():
                empty = [c for c, n in zip(scan.classes, counts, strict=True) if n == 0]
                raise ValueError(f"{root}: no usable training image in class folder(s) {empty}")
            splits[split] = t
        if sum(len(t) for t in splits.values()) == 0:
            raise ValueError(f"{root}: no image could be read")
        meta = {"root": str(root), "classes": scan.classes, "splits": list(SPLITS), "skipped": skipped,
                "ignored": scan.ignored, "channels": channels, "image_size": list(size)}  # fmt: skip
        (work / CACHE_MARK).write_text(json.dumps(meta))
        final = cache_root / key
        if final.exists():  # another process wrote it meanwhile: use its copy
            shutil.rmtree(work, ignore_errors=True)
        else:
            os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    _prune(cache_root, key)
    folder = _read_cache(final)
    assert folder is not None
    folder.from_cache = False
    return folder
