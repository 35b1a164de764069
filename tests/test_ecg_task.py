"""The ECG (QTDB) task: network, official checkpoints, evaluation CLI, training and resume."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from spikesim.cli import main
from spikesim.data.qtdb import find_qtdb_dir, load_qtdb
from spikesim.errors import CheckpointError
from spikesim.io.checkpoint import save_checkpoint
from spikesim.network import Network
from spikesim.tasks import ecg

SHARED = Path(__file__).resolve().parents[2] / "shared"
REF = Path(os.environ.get("SPIKESIM_REFERENCE") or SHARED / "reference")
NMI, ICONS = REF / "ecg_nmi_0.8589.pth", REF / "ecg_icons_0.8533.pth"


def _data_dir():
    for d in (os.environ.get("SPIKESIM_DATA"), SHARED / "data"):
        if d and (find_qtdb_dir(d) / "QTDB_test.mat").is_file():
            return Path(d)
    return None


DATA = _data_dir()
need_ref = pytest.mark.skipif(not (NMI.is_file() and ICONS.is_file()),
                              reason=f"official ECG checkpoints not found in {REF}")
need_data = pytest.mark.skipif(DATA is None, reason="QTDB_test.mat not found "
                               "($SPIKESIM_DATA or ../shared/data)")


@pytest.fixture(scope="module")
def test_set():
    return load_qtdb(DATA, "test", dtype=np.float64)


def test_network_config():
    cfg = ecg.network_config(b_j0=0.1)
    hid, out = cfg.layers
    assert (cfg.n_in, hid.size, out.size) == (4, 36, 6)
    assert (hid.kind, hid.name, hid.beta, out.kind, out.name, out.beta) == \
        ("rec", "hidden", 0.0, "dense", "out", 1.8)
    assert hid.b_j0 == out.b_j0 == 0.1
    assert (cfg.loss.kind, cfg.loss.start) == ("nll_per_step", 10)
    assert hid.w_rec_init == "orthogonal" and hid.w_in_init == out.w_in_init == "xavier_uniform"
    net = Network(cfg, seed=3, dtype=np.float64)
    p = net.params
    np.testing.assert_allclose(p["hidden.W_rec"] @ p["hidden.W_rec"].T, np.eye(36), atol=1e-12)
    assert np.all(p["hidden.tau_adp"] == 7) and np.all(p["out.tau_adp"] == 100)
    assert np.all(p["hidden.tau_m"] == 20) and np.all(p["out.tau_m"] == 20)
    assert not p["hidden.b_in"].any() and not p["out.b_in"].any()
    fixed = ecg.network_config(fixed_tau_m=20.0, surrogate="gaussian")
    assert not fixed.layers[0].train_tau_m and fixed.layers[0].surrogate.name == "gaussian"


@need_ref
def test_official_mapping():
    from spikesim.io.pth import load_pth, state_dict
    sd = state_dict(load_pth(NMI))
    net = ecg.from_official(NMI, "nmi")
    assert net.config.layers[0].b_j0 == 0.1 and net.dtype == np.float64
    for off, name in [("i2h.weight", "hidden.W_in"), ("h2h.weight", "hidden.W_rec"),
                      ("h2h.bias", "hidden.b_rec"), ("h2o.weight", "out.W_in"),
                      ("tau_m_h", "hidden.tau_m"), ("tau_adp_o", "out.tau_adp")]:
        np.testing.assert_array_equal(net.params[name], sd[off].astype(np.float64))
    icons = ecg.from_official(ICONS)          # auto-detected
    assert icons.variant == "icons" and icons.config.layers[0].b_j0 == 0.01
    assert np.all(icons.params["hidden.tau_m"] == 20) and not icons.config.layers[1].train_tau_m
    assert icons.config.layers[0].surrogate.name == "gaussian"


@need_ref
def test_mismatching_checkpoint_errors(tmp_path):
    from spikesim.io.pth import load_pth, state_dict
    sd = state_dict(load_pth(NMI))
    bad = dict(sd, **{"h2o.weight": np.zeros((5, 36), np.float32)})
    with pytest.raises(CheckpointError, match=r"h2o.weight has shape \(5, 36\)"):
        ecg.from_official(bad, "nmi")
    with pytest.raises(CheckpointError, match="missing.*tau_m_h"):
        ecg.from_official({k: v for k, v in sd.items() if k != "tau_m_h"}, "nmi")
    with pytest.raises(CheckpointError, match="try --variant nmi"):
        ecg.from_official(NMI, "icons")
    with pytest.raises(CheckpointError, match="unexpected.*extra"):
        ecg.from_official(dict(sd, extra=np.zeros(3)), "nmi")
    other = REF / "shd_nmi_90.7.pth"
    if other.is_file():
        with pytest.raises(CheckpointError):
            ecg.load_network(other)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        ecg.load_network(junk)
    assert main(["eval", "ecg", "--checkpoint", str(junk), "--data-dir", str(tmp_path)]) == 2


@need_ref
@need_data
def test_nmi_checkpoint_accuracy_real_data(test_set):
    net = ecg.from_official(NMI, "nmi", dtype=np.float64)
    res, pred = ecg.evaluate_network(net, test_set.x, test_set.labels, "zeros")
    assert res["accuracy"] * 100 == pytest.approx(85.85, abs=0.05)
    assert pred.shape == (141, 1301)
    cm = np.array(res["confusion_matrix"])
    assert cm.shape == (6, 6) and cm.sum() == 141 * (1301 - 10)
    assert np.trace(cm) / cm.sum() == pytest.approx(res["accuracy"])


@need_ref
@need_data
def test_icons_checkpoint_accuracy_real_data(test_set):
    net = ecg.from_official(ICONS, "icons", dtype=np.float64)
    res, _ = ecg.evaluate_network(net, test_set.x, test_set.labels, "zeros")
    assert res["accuracy"] * 100 == pytest.approx(83.17, abs=0.05)
    res, _ = ecg.evaluate_network(net, test_set.x, test_set.labels, "random", seeds=3,
                                  variant="icons")
    assert res["accuracy"] * 100 == pytest.approx(85.55, abs=0.5)
    assert len(res["accuracies"]) == 3 and res["accuracy_std"] > 0


@need_ref
@need_data
def test_cli_eval_json_and_predictions(tmp_path):
    js, pr = tmp_path / "r.json", tmp_path / "pred.npy"
    rc = main(["eval", "ecg", "--checkpoint", str(NMI), "--data-dir", str(DATA), "--json", str(js),
               "--save-predictions", str(pr), "--init-state", "random", "--seeds", "2"])
    assert rc == 0
    r = json.loads(js.read_text())
    assert r["n_samples"] == 141 and r["checkpoint"] == str(NMI) and r["b_j0"] == 0.1
    assert 0.85 < r["accuracy"] < 0.862 and len(r["accuracies"]) == 2
    assert set(r["boundary_detection"]) >= {"tp", "fp", "fn", "tolerance_steps"}
    assert set(r["firing_rates"]) == {"hidden", "out"}
    p = np.load(pr)
    assert p.shape == (141, 1301) and np.issubdtype(p.dtype, np.integer)


@need_ref
@need_data
def test_spikesim_checkpoint_evaluates_like_the_official(tmp_path, test_set):
    net = ecg.from_official(NMI, "nmi", dtype=np.float64)
    path = tmp_path / "nmi.ckpt"
    save_checkpoint(path, net.params, {"network": net.config.to_dict()})
    net2, info = ecg.load_network(path, dtype=np.float64)
    assert info["format"] == "spikesim"
    sub = slice(0, 20)
    a, _ = ecg.evaluate_network(net, test_set.x[sub], test_set.labels[sub])
    b, _ = ecg.evaluate_network(net2, test_set.x[sub], test_set.labels[sub])
    assert a["accuracy"] == b["accuracy"]


# ---------------------------------------------------------------- training on small fake data
def _fake_qtdb(folder: Path, n_train=24, n_test=6, seed=0):
    """Small .mat files in the published layout; the class of a step is readable from the
    input (channel k fires densely in segments of class k % 4; channel 1 also for classes 4, 5),
    so a network can learn it."""
    rng = np.random.default_rng(seed)
    T = ecg.T_STEPS
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("QTDB_train.mat", n_train), ("QTDB_test.mat", n_test)):
        cls = np.repeat(rng.integers(0, 6, size=(n, T // 50 + 1)), 50, axis=1)[:, :T]
        x = np.zeros((n, T, 4), np.int16)
        for k in range(4):
            x[..., k] = (rng.random((n, T)) < np.where(cls % 4 == k, 0.5, 0.02))
        x[..., 1] |= (cls >= 4) & (rng.random((n, T)) < 0.5)
        y = np.zeros((n, T, 6), np.uint8)
        np.put_along_axis(y, cls[..., None], 1, axis=-1)
        scipy.io.savemat(folder / name, {"x": x, "y": y, "max_i": np.full((n, 1), T)})
    return folder


def test_train_loss_falls_and_resume(tmp_path):
    data = _fake_qtdb(tmp_path / "data")
    out = tmp_path / "run"
    common = ["train", "ecg", "--data-dir", str(data), "--out", str(out), "--batch-size", "8",
              "--quiet", "--seed", "1", "--val-fraction", "0.25"]
    assert main(common + ["--epochs", "2", "--no-plots"]) == 0
    h = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in h] == [1, 2]
    assert (out / "last.ckpt").is_file() and (out / "best.ckpt").is_file()
    assert ((out / "config.json").is_file()
            and json.loads((out / "config.json").read_text())["seed"] == 1)
    assert main(common + ["--epochs", "4", "--resume"]) == 0
    h2 = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in h2] == [1, 2, 3, 4]
    assert h2[:2] == h                                     # the first two epochs were not rerun
    assert h2[-1]["train_loss"] < h2[0]["train_loss"]
    r = json.loads((out / "results.json").read_text())
    assert r["epochs"] == 4 and r["resumed"] and r["seed"] == 1 and r["b_j0"] == 0.1
    assert 0 <= r["test_accuracy"] <= 1 and set(r["firing_rates"]) == {"hidden", "out"}
    assert r["config"]["network"]["layers"][0]["name"] == "hidden"
    assert (out / "test_predictions.npy").is_file()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return
    for f in ("learning_curves.png", "tau_histograms.png", "sequence.png"):
        assert (out / f).is_file()


def test_train_on_all_sequences_selects_on_training_accuracy(tmp_path):
    """--val-fraction 0: all training sequences, no validation; the model tested is the epoch
    with the best training accuracy (--select train, the default then) or the last one."""
    data = _fake_qtdb(tmp_path / "data", n_train=16, n_test=4)
    out = tmp_path / "run"
    common = ["train", "ecg", "--data-dir", str(data), "--out", str(out), "--batch-size", "8",
              "--quiet", "--seed", "2", "--val-fraction", "0", "--no-plots",
              "--init-state", "random", "--tau-min", "1"]
    assert main(common + ["--epochs", "2"]) == 0
    assert main(common + ["--epochs", "3", "--resume"]) == 0
    h = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in h] == [1, 2, 3] and all("val_acc" not in r for r in h)
    r = json.loads((out / "results.json").read_text())
    best = max(h, key=lambda rec: rec["train_acc"])
    assert r["n_train"] == 16 and r["n_val"] == 0 and r["select"] == "train"
    assert r["best_epoch"] == best["epoch"] and r["best_epoch_train_acc"] == best["train_acc"]
    assert r["best_val_acc"] is None and (out / "best_train.ckpt").is_file()
    assert not (out / "best.ckpt").exists()
    tcfg = json.loads((out / "config.json").read_text())["train"]
    assert tcfg["epochs"] == 3 and tcfg["tau_min"] == 1.0
    with pytest.warns(UserWarning, match=r"task settings differ in \['select'\]"):
        assert main(common + ["--epochs", "3", "--resume", "--select", "last"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["select"] == "last" and r["best_epoch"] == 3 and r["epochs"] == 3
    assert main(common + ["--epochs", "3", "--select", "val"]) == 2     # no validation split


def test_train_loss_falls_in_process(tmp_path):
    """Two passes of train_step on the fake data with the official settings lower the loss."""
    from spikesim.train.optim import Optimizer
    from spikesim.train.trainer import train_step
    data = load_qtdb(_fake_qtdb(tmp_path / "d", n_train=16, n_test=2), "train")
    net = Network(ecg.network_config(b_j0=0.1), seed=0)
    tc = ecg.train_config()
    opt = Optimizer(net.params, tc.lr, lr_mult=tc.lr_mult)
    losses = [train_step(net, opt, data.x, data.labels, None)[0] for _ in range(14)]
    assert losses[-1] < 0.95 * losses[0]
    assert all(b < a for a, b in zip(losses, losses[1:]))
