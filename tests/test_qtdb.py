"""Tests for the QTDB loader, the download helpers and the level-crossing encoder."""

from __future__ import annotations

import functools
import http.server
import os
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from spikesim.data import download as dl
from spikesim.data import qtdb
from spikesim.errors import DataError

T, C, K = qtdb.N_STEPS, qtdb.N_CHANNELS, qtdb.N_CLASSES


# ---------------------------------------------------------------- fixtures


def make_fake(n, seed=0, unlabelled_frac=0.1):
    """Arrays in the published layout, with the -1 artifact and unlabelled steps."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, T, C)) < 0.1).astype(np.int16)
    x[:, T - 1, 0] = -1
    cls = rng.integers(0, K, size=(n, T))
    y = np.zeros((n, T, K), dtype=np.uint8)
    np.put_along_axis(y, cls[..., None], 1, axis=-1)
    unl = rng.random((n, T)) < unlabelled_frac
    unl[:, 0] = True  # at least one unlabelled step per sequence
    y[unl] = 0
    t = np.tile(np.arange(T, dtype=np.uint16), (n, 1))
    max_i = np.full((n, 1), T, dtype=np.uint16)
    return dict(x=x, y=y, t=t, max_i=max_i), cls, unl


@pytest.fixture
def fake_dir(tmp_path):
    folder = tmp_path / "qtdb"
    folder.mkdir()
    train, cls_tr, unl_tr = make_fake(7, seed=1)
    test, cls_te, unl_te = make_fake(3, seed=2)
    scipy.io.savemat(folder / "QTDB_train.mat", train)
    scipy.io.savemat(folder / "QTDB_test.mat", test)
    return folder, (train, cls_tr, unl_tr), (test, cls_te, unl_te)


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize("split,idx", [("train", 1), ("test", 2)])
def test_load_class0(fake_dir, split, idx):
    folder, *sets = fake_dir
    raw, cls, unl = sets[idx - 1]
    ds = qtdb.load_qtdb(folder, split=split)
    n = raw["x"].shape[0]
    assert len(ds) == n
    assert ds.x.shape == (n, T, C) and ds.x.dtype == np.float32
    assert set(np.unique(ds.x)) <= {0.0, 1.0}
    assert np.all(ds.x[:, T - 1, 0] == 0)  # -1 artifact clipped
    np.testing.assert_array_equal(ds.x, np.clip(raw["x"], 0, 1))
    assert ds.labels.dtype == np.int64 and ds.labels.shape == (n, T)
    np.testing.assert_array_equal(ds.labelled, ~unl)
    np.testing.assert_array_equal(ds.labels[~unl], cls[~unl])
    assert np.all(ds.labels[unl] == 0)
    np.testing.assert_array_equal(ds.lengths, np.full(n, T))
    assert ds.path == folder / qtdb.QTDB_FILES[split]
    assert 0 < ds.unlabelled_fraction < 0.3


def test_load_mask_policy_and_dtype(fake_dir):
    folder, (raw, cls, unl), _ = fake_dir
    ds = qtdb.load_qtdb(folder, unlabelled="mask", dtype=np.uint8)
    assert ds.x.dtype == np.uint8
    assert np.all(ds.labels[unl] == -1)
    np.testing.assert_array_equal(ds.labels[~unl], cls[~unl])
    assert ds.labels.min() == -1 and ds.labels.max() <= K - 1


def test_find_dir_parent_or_subfolder(fake_dir):
    folder, *_ = fake_dir
    assert qtdb.find_qtdb_dir(folder) == folder
    assert qtdb.find_qtdb_dir(folder.parent) == folder
    assert len(qtdb.load_qtdb(folder.parent, split="test")) == 3


def test_default_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SPIKESIM_DATA", str(tmp_path))
    assert dl.default_data_dir() == tmp_path
    monkeypatch.delenv("SPIKESIM_DATA")
    assert dl.default_data_dir() == Path.home() / ".cache" / "spikesim"


def test_bad_arguments(fake_dir):
    folder, *_ = fake_dir
    with pytest.raises(ValueError):
        qtdb.load_qtdb(folder, split="val")
    with pytest.raises(ValueError):
        qtdb.load_qtdb(folder, unlabelled="drop")


# ---------------------------------------------------------------- broken files


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="QTDB_train.mat") as ei:
        qtdb.load_qtdb(tmp_path)
    assert "--download" in str(ei.value)


def test_missing_key_y(tmp_path):
    raw, _, _ = make_fake(2)
    del raw["y"]
    scipy.io.savemat(tmp_path / "QTDB_train.mat", raw)
    with pytest.raises(DataError, match=r"QTDB_train\.mat.*'y'"):
        qtdb.load_qtdb(tmp_path)


@pytest.mark.parametrize("key,shape", [("x", (2, 100, 4)), ("x", (2, T, 3)), ("y", (2, T, 5)),
                                       ("y", (3, T, 6))])
def test_wrong_shape(tmp_path, key, shape):
    raw, _, _ = make_fake(2)
    raw[key] = np.zeros(shape, dtype=raw[key].dtype)
    scipy.io.savemat(tmp_path / "QTDB_test.mat", raw)
    with pytest.raises(DataError, match="QTDB_test.mat") as ei:
        qtdb.load_qtdb(tmp_path, split="test")
    assert "expected" in str(ei.value)


def test_garbage_file(tmp_path):
    (tmp_path / "QTDB_train.mat").write_bytes(b"this is not a mat file\x00\x01" * 40)
    with pytest.raises(DataError, match="QTDB_train.mat"):
        qtdb.load_qtdb(tmp_path)


# ---------------------------------------------------------------- split


def test_train_val_split():
    tr, va = qtdb.train_val_split(618, 0.1, seed=3)
    assert len(va) == 61 and len(tr) == 557
    assert not set(tr) & set(va)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va])), np.arange(618))
    tr2, va2 = qtdb.train_val_split(618, 0.1, seed=3)
    np.testing.assert_array_equal(tr, tr2)
    np.testing.assert_array_equal(va, va2)
    _, va3 = qtdb.train_val_split(618, 0.1, seed=4)
    assert not np.array_equal(va, va3)
    with pytest.raises(ValueError):
        qtdb.train_val_split(10, 1.0)


# ---------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sha256_file(tmp_path):
    p = tmp_path / "a.bin"
    p.write_bytes(b"abc")
    assert dl.sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_fetch_ok(http_root, tmp_path):
    root, url = http_root
    (root / "f.bin").write_bytes(b"hello" * 1000)
    dest = tmp_path / "out" / "f.bin"
    got = dl.fetch(f"{url}/f.bin", dest, dl.sha256_file(root / "f.bin"))
    assert got == dest and dest.read_bytes() == b"hello" * 1000
    assert os.listdir(dest.parent) == ["f.bin"]


def test_fetch_bad_checksum(http_root, tmp_path):
    root, url = http_root
    (root / "f.bin").write_bytes(b"hello")
    dest = tmp_path / "out" / "f.bin"
    with pytest.raises(DataError) as ei:
        dl.fetch(f"{url}/f.bin", dest, "0" * 64)
    msg = str(ei.value)
    assert f"{url}/f.bin" in msg and "0" * 64 in msg and dl.sha256_file(root / "f.bin") in msg
    assert not dest.exists() and os.listdir(dest.parent) == []


def test_fetch_unreachable(tmp_path):
    dest = tmp_path / "f.bin"
    with pytest.raises(DataError, match="by hand") as ei:
        dl.fetch(f"http://127.0.0.1:{_closed_port()}/f.bin", dest, "0" * 64, timeout=5)
    assert str(dest) in str(ei.value)
    assert os.listdir(tmp_path) == []


def test_fetch_http_404(http_root, tmp_path):
    _, url = http_root
    with pytest.raises(DataError, match="by hand"):
        dl.fetch(f"{url}/missing.bin", tmp_path / "out" / "m.bin", "0" * 64, timeout=5)
    assert os.listdir(tmp_path / "out") == []


def _serve_fake_qtdb(root):
    raw, _, _ = make_fake(4, seed=5)
    scipy.io.savemat(root / "QTDB_train.mat", raw)
    return dl.sha256_file(root / "QTDB_train.mat")


def test_load_with_download(http_root, tmp_path, monkeypatch):
    root, url = http_root
    digest = _serve_fake_qtdb(root)
    monkeypatch.setitem(qtdb.QTDB_SHA256, "QTDB_train.mat", digest)
    data = tmp_path / "data"
    ds = qtdb.load_qtdb(data, download=True, base_url=url)
    assert len(ds) == 4 and ds.path == data / "qtdb" / "QTDB_train.mat"
    assert dl.sha256_file(ds.path) == digest
    # second call uses the local copy (server no longer needed)
    (root / "QTDB_train.mat").unlink()
    assert len(qtdb.load_qtdb(data, download=True, base_url=url)) == 4


def test_load_download_env_url_bad_checksum(http_root, tmp_path, monkeypatch):
    root, url = http_root
    _serve_fake_qtdb(root)
    monkeypatch.setitem(qtdb.QTDB_SHA256, "QTDB_train.mat", "f" * 64)
    monkeypatch.setenv("SPIKESIM_QTDB_URL", url + "/")
    data = tmp_path / "data"
    with pytest.raises(DataError, match="checksum mismatch"):
        qtdb.load_qtdb(data, download=True)
    folder = data / "qtdb"
    assert not (folder / "QTDB_train.mat").exists()
    assert list(folder.iterdir()) == []


def test_load_download_unreachable(tmp_path):
    with pytest.raises(DataError, match="by hand"):
        qtdb.load_qtdb(tmp_path, download=True, base_url=f"http://127.0.0.1:{_closed_port()}")


def test_default_urls():
    urls = qtdb.qtdb_urls()
    assert set(urls) == {"QTDB_train.mat", "QTDB_test.mat"}
    assert all(u.startswith("https://raw.githubusercontent.com/byin-cwi/Efficient-spiking-networks/")
               for v in urls.values() for u in v)


# ---------------------------------------------------------------- encoder


def test_encoder_ramps_and_flat():
    t = np.arange(100, dtype=float)
    up = qtdb.level_crossing_encode(0.05 * t)
    assert up.shape == (100, 2) and up.dtype == np.float32
    assert up[:-1, 0].all() and not up[:, 1].any() and not up[-1].any()
    down = qtdb.level_crossing_encode(-0.05 * t)
    assert down[:-1, 1].all() and not down[:, 0].any()
    assert not qtdb.level_crossing_encode(np.full(100, 3.0)).any()
    slow = qtdb.level_crossing_encode(0.01 * t)  # below the threshold
    assert not slow.any()


def test_encoder_sine_two_leads():
    t = np.arange(400)
    sig = np.stack([np.sin(2 * np.pi * t / 100), np.zeros(400)], axis=1)
    out = qtdb.level_crossing_encode(sig)
    assert out.shape == (400, 4)
    assert out[:, 0].sum() > 0 and out[:, 1].sum() > 0
    assert not out[:, 2:].any()
    assert not (out[:, 0] * out[:, 1]).any()  # never up and down at once


def test_encoder_normalise():
    t = np.arange(200)
    sig = 100.0 * np.sin(2 * np.pi * t / 100)  # large amplitude
    raw = qtdb.level_crossing_encode(sig)
    norm = qtdb.level_crossing_encode(sig, normalise=True)
    assert raw.sum() > norm.sum() > 0
    with pytest.raises(ValueError):
        qtdb.level_crossing_encode(np.zeros(3))  # shorter than the window


# ---------------------------------------------------------------- real data


def _real_dir():
    candidates = []
    if os.environ.get("SPIKESIM_DATA"):
        candidates.append(Path(os.environ["SPIKESIM_DATA"]))
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "data")
    for c in candidates:
        folder = qtdb.find_qtdb_dir(c)
        if all((folder / n).is_file() for n in qtdb.QTDB_FILES.values()):
            return folder
    return None


@pytest.mark.skipif(_real_dir() is None,
                    reason="real QTDB files not found ($SPIKESIM_DATA or ../shared/data/qtdb)")
@pytest.mark.parametrize("split,n", [("train", 618), ("test", 141)])
def test_real_qtdb(split, n):
    ds = qtdb.load_qtdb(_real_dir(), split=split)
    assert ds.x.shape == (n, T, C) and ds.labels.shape == (n, T) and ds.lengths.shape == (n,)
    assert set(np.unique(ds.x)) <= {0.0, 1.0}
    assert ds.labels.min() >= 0 and ds.labels.max() <= K - 1
    frac = 1.0 - ds.labelled.mean()
    assert 0.05 <= frac <= 0.15
    masked = qtdb.load_qtdb(_real_dir(), split=split, unlabelled="mask")
    assert np.array_equal(masked.labels == -1, ~ds.labelled)


def test_cli_eval_ecg_download(http_root, tmp_path, monkeypatch):
    """`spikesim eval ecg --download` fetches the missing test file, verifies it, evaluates."""
    from spikesim.cli import main
    from spikesim.io.checkpoint import save_checkpoint
    from spikesim.network import Network
    from spikesim.tasks import ecg
    root, url = http_root
    raw, _, _ = make_fake(3, seed=7)
    scipy.io.savemat(root / "QTDB_test.mat", raw)
    monkeypatch.setitem(qtdb.QTDB_SHA256, "QTDB_test.mat", dl.sha256_file(root / "QTDB_test.mat"))
    monkeypatch.setenv("SPIKESIM_QTDB_URL", url + "/")
    net = Network(ecg.network_config(), seed=0)
    ck = save_checkpoint(tmp_path / "m.ckpt", net.params, {"network": net.config.to_dict()})
    data, out = tmp_path / "data", tmp_path / "r.json"
    assert main(["eval", "ecg", "--checkpoint", str(ck), "--data-dir", str(data), "--download",
                 "--json", str(out)]) == 0
    assert (data / "qtdb" / "QTDB_test.mat").exists()
    import json
    assert json.loads(out.read_text())["n_samples"] == 3
    # without the file and without --download: a clear error, exit code 2
    assert main(["eval", "ecg", "--checkpoint", str(ck), "--data-dir", str(tmp_path / "none")]) == 2
