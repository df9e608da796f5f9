"""Datasets: bundled MNIST verified by digest; IDX and CIFAR-10 readers on files written here."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest

from cnn_xp.datasets import fashion_mnist as fm
from cnn_xp.datasets import (
    find_fashion_mnist,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    load_idx_directory,
    load_mnist,
    read_idx,
)

DIGESTS = {
    "train images": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
    "train labels": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
    "test images": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
    "test labels": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
}


def sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_bundled_mnist_matches_published_digests():
    (x, t), (xt, tt) = load_mnist(normalize=False)
    assert x.dtype == np.uint8 and x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert sha(x.reshape(60000, 28, 28)) == DIGESTS["train images"]
    assert sha(t) == DIGESTS["train labels"]
    assert sha(xt.reshape(10000, 28, 28)) == DIGESTS["test images"]
    assert sha(tt) == DIGESTS["test labels"]


def test_load_mnist_options():
    (x, t), _ = load_mnist()
    assert x.dtype == np.float32 and x.shape == (60000, 1, 28, 28) and float(x.max()) == 1.0 and float(x.min()) == 0.0
    (xf, tf), (xtf, ttf) = load_mnist(normalize=False, flatten=True, one_hot_label=True)
    assert xf.shape == (60000, 784) and xf.dtype == np.uint8
    assert tf.shape == (60000, 10) and np.array_equal(tf.argmax(1), t) and tf.sum() == 60000
    assert xtf.shape == (10000, 784) and ttf.shape == (10000, 10)


# ------------------------------------------------------------------ IDX


def write_idx(path, arr, gz=False):
    codes = {np.uint8: 0x08}
    header = bytes([0, 0, codes[arr.dtype.type], arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    data = header + arr.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:  # closed here: GzipFile buffers its writes (3.12)
        f.write(data)


def make_idx_dir(d, n_train=12, n_test=5, prefix="", gz=True):
    rng = np.random.default_rng(0)
    ext = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, arr in arrays.items():
        write_idx(d / f"{prefix}{name}{ext}", arr, gz=gz)
    return arrays


@pytest.mark.parametrize(("gz", "prefix"), [(True, ""), (False, ""), (True, "emnist-digits-")])
def test_idx_directory_round_trip(tmp_path, gz, prefix):
    arrays = make_idx_dir(tmp_path, prefix=prefix, gz=gz)
    (x, _t), (xt, tt) = load_idx_directory(tmp_path, normalize=False)
    assert x.shape == (12, 1, 28, 28) and xt.shape == (5, 1, 28, 28)
    np.testing.assert_array_equal(x[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(tt, arrays["t10k-labels-idx1-ubyte"])
    (xn, _), _ = load_dataset(tmp_path)
    assert xn.dtype == np.float32 and xn.max() <= 1.0


def test_idx_corrupt_and_truncated_files_name_the_file(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    images = tmp_path / "train-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-10])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte: IDX header says shape \(12, 28, 28\).*truncated"):
        load_idx_directory(tmp_path)
    images.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte: not an IDX file"):
        read_idx(images)
    images.write_bytes(b"")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(images)
    gz = tmp_path / "broken-ubyte.gz"
    gz.write_bytes(b"not gzip at all")
    with pytest.raises(ValueError, match=r"broken-ubyte\.gz: cannot read IDX file"):
        read_idx(gz)


def test_idx_label_count_mismatch(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, np.uint8))
    with pytest.raises(ValueError, match="11 labels for images of shape"):
        load_idx_directory(tmp_path)


def test_idx_missing_file(tmp_path):
    make_idx_dir(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="no test labels file"):
        load_idx_directory(tmp_path)


def test_fashion_mnist_found_through_environment(tmp_path, monkeypatch):
    make_idx_dir(tmp_path)
    monkeypatch.setenv("CNN_XP_FASHION_MNIST", str(tmp_path))
    assert find_fashion_mnist() == tmp_path
    (x, _), _ = load_fashion_mnist()
    assert x.shape == (12, 1, 28, 28)


def test_fashion_mnist_absent_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.delenv("CNN_XP_FASHION_MNIST", raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "nowhere")
    monkeypatch.setattr(fm, "_dpkg_location", lambda: None)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()


@pytest.mark.skipif(
    not fm.DEBIAN_DIR.is_dir(),
    reason="Debian package dataset-fashion-mnist is not installed (apt-get install dataset-fashion-mnist)",
)
def test_real_fashion_mnist_from_debian_package():
    assert fm._dpkg_location() in (fm.DEBIAN_DIR, None)
    (x, t), (xt, tt) = load_fashion_mnist(normalize=False)
    assert x.shape == (60000, 1, 28, 28) and xt.shape == (10000, 1, 28, 28)
    assert sorted(np.unique(t).tolist()) == list(range(10)) and np.bincount(tt).tolist() == [1000] * 10


# ------------------------------------------------------------------ CIFAR-10


def write_cifar(path, n, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n, dtype=np.uint8)
    pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    np.concatenate([labels[:, None], pixels], axis=1).tofile(path)
    return labels, pixels.reshape(n, 3, 32, 32)


def test_cifar10_binary(tmp_path):
    parts = [write_cifar(tmp_path / f"data_batch_{i}.bin", 4, i) for i in range(1, 3)]
    _tl, tx = write_cifar(tmp_path / "test_batch.bin", 3, 9)
    (x, t), (xt, _tt) = load_cifar10(tmp_path, normalize=False)
    assert x.shape == (8, 3, 32, 32) and xt.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(x[:4], parts[0][1])
    np.testing.assert_array_equal(t[4:], parts[1][0])
    np.testing.assert_array_equal(xt, tx)
    (xn, _), _ = load_dataset(tmp_path)
    assert xn.dtype == np.float32 and xn.shape == (8, 3, 32, 32)


def test_cifar10_truncated_and_bad_labels(tmp_path):
    write_cifar(tmp_path / "data_batch_1.bin", 2, 0)
    write_cifar(tmp_path / "test_batch.bin", 2, 1)
    data = (tmp_path / "data_batch_1.bin").read_bytes()
    (tmp_path / "data_batch_1.bin").write_bytes(data[:-7])
    with pytest.raises(ValueError, match=r"data_batch_1\.bin: 6139 bytes is not a whole number of 3073-byte"):
        load_cifar10(tmp_path)
    (tmp_path / "data_batch_1.bin").write_bytes(bytes([12]) + data[1:])
    with pytest.raises(ValueError, match=r"data_batch_1\.bin: label 12 out of range"):
        load_cifar10(tmp_path)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")


def test_a_gzip_bomb_is_refused_while_it_inflates(tmp_path):
    """A small .gz whose IDX header declares 10 labels but which inflates to 256 MiB: reading
    stops one byte past the declared size, so memory stays near the declared size."""
    import tracemalloc

    path = tmp_path / "train-labels-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, 10))
        chunk = bytes(2**20)
        for _ in range(256):
            f.write(chunk)
    assert path.stat().st_size < 2**20  # a quarter of a megabyte on disk
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"header says shape \(10,\) \(10 bytes of data\) but the file holds more"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, peak


def test_the_test_split_alone_reads_no_training_file(tmp_path):
    from cnn_xp.datasets import load_test_split

    arrays = make_idx_dir(tmp_path, gz=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"garbage")  # never opened
    x, t = load_test_split(tmp_path, normalize=False)
    np.testing.assert_array_equal(x[:, 0], arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(t, arrays["t10k-labels-idx1-ubyte"])
    xm, tm = load_test_split("MNIST")
    assert xm.shape == (10000, 1, 28, 28) and xm.dtype == np.float32 and tm.shape == (10000,)
