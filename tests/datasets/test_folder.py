"""Folders of images: layouts, colour and size, the cache, every kind of bad input with its
message, and a run on generated colour images through the command line."""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import pytest
from PIL import Image

from cnn_xp.cli.evaluate import main as evaluate_main
from cnn_xp.cli.predict import main as predict_main
from cnn_xp.cli.train import main as train_main
from cnn_xp.datasets import folder as folder_module
from cnn_xp.datasets import load_image_folder, load_split
from cnn_xp.datasets.shapes import CLASSES, write_shapes_folder


@pytest.fixture
def shapes(tmp_path):
    return write_shapes_folder(tmp_path / "shapes", per_class=20, size=16)


def test_a_folder_of_class_folders_with_mixed_colours_sizes_and_formats(shapes):
    f = load_image_folder(shapes, seed=3)
    assert f.classes == sorted(CLASSES)
    (x, t), (xt, tt) = f.splits["train"], f.splits["test"]
    assert x.dtype == np.uint8 and x.shape[1:] == (3, 16, 16)  # colour wins; the most common size
    assert len(t) + len(tt) == 80 and np.bincount(tt).tolist() == [4, 4, 4, 4]  # a fifth of each class held out
    assert not f.skipped and "train 64 (circle 16, cross 16, square 16, triangle 16)" in f.report
    grey = load_image_folder(shapes, channels=1, image_size=(12, 10), seed=3)
    assert grey.splits["train"][0].shape[1:] == (1, 12, 10)
    other = load_image_folder(shapes, seed=4)
    assert not np.array_equal(np.sort(other.splits["test"][1]), tt) or not np.array_equal(other.splits["test"][0], xt)


def test_the_pixels_are_pillows_conversion_and_bilinear_resize(tmp_path):
    root = tmp_path / "d"
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    f = load_image_folder(root, channels=3, image_size=(10, 12), test_fraction=0.34)
    x, t = f.splits["train"]
    first = sorted((root / f.classes[t[0]]).iterdir())
    expected = [np.asarray(Image.open(p).convert("RGB").resize((12, 10), Image.Resampling.BILINEAR)) for p in first]
    assert any(np.array_equal(x[0], e.transpose(2, 0, 1)) for e in expected)


def test_train_and_test_folders_and_the_cache(tmp_path, monkeypatch):
    root = write_shapes_folder(tmp_path / "s", per_class=10, size=16, split=True)
    first = load_image_folder(root)
    assert not first.from_cache and len(first.splits["test"][1]) == 8
    folder_module._memo.clear()
    decoded = []
    monkeypatch.setattr(folder_module, "_decode", lambda *a: decoded.append(a) or "never")
    again = load_image_folder(root)
    assert again.from_cache and not decoded and isinstance(again.splits["train"][0], np.memmap)
    np.testing.assert_array_equal(again.splits["train"][0], first.splits["train"][0])
    os.utime(next((root / "train" / "circle").iterdir()), (1, 1))  # a file changed: decoded again
    folder_module._memo.clear()
    monkeypatch.undo()
    assert not load_image_folder(root).from_cache
    assert [p.name for p in (root / ".cnn_xp_cache").iterdir()].__len__() == 1  # the old entry removed


def test_a_read_only_data_folder_caches_in_the_user_cache(tmp_path, monkeypatch):
    root = write_shapes_folder(tmp_path / "s", per_class=5, size=12)
    monkeypatch.setenv("CNN_XP_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setattr(folder_module.os, "access", lambda path, mode: False)
    f = load_image_folder(root)
    assert f.cache is not None and f.cache.parent == tmp_path / "user-cache" / "folders"
    assert not (root / ".cnn_xp_cache").exists()


def _bad(root, name, payload):
    path = root / "circle" / name
    path.write_bytes(payload)
    return path


def test_files_it_cannot_use_are_skipped_and_reported_or_refused_with_strict(shapes):
    good = next((shapes / "circle").iterdir()).read_bytes()
    _bad(shapes, "text.png", b"hello, not a picture")
    _bad(shapes, "truncated.jpg", (shapes / "circle" / "circle00001.jpg").read_bytes()[:300])
    (shapes / "circle" / "notes.txt").write_text("a note")
    tiny = shapes / "square" / "tiny.png"
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tiny)
    assert good
    f = load_image_folder(shapes)
    why = dict(f.skipped)
    assert why[str(shapes / "circle" / "text.png")] == "not an image Pillow can read"
    assert why[str(shapes / "circle" / "truncated.jpg")].startswith("corrupt")
    assert why[str(tiny)] == "too small (2x2) to enlarge to 16x16"
    assert "skipped 3 (" in f.report and "ignored 1 file(s) that are not images" in f.report
    with pytest.raises(ValueError, match=r"(text\.png|truncated\.jpg|tiny\.png): .* strict: nothing may be skipped"):
        load_image_folder(shapes, strict=True)


def test_a_decompression_bomb_is_skipped_before_it_is_decoded(shapes, monkeypatch):
    bomb = shapes / "cross" / "bomb.png"
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(bomb)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 60 * 60)  # Pillow's limit, made small for the test
    f = load_image_folder(shapes)
    assert dict(f.skipped)[str(bomb)].startswith("decompression bomb (64x64 pixels")


def test_symbolic_link_loops_and_unreadable_folders_are_skipped(shapes, monkeypatch):
    os.symlink(shapes / "circle", shapes / "circle" / "again")
    real_scandir = os.scandir

    def scandir(path="."):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    (shapes / "square" / "locked").mkdir()
    monkeypatch.setattr(os, "scandir", scandir)
    f = load_image_folder(shapes)
    why = dict(f.skipped)
    assert why[str(shapes / "circle" / "again")] == "symbolic-link loop"
    assert why[str(shapes / "square" / "locked")].startswith("unreadable folder")


def test_every_layout_error_is_one_line_naming_the_folder(tmp_path, shapes):
    (shapes / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: the class folder holds no images"):
        load_image_folder(shapes)
    one = tmp_path / "one" / "only"
    one.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(one / "a.png")
    with pytest.raises(ValueError, match=r"only one class folder \('only'\)"):
        load_image_folder(tmp_path / "one")
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match=r"none: no class folders"):
        load_image_folder(tmp_path / "none")
    split = write_shapes_folder(tmp_path / "split", per_class=5, size=8, split=True)
    (split / "test" / "circle").rename(split / "test" / "ring")
    with pytest.raises(
        ValueError, match=r"differ between train/ and test/: only in train/ \['circle'\], only in test/ \['ring'\]"
    ):
        load_image_folder(split)
    unreadable = tmp_path / "broken"
    for c in ("a", "b"):
        (unreadable / c).mkdir(parents=True)
        (unreadable / c / "x.png").write_text("no")
    with pytest.raises(ValueError, match=r"broken: no image could be read"):
        load_image_folder(unreadable)


def test_the_command_line_trains_evaluates_and_predicts_on_generated_colour_images(tmp_path, capsys):
    data = write_shapes_folder(tmp_path / "shapes", per_class=150, size=16)
    out = tmp_path / "run"
    args = ["--dataset", str(data), "--device", "cpu", "--epochs", "10", "--batch-size", "20", "--augment", "--quiet"]
    assert train_main([*args, "--out", str(out)]) == 0
    capsys.readouterr()
    assert evaluate_main([str(out / "best.safetensors"), "--dataset", str(data), "--device", "cpu"]) == 0
    report = capsys.readouterr().out
    assert float(report.split("test accuracy: ")[1].split("%")[0]) > 85  # four shapes, 600 images, 10 epochs
    assert all(name in report for name in CLASSES)
    csv = tmp_path / "p.csv"
    assert (
        predict_main(
            [str(out / "best.safetensors"), str(data / "circle"), "--top-k", "2", "--csv", str(csv), "--device", "cpu"]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 150 and all(line.count(" p=") == 2 for line in lines)
    assert sum(line.split(": ")[1].startswith("circle (class 0)") for line in lines) > 120
    rows = csv.read_text().splitlines()
    assert rows[0] == "path,class_name_1,class_1,p_1,class_name_2,class_2,p_2" and len(rows) == 151


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--channels", "2"], "--channels: expected one of [1, 3], got 2"),
        (["--image-size", "0", "8"], "--image-size: expected an integer in [1, 4096], got 0"),
        (["--test-fraction", "1.5"], "--test-fraction: expected a number in (0, 0.99], got 1.5"),
        (["--strict"], "strict: nothing may be skipped"),
        (["--image-size", "4", "4", "--model", "resnet20"], "--model: resnet20 for inputs (3, 4, 4)"),
    ],
)
def test_bad_image_folder_settings_are_one_line_exit_2(shapes, argv, words, capsys, tmp_path):
    (shapes / "circle" / "bad.png").write_text("not an image")
    code = train_main(
        [
            "--dataset",
            str(shapes),
            "--device",
            "cpu",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--out",
            str(tmp_path / "r"),
            *argv,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err


# --------------------------------------------------------------------------- IDX files of other types


def _idx(path, array, code):
    header = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def _idx_dir(tmp_path, images, image_code, labels, label_code):
    for stem in ("train", "t10k"):
        _idx(tmp_path / f"{stem}-images-idx3-ubyte.gz", images, image_code)
        _idx(tmp_path / f"{stem}-labels-idx1-ubyte.gz", labels, label_code)
    return tmp_path


def test_idx_files_are_read_as_what_they_hold_or_refused(tmp_path):
    rng = np.random.default_rng(0)
    floats = rng.random((6, 8, 8)).astype(np.float32)
    labels = np.arange(256, 262, dtype=np.int16)  # labels of 256 and more: 262 classes, no wrap to 0-5
    (tmp_path / "f").mkdir()
    x, t = load_split(_idx_dir(tmp_path / "f", floats, 0x0D, labels, 0x0B), "train")
    assert x.dtype == np.float32 and np.array_equal(x[:, 0], floats) and t.tolist() == list(range(256, 262))
    (tmp_path / "i").mkdir()
    wide = _idx_dir(tmp_path / "i", (floats * 1000).astype(np.int32), 0x0C, labels, 0x0B)
    with pytest.raises(ValueError, match=r"int32 pixel values in \[\d+, \d+\] do not fit 8-bit images"):
        load_split(wide, "train")
    (tmp_path / "l").mkdir()
    float_labels = _idx_dir(tmp_path / "l", (floats * 255).astype(np.uint8), 0x08, labels.astype(np.float32), 0x0D)
    with pytest.raises(ValueError, match="labels must be integer class numbers, got float32 values"):
        load_split(float_labels, "train")
