"""Tests for spikesim.data.mnist: IDX/CSV readers, folder lookup, stratified subsets, real files."""
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

from spikesim.data import mnist as M
from spikesim.errors import DataError

_CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C,
          np.float32: 0x0D, np.float64: 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr)
    code = _CODES[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "i" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, arr, gz=False, extra=b"", cut=0) -> Path:
    data = idx_bytes(arr) + extra
    if cut:
        data = data[:-cut]
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def make_set(n=30, seed=0, h=28, w=28):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    return images, labels


# ------------------------------------------------------------------ IDX round trips
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_uint8_images_and_labels(tmp_path, gz):
    images, labels = make_set()
    pi = write_idx(tmp_path / "img.bin", images, gz=gz)  # suffix says nothing
    pl = write_idx(tmp_path / "lab.bin", labels, gz=gz)
    out = M.read_idx(pi)
    assert out.dtype == np.uint8 and out.shape == images.shape
    np.testing.assert_array_equal(out, images)
    np.testing.assert_array_equal(M.read_idx(pl), labels)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_other_dtypes(tmp_path, gz, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        arr = arr * dtype(0.37)
    out = M.read_idx(write_idx(tmp_path / "a.idx", arr, gz=gz))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_gzip_detected_by_magic_not_suffix(tmp_path):
    _, labels = make_set()
    p = write_idx(tmp_path / "labels.gz", labels, gz=False)  # raw file with .gz name
    np.testing.assert_array_equal(M.read_idx(p), labels)


def test_load_idx_pair(tmp_path):
    images, labels = make_set(n=25)
    x, y = M.load_idx_pair(write_idx(tmp_path / "i", images, gz=True),
                           write_idx(tmp_path / "l", labels))
    assert x.dtype == np.uint8 and x.shape == (25, 28, 28)
    assert y.dtype == np.int64 and y.shape == (25,)
    np.testing.assert_array_equal(y, labels)


# ------------------------------------------------------------------ corrupt IDX
def _raises_naming(path, fn=M.read_idx, match=None):
    with pytest.raises(DataError) as ei:
        fn(path)
    assert str(path) in str(ei.value) or Path(path).name in str(ei.value)
    if match:
        assert match in str(ei.value)
    return str(ei.value)


def test_missing_file(tmp_path):
    _raises_naming(tmp_path / "nope.idx", match="not found")


@pytest.mark.parametrize("gz", [False, True])
def test_bad_magic(tmp_path, gz):
    p = tmp_path / "bad"
    data = b"\x12\x34\x08\x01" + struct.pack(">i", 3) + b"abc"
    p.write_bytes(gzip.compress(data) if gz else data)
    msg = _raises_naming(p, match="magic")
    assert "00 00" in msg and "12 34" in msg


def test_unknown_type_code(tmp_path):
    p = tmp_path / "bad"
    p.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">i", 1) + b"a")
    _raises_naming(p, match="type code")


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_payload(tmp_path, gz):
    images, _ = make_set(n=3)
    p = write_idx(tmp_path / "trunc", images, gz=gz, cut=5)
    msg = _raises_naming(p, match="truncated")
    assert str(3 * 784) in msg and str(3 * 784 - 5) in msg


def test_truncated_header(tmp_path):
    p = tmp_path / "hdr"
    p.write_bytes(b"\x00\x00\x08\x03" + struct.pack(">i", 3))
    _raises_naming(p, match="truncated")


@pytest.mark.parametrize("gz", [False, True])
def test_trailing_bytes(tmp_path, gz):
    _, labels = make_set(n=10)
    p = write_idx(tmp_path / "trail", labels, gz=gz, extra=b"\x00\x01")
    msg = _raises_naming(p, match="trailing")
    assert "10" in msg and "12" in msg


def test_gzip_garbage(tmp_path):
    p = tmp_path / "garbage.gz"
    p.write_bytes(b"\x1f\x8b\x08\x00" + b"not really deflate data" * 3)
    _raises_naming(p, match="gzip")


def test_gzip_truncated_stream(tmp_path):
    images, _ = make_set(n=5)
    blob = gzip.compress(idx_bytes(images))
    p = tmp_path / "cut.gz"
    p.write_bytes(blob[: len(blob) // 2])
    _raises_naming(p, match="gzip")


def test_pair_count_mismatch(tmp_path):
    images, labels = make_set(n=20)
    pi = write_idx(tmp_path / "imgs", images)
    pl = write_idx(tmp_path / "labs", labels[:15])
    with pytest.raises(DataError) as ei:
        M.load_idx_pair(pi, pl)
    msg = str(ei.value)
    assert "imgs" in msg and "labs" in msg and "20" in msg and "15" in msg


def test_pair_labels_out_of_range(tmp_path):
    images, labels = make_set(n=10)
    labels[3] = 12
    with pytest.raises(DataError, match="out of range"):
        M.load_idx_pair(write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels))


def test_pair_swapped_files(tmp_path):
    images, labels = make_set(n=10)
    pi, pl = write_idx(tmp_path / "i", images), write_idx(tmp_path / "l", labels)
    with pytest.raises(DataError, match="expected uint8 images"):
        M.load_idx_pair(pl, pi)


# ------------------------------------------------------------------ CSV
def write_csv(path, images, labels, header=False, gz=False):
    rows = []
    if header:
        rows.append(",".join([f"pixel{i}" for i in range(images[0].size)] + ["label"]))
    for im, lab in zip(images, labels):
        rows.append(",".join(str(int(v)) for v in im.ravel()) + f",{int(lab)}")
    text = ("\n".join(rows) + "\n").encode()
    path.write_bytes(gzip.compress(text) if gz else text)
    return path


@pytest.mark.parametrize("header", [False, True])
@pytest.mark.parametrize("gz", [False, True])
def test_csv_roundtrip(tmp_path, header, gz):
    images, labels = make_set(n=7)
    p = write_csv(tmp_path / "m.csv", images, labels, header=header, gz=gz)
    x, y = M.load_mnist_csv(p)
    assert x.dtype == np.uint8 and x.shape == (7, 28, 28)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x, images)
    np.testing.assert_array_equal(y, labels)


def test_csv_wrong_column_count(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(",".join(["0"] * 785) + "\n" + ",".join(["0"] * 784) + "\n")
    msg = _raises_naming(p, fn=M.load_mnist_csv, match="column")
    assert "785" in msg and "784" in msg and "row 2" in msg


@pytest.mark.parametrize("bad", ["256", "-1", "3.5"])
def test_csv_pixel_out_of_range(tmp_path, bad):
    p = tmp_path / "bad.csv"
    vals = ["0"] * 785
    vals[100] = bad
    p.write_text(",".join(vals) + "\n")
    _raises_naming(p, fn=M.load_mnist_csv, match="0..255")


def test_csv_label_out_of_range(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text(",".join(["0"] * 784 + ["10"]) + "\n")
    _raises_naming(p, fn=M.load_mnist_csv, match="labels out of range")


def test_csv_non_numeric_body(tmp_path):
    p = tmp_path / "bad.csv"
    vals = ["0"] * 785
    p.write_text(",".join(vals) + "\n" + ",".join(["x"] + vals[1:]) + "\n")
    _raises_naming(p, fn=M.load_mnist_csv)


# ------------------------------------------------------------------ folders and loaders
def _fake_mnist_dir(root: Path, n_test=40, train_csv_n=50, train_idx=False):
    root.mkdir(parents=True, exist_ok=True)
    xi, yi = make_set(n=n_test, seed=1)
    write_idx(root / "t10k-images-idx3-ubyte.gz", xi, gz=True)
    write_idx(root / "t10k-labels-idx1-ubyte.gz", yi, gz=True)
    xc, yc = make_set(n=train_csv_n, seed=2)
    order = np.argsort(yc, kind="stable")  # sorted by class, like the real subset
    write_csv(root / "mnist_5k_train.csv.gz", xc[order], yc[order], gz=True)
    if train_idx:
        xt, yt = make_set(n=60, seed=3)
        write_idx(root / "train-images-idx3-ubyte", xt)  # raw, not gz
        write_idx(root / "train-labels-idx1-ubyte", yt)
    return root


def test_find_mnist_dir_variants(tmp_path, monkeypatch):
    d = _fake_mnist_dir(tmp_path / "data" / "mnist")
    assert M.find_mnist_dir(tmp_path / "data") == d
    assert M.find_mnist_dir(d) == d
    monkeypatch.setenv("SPIKESIM_DATA", str(tmp_path / "data"))
    assert M.find_mnist_dir() == d
    with pytest.raises(DataError, match="SPIKESIM_DATA"):
        M.find_mnist_dir(tmp_path / "empty")


def test_load_mnist_splits(tmp_path):
    d = _fake_mnist_dir(tmp_path / "m")
    x, y = M.load_mnist(d, "test")
    assert x.shape == (40, 28, 28) and y.shape == (40,)
    x, y = M.load_mnist(d, "train")  # CSV fallback
    assert x.shape == (50, 28, 28)
    assert np.all(np.diff(y) >= 0)  # file order kept without limit
    with pytest.raises(ValueError):
        M.load_mnist(d, "validation")


def test_load_mnist_prefers_train_idx(tmp_path):
    d = _fake_mnist_dir(tmp_path / "m", train_idx=True)
    x, y = M.load_mnist(d, "train")
    assert x.shape == (60, 28, 28)


def test_load_mnist_limit_stratified_and_seeded(tmp_path):
    d = _fake_mnist_dir(tmp_path / "m", train_csv_n=200)
    x, y = M.load_mnist(d, "train", limit=50)
    assert len(y) == 50
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [5] * 10)
    assert len(set(y[:10].tolist())) == 10  # interleaved, not one class first
    x2, y2 = M.load_mnist(d, "train", limit=50)
    np.testing.assert_array_equal(x, x2)
    x3, _ = M.load_mnist(d, "train", limit=50, shuffle_seed=1)
    assert not np.array_equal(x, x3)
    # prefixes are nested
    x4, _ = M.load_mnist(d, "train", limit=20)
    np.testing.assert_array_equal(x4, x[:20])
    with pytest.raises(ValueError):
        M.load_mnist(d, "train", limit=0)


def test_stratified_order_uneven_classes():
    labels = np.repeat(np.arange(3), [60, 30, 10])
    order = M.stratified_order(labels, seed=5)
    assert sorted(order.tolist()) == list(range(100))
    counts = np.bincount(labels[order[:50]], minlength=3)
    assert np.all(np.abs(counts - np.array([30, 15, 5])) <= 1)


def test_missing_split_message(tmp_path):
    d = tmp_path / "only_csv"
    d.mkdir()
    xc, yc = make_set(n=10)
    write_csv(d / "mnist_5k_train.csv", xc, yc)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        M.load_mnist(d, "test")


def test_fashion_missing_message(tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        M.load_fashion_mnist(tmp_path / "nothing")


def test_fashion_loader_on_fake_folder(tmp_path):
    sub = tmp_path / "fashion" / "data"
    sub.mkdir(parents=True)
    x, y = make_set(n=20)
    write_idx(sub / "t10k-images-idx3-ubyte", x)  # raw files one level down
    write_idx(sub / "t10k-labels-idx1-ubyte", y)
    xi, yi = M.load_fashion_mnist(tmp_path / "fashion", split="test")
    np.testing.assert_array_equal(xi, x)
    with pytest.raises(DataError, match="train"):
        M.load_fashion_mnist(tmp_path / "fashion", split="train")


# ------------------------------------------------------------------ real files
def _real_mnist_dir():
    candidates = []
    if os.environ.get("SPIKESIM_DATA"):
        candidates.append(Path(os.environ["SPIKESIM_DATA"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        for d in (c, c / "mnist"):
            if ((d / "t10k-images-idx3-ubyte.gz").is_file()
                    and (d / "mnist_5k_train.csv.gz").is_file()):
                return d
    return None


REAL = _real_mnist_dir()
needs_real = pytest.mark.skipif(
    REAL is None, reason="real MNIST files (shared/data/mnist or $SPIKESIM_DATA) not present")


@needs_real
def test_real_test_set():
    x, y = M.load_mnist(REAL, "test")
    assert x.shape == (10000, 28, 28) and x.dtype == np.uint8
    assert y.shape == (10000,) and y.min() == 0 and y.max() == 9
    counts = np.bincount(y, minlength=10)
    assert np.all((counts > 850) & (counts < 1200))
    assert 0 < x.mean() < 255 and x.max() == 255


@needs_real
def test_real_csv_subset():
    x, y = M.load_mnist_csv(REAL / "mnist_5k_train.csv.gz")
    assert x.shape == (5000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [500] * 10)


@needs_real
def test_real_train_limit_stratified():
    if ((REAL / "train-images-idx3-ubyte.gz").exists()
            or (REAL / "train-images-idx3-ubyte").exists()):
        pytest.skip("full train IDX present; the 500-per-class check is for the CSV subset")
    x, y = M.load_mnist(REAL, "train", limit=1000)
    assert x.shape == (1000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [100] * 10)


@pytest.mark.skipif(not Path(M.FASHION_MNIST_DIR).is_dir(),
                    reason="Fashion-MNIST absent (apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist():
    x, y = M.load_fashion_mnist(split="test")
    assert x.shape == (10000, 28, 28)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [1000] * 10)
    x, y = M.load_fashion_mnist(split="train", limit=1000)
    np.testing.assert_array_equal(np.bincount(y, minlength=10), [100] * 10)
