"""Tests for spikesim.io.checkpoint (pickle-free .npz checkpoints)."""
from __future__ import annotations

import json
import pickle
import zipfile

import numpy as np
import pytest

import spikesim
from spikesim.errors import CheckpointError
from spikesim.io.checkpoint import (
    FORMAT_VERSION,
    Checkpoint,
    is_spikesim_checkpoint,
    load_checkpoint,
    save_checkpoint,
)


def _params():
    rng = np.random.default_rng(42)
    return {
        "i2h.weight": rng.standard_normal((36, 4)).astype(np.float32),
        "i2h.bias": rng.standard_normal(36).astype(np.float32),
        "tau_m_h": rng.uniform(5, 30, 36),                      # float64
        "counts": np.arange(12, dtype=np.int64).reshape(3, 4),
        "mask": np.array([True, False, True]),
        "small": np.array([1, -2], dtype=np.int8),
        "nan_inf": np.array([np.nan, np.inf, -np.inf, -0.0], dtype=np.float32),
        "scalar": np.array(2.5),
    }


def _optim():
    rng = np.random.default_rng(7)
    return {
        "type": "adam",
        "step": 120,
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "amsgrad": False,
        "eps": None,
        "beta_power": np.float64(0.8),
        "state": {
            0: {"m": rng.standard_normal((36, 4)).astype(np.float32),
                "v": rng.random((36, 4)).astype(np.float32)},
            1: {"m": np.zeros(36, np.float32), "v": np.zeros(36, np.float32)},
            "0": {"note": "string key next to int key 0"},
        },
        "empty": {},
    }


CONFIG = {"task": "ecg", "hidden": [36], "dt": 1.0, "neuron": {"kind": "adaptive", "b_j0": 0.01},
          "nested": {"flag": True, "none": None}}


def _assert_tree_equal(a, b):
    if isinstance(a, dict):
        assert isinstance(b, dict)
        assert list(a) == list(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items()):
            assert type(ka) is type(kb) and ka == kb
            _assert_tree_equal(va, vb)
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray)
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()
    elif isinstance(a, np.generic):
        assert type(a) is type(b) and a == b
    elif isinstance(a, tuple):
        assert list(a) == b
    else:
        assert type(a) is type(b) and a == b


def test_round_trip(tmp_path):
    params, optim = _params(), _optim()
    path = tmp_path / "ckpt.npz"
    out = save_checkpoint(path, params, CONFIG, optim, epoch=17, seed=1234,
                          extra={"best_acc": 0.8589, "notes": "hello"})
    assert out == path
    ck = load_checkpoint(path)
    assert isinstance(ck, Checkpoint)
    _assert_tree_equal(params, ck.params)
    _assert_tree_equal(optim, ck.optimizer_state)
    assert ck.config == CONFIG
    assert ck.epoch == 17 and ck.seed == 1234
    assert ck.extra == {"best_acc": 0.8589, "notes": "hello"}
    assert ck.format_version == FORMAT_VERSION
    assert ck.spikesim_version == spikesim.__version__


def test_minimal_round_trip_defaults(tmp_path):
    path = tmp_path / "min.npz"
    save_checkpoint(path, {"w": np.ones(3, np.float32)}, {})
    ck = load_checkpoint(path)
    assert ck.optimizer_state is None and ck.epoch == 0 and ck.seed is None and ck.extra is None
    assert ck.config == {}
    assert ck.params["w"].dtype == np.float32


def test_loads_without_pickle_and_layout(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _params(), CONFIG, _optim(), epoch=3)
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        for name in files:
            npz[name]  # every entry loads without pickle
        meta = json.loads(npz["__spikesim__"].tobytes())
    assert {"param/i2h.weight", "param/tau_m_h", "optim/state/0/m", "optim/state/1/v",
            "optim/beta_power"} <= files
    assert meta["epoch"] == 3 and meta["config"] == CONFIG
    assert meta["params"] == list(_params())
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            assert b"\x80" not in zf.read(name)[:1]  # no pickle stream anywhere


def test_tuples_come_back_as_lists(tmp_path):
    path = tmp_path / "t.npz"
    save_checkpoint(path, {}, {"shape": (2, 3)}, {"betas": (0.9, 0.99)})
    ck = load_checkpoint(path)
    assert ck.config["shape"] == [2, 3] and ck.optimizer_state["betas"] == [0.9, 0.99]


def test_is_spikesim_checkpoint(tmp_path):
    good = tmp_path / "good.npz"
    save_checkpoint(good, _params(), CONFIG)
    assert is_spikesim_checkpoint(good)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    assert not is_spikesim_checkpoint(other)
    assert not is_spikesim_checkpoint(tmp_path / "missing.npz")
    text = tmp_path / "x.txt"
    text.write_text("hello")
    assert not is_spikesim_checkpoint(text)
    pth = tmp_path / "legacy.pth"
    pth.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    assert not is_spikesim_checkpoint(pth)


# ---- atomic write --------------------------------------------------------------
def test_atomic_write_leaves_no_temp_file(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _params(), CONFIG, epoch=1)
    save_checkpoint(path, _params(), CONFIG, epoch=2)  # overwrite
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    assert load_checkpoint(path).epoch == 2


def test_failed_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _params(), CONFIG, epoch=5)
    before = path.read_bytes()

    def broken_savez(file, *args, **kwds):
        file.write(b"PK\x03\x04 partial garbage")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {"w": np.zeros(2)}, {"new": True}, epoch=6)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path).epoch == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]


def test_interrupted_write_keeps_old_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _params(), CONFIG, epoch=5)

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, _params(), CONFIG, epoch=6)
    monkeypatch.undo()
    assert load_checkpoint(path).epoch == 5
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.npz"]


# ---- bad input / bad files --------------------------------------------------------
def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "nope.npz")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.999])
def test_truncated_file(tmp_path, fraction):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, _params(), CONFIG, _optim())
    blob = path.read_bytes()
    path.write_bytes(blob[: int(len(blob) * fraction)])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not is_spikesim_checkpoint(path)


def test_corrupted_bytes(tmp_path):
    path = tmp_path / "ckpt.npz"
    save_checkpoint(path, {"w": np.arange(1000, dtype=np.float64)}, CONFIG)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 3] ^= 0xFF  # flip a byte inside the array data
    path.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.npz"
    path.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_foreign_files_are_rejected(tmp_path):
    legacy = tmp_path / "model.pth"
    legacy.write_bytes(pickle.dumps({"a": 1}, protocol=2))
    with pytest.raises(CheckpointError):
        load_checkpoint(legacy)
    zip_pth = tmp_path / "zip.pth"
    with zipfile.ZipFile(zip_pth, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        zf.writestr("archive/version", "3\n")
    with pytest.raises(CheckpointError, match="not a spikesim checkpoint"):
        load_checkpoint(zip_pth)
    npz = tmp_path / "plain.npz"
    np.savez(npz, w=np.zeros(3))
    with pytest.raises(CheckpointError, match="not a spikesim checkpoint"):
        load_checkpoint(npz)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.zeros(3))
    with pytest.raises(CheckpointError):
        load_checkpoint(npy)


def test_newer_format_version_refused(tmp_path):
    path = tmp_path / "future.npz"
    meta = {"format": "spikesim-checkpoint", "format_version": FORMAT_VERSION + 1, "params": []}
    np.savez(path, __spikesim__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with pytest.raises(CheckpointError, match="newer"):
        load_checkpoint(path)


@pytest.mark.parametrize("kwargs", [
    {"config": {"f": object()}},
    {"params": {"w": np.array([object()], dtype=object)}},
    {"optimizer_state": {"s": {1.5: np.zeros(2)}}},
    {"optimizer_state": {"s": object()}},
    {"epoch": "3"},
    {"seed": 1.5},
])
def test_bad_input_refused(tmp_path, kwargs):
    args = {"params": {"w": np.zeros(2)}, "config": {}}
    args.update(kwargs)
    path = tmp_path / "bad.npz"
    with pytest.raises(CheckpointError):
        save_checkpoint(path, **args)
    assert list(tmp_path.iterdir()) == []
