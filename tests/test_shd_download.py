"""Tests for the SHD/SSC downloader and the MD5 mode of ``fetch``, against a local HTTP server."""

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import threading

import numpy as np
import pytest

from spikesim.data import download as dl
from spikesim.data import shd_download as shd
from spikesim.errors import DataError

h5py = pytest.importorskip("h5py")


# ---------------------------------------------------------------- fixtures


def _write_fake_h5(path, n, seed):
    """A small file in the SHD/SSC layout."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i in range(n):
            k = int(rng.integers(1, 40))
            times[i] = np.sort(rng.random(k)).astype(np.float16)
            units[i] = rng.integers(0, 700, k).astype(np.uint16)
        f.create_dataset("labels", data=rng.integers(0, 20, n).astype(np.uint16))
        f.create_dataset("extra/speaker", data=rng.integers(0, 12, n).astype(np.uint16))
        f.create_dataset("extra/keys", data=np.array([f"key{i}".encode() for i in range(20)]))


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """``{name.h5: path}`` for every SHD and SSC split, written once per module."""
    folder = tmp_path_factory.mktemp("originals")
    out = {}
    for seed, (dataset, splits) in enumerate(shd.SPLITS.items()):
        for j, split in enumerate(splits):
            path = folder / f"{dataset}_{split}.h5"
            _write_fake_h5(path, n=5 + j, seed=10 * seed + j)
            out[path.name] = path
    return out


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Server:
    """What the test server holds: served folder, request log, truncated paths."""

    def __init__(self, root):
        self.root = root
        self.requests = []
        self.truncate = set()  # names served with a Content-Length larger than the body
        self.url = None

    def gz_requests(self):
        return [p for p in self.requests if p.endswith(".gz")]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, state, **kwargs):
        self.state = state
        super().__init__(*args, **kwargs)

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.state.requests.append(self.path)
        name = self.path.lstrip("/")
        if name in self.state.truncate:
            data = (self.state.root / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data) + 4096))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path, originals, monkeypatch):
    """A server on 127.0.0.1 serving every split gzipped plus a matching md5sums.txt."""
    monkeypatch.delenv(shd.URL_ENV_VAR, raising=False)
    root = tmp_path / "served"
    root.mkdir()
    lines = []
    for name, path in originals.items():
        data = gzip.compress(path.read_bytes(), mtime=0)
        (root / f"{name}.gz").write_bytes(data)
        lines.append(f"{_md5(data)}  {name}.gz")
    (root / "md5sums.txt").write_text("\n".join(lines) + "\n")
    state = _Server(root)
    handler = functools.partial(_Handler, state=state, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    # a short poll interval keeps shutdown() from adding half a second to every test
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01},
                              daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def data_dir(tmp_path):
    """A download folder apart from the served one; not created beforehand."""
    return tmp_path / "data"


def _set_list(server, text):
    (server.root / "md5sums.txt").write_text(text)


def _listing(folder):
    """Sorted names in ``folder``, or [] when it does not exist."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _same_content(a, b):
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        for key in ("labels", "extra/speaker", "extra/keys"):
            np.testing.assert_array_equal(fa[key][()], fb[key][()])
        for key in ("spikes/times", "spikes/units"):
            assert len(fa[key]) == len(fb[key])
            for x, y in zip(fa[key], fb[key]):
                assert x.dtype == y.dtype
                np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------- success


def test_download_shd(server, originals, data_dir):
    got = shd.download(data_dir, base_url=server.url)
    assert list(got) == ["train", "test"]
    for split, path in got.items():
        assert path == data_dir / f"shd_{split}.h5"
        assert path.read_bytes() == originals[path.name].read_bytes()
        _same_content(path, originals[path.name])
    # the verified .gz files were deleted after decompression; no temporary file remains
    assert _listing(data_dir) == ["shd_test.h5", "shd_train.h5"]


def test_download_ssc_subset(server, originals, data_dir):
    got = shd.download(data_dir, dataset="SSC", splits=["valid", "test", "valid"],
                       base_url=server.url.rstrip("/"))
    assert list(got) == ["valid", "test"]
    assert _listing(data_dir) == ["ssc_test.h5", "ssc_valid.h5"]
    _same_content(got["valid"], originals["ssc_valid.h5"])
    assert sorted(server.gz_requests()) == ["/ssc_test.h5.gz", "/ssc_valid.h5.gz"]
    # a single split name is accepted too
    assert list(shd.download(data_dir, "ssc", "test", base_url=server.url)) == ["test"]


def test_present_files_not_downloaded(server, data_dir):
    data_dir.mkdir()
    for split in ("train", "test"):
        (data_dir / f"shd_{split}.h5").write_bytes(b"placed by hand")
    got = shd.download(data_dir, base_url=server.url)
    assert got == {s: data_dir / f"shd_{s}.h5" for s in ("train", "test")}
    assert server.requests == []  # not even the checksum list
    assert got["train"].read_bytes() == b"placed by hand"

    (data_dir / "shd_test.h5").unlink()
    shd.download(data_dir, base_url=server.url)
    assert server.requests == ["/md5sums.txt", "/shd_test.h5.gz"]
    assert got["train"].read_bytes() == b"placed by hand"


def test_present_gz_used_without_download(server, originals, data_dir):
    data_dir.mkdir()
    shutil.copy(server.root / "shd_test.h5.gz", data_dir / "shd_test.h5.gz")
    got = shd.download(data_dir, splits="test", base_url=server.url)
    assert server.requests == ["/md5sums.txt"]
    assert got["test"].read_bytes() == originals["shd_test.h5"].read_bytes()
    assert _listing(data_dir) == ["shd_test.h5"]


def test_env_var_overrides_default(server, data_dir, monkeypatch):
    monkeypatch.setenv(shd.URL_ENV_VAR, server.url)
    assert shd.resolve_base_url() == server.url
    shd.download(data_dir, splits="train")
    assert server.requests == ["/md5sums.txt", "/shd_train.h5.gz"]
    # an explicit argument beats the variable
    monkeypatch.setenv(shd.URL_ENV_VAR, f"http://127.0.0.1:{_closed_port()}/")
    shd.download(data_dir / "b", splits="train", base_url=server.url)
    assert (data_dir / "b" / "shd_train.h5").is_file()


def test_default_base_url(monkeypatch):
    monkeypatch.delenv(shd.URL_ENV_VAR, raising=False)
    assert shd.DEFAULT_BASE_URL == "https://zenkelab.org/datasets/"
    assert shd.resolve_base_url() == shd.DEFAULT_BASE_URL
    monkeypatch.setenv(shd.URL_ENV_VAR, "  ")
    assert shd.resolve_base_url() == shd.DEFAULT_BASE_URL
    assert shd.resolve_base_url("http://mirror/x") == "http://mirror/x/"


# ---------------------------------------------------------------- failures leave nothing


def test_checksum_mismatch(server, data_dir):
    good = _md5((server.root / "shd_train.h5.gz").read_bytes())
    _set_list(server, f"{'0' * 32}  shd_train.h5.gz\n")
    with pytest.raises(DataError, match="checksum mismatch") as ei:
        shd.download(data_dir, splits="train", base_url=server.url)
    msg = str(ei.value)
    assert "shd_train.h5.gz" in msg and "md5" in msg and "0" * 32 in msg and good in msg
    assert _listing(data_dir) == []


def test_interrupted_download(server, data_dir):
    server.truncate.add("shd_test.h5.gz")
    with pytest.raises(DataError, match="connection ended") as ei:
        shd.download(data_dir, base_url=server.url, timeout=5)
    assert "shd_test.h5.gz" in str(ei.value)
    # train was finished before test failed; nothing of test remains
    assert _listing(data_dir) == ["shd_train.h5"]


@pytest.mark.parametrize("kind", ["garbage", "truncated", "bad_crc"])
def test_corrupt_gzip(server, data_dir, kind):
    gz = server.root / "shd_train.h5.gz"
    data = gz.read_bytes()
    if kind == "garbage":
        data = b"this is not gzip at all" * 100
    elif kind == "truncated":
        data = data[: len(data) // 2]
    else:  # the CRC-32 in the trailer no longer matches the data
        data = data[:-8] + bytes(8)
    gz.write_bytes(data)
    _set_list(server, f"{_md5(data)} *shd_train.h5.gz\n")
    with pytest.raises(DataError, match="could not decompress"):
        shd.download(data_dir, splits=["train"], base_url=server.url)
    assert _listing(data_dir) == []


def test_name_missing_from_list(server, data_dir):
    text = (server.root / "md5sums.txt").read_text()
    _set_list(server, "".join(ln + "\n" for ln in text.splitlines() if "shd_test" not in ln))
    with pytest.raises(DataError, match=r"no MD5 sum for shd_test\.h5\.gz"):
        shd.download(data_dir, base_url=server.url)
    assert server.gz_requests() == []  # checked before any download
    assert _listing(data_dir) == []


def test_unreachable(data_dir):
    with pytest.raises(DataError, match="checksum list"):
        shd.download(data_dir, base_url=f"http://127.0.0.1:{_closed_port()}/", timeout=5)
    assert _listing(data_dir) == []


def test_bad_names(data_dir):
    with pytest.raises(ValueError, match="shd, ssc"):
        shd.download(data_dir, dataset="mnist")
    with pytest.raises(ValueError, match="train, test"):
        shd.download(data_dir, dataset="shd", splits=["valid"])
    with pytest.raises(ValueError, match="train, valid, test"):
        shd.download(data_dir, dataset="ssc", splits="dev")
    assert shd.file_name("ssc", "valid") == "ssc_valid.h5.gz"
    assert _listing(data_dir) == []


# ---------------------------------------------------------------- checksum list


def test_read_checksums_formats(server):
    a, b, c = "a" * 32, "B" * 32, "0123456789abcdef" * 2
    _set_list(server, f"\n{a}  shd_train.h5.gz\r\n\n{b} *shd_test.h5.gz\n"
                      f"# a comment\n{c}  ./ssc_test.h5.gz  \nnot a line\n")
    assert shd.read_checksums(server.url) == {
        "shd_train.h5.gz": a, "shd_test.h5.gz": b.lower(), "ssc_test.h5.gz": c,
    }


@pytest.mark.parametrize("text", ["", "\n\n", "<html><body>Not found</body></html>",
                                  "abc  shd_train.h5.gz\n"])
def test_read_checksums_no_valid_line(server, text):
    _set_list(server, text)
    with pytest.raises(DataError, match="no line"):
        shd.read_checksums(server.url)


def test_read_checksums_conflict(server):
    _set_list(server, f"{'a' * 32}  x.gz\n{'b' * 32}  x.gz\n")
    with pytest.raises(DataError, match="two different"):
        shd.read_checksums(server.url)


def test_read_checksums_http_404(server):
    (server.root / "md5sums.txt").unlink()
    with pytest.raises(DataError, match="could not download the checksum list"):
        shd.read_checksums(server.url, timeout=5)


# ---------------------------------------------------------------- fetch in MD5 mode


def test_fetch_md5(server, data_dir):
    src = server.root / "shd_test.h5.gz"
    url = server.url + src.name
    md5 = _md5(src.read_bytes())
    assert dl.file_digest(src, "md5") == md5
    dest = data_dir / "out" / "f.gz"
    assert dl.fetch(url, dest, md5.upper(), algorithm="md5") == dest
    assert dest.read_bytes() == src.read_bytes()
    dest.unlink()
    with pytest.raises(DataError, match="expected md5 " + "0" * 32):
        dl.fetch(url, dest, "0" * 32, algorithm="md5")
    assert os.listdir(dest.parent) == []
    with pytest.raises(ValueError, match="sha256, md5"):
        dl.fetch(url, dest, md5, algorithm="sha1")
    assert server.requests == ["/shd_test.h5.gz", "/shd_test.h5.gz"]


def test_fetch_sha256_positional_truncated(server, data_dir):
    """The positional SHA-256 form still works, and a short body is an error on its own."""
    src = server.root / "shd_train.h5.gz"
    url = server.url + src.name
    dest = data_dir / "f.gz"
    assert dl.fetch(url, dest, dl.sha256_file(src), 5, False) == dest
    dest.unlink()
    server.truncate.add(src.name)
    with pytest.raises(DataError, match="connection ended after"):
        dl.fetch(url, dest, dl.sha256_file(src), 5)
    assert _listing(data_dir) == []


def test_train_command_downloads_missing_files(server, data_dir, monkeypatch, tmp_path):
    """``spikesim train shd --download`` fetches what --data-dir lacks (from the server named
    by $SPIKESIM_SHD_URL) and trains on it."""
    from spikesim.cli import main
    monkeypatch.setenv(shd.URL_ENV_VAR, server.url)
    out = tmp_path / "run"
    rc = main(["train", "shd", "--data-dir", str(data_dir), "--out", str(out), "--download",
               "--epochs", "1", "--hidden", "4,4", "--batch-size", "4", "--val-speakers", "1",
               "--quiet", "--no-plots"])
    assert rc == 0
    assert sorted(p.name for p in data_dir.iterdir()) == ["shd_test.h5", "shd_train.h5"]
    assert (out / "results.json").exists()
