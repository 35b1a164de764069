"""SHD: the HDF5 reader and its error messages, the official binning on hand-made events, the
official checkpoint, and the eval and train commands."""
import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from spikesim.cli import main
from spikesim.data.shd import BINNINGS, Binning, SHDDataset, find_file, load_events
from spikesim.errors import CheckpointError, DataError
from spikesim.tasks import shd

SHARED = Path(__file__).resolve().parents[2] / "shared"
SYNTH = SHARED / "data" / "shd_synth"
PTH = SHARED / "reference" / "shd_nmi_90.7.pth"
needs_synth = pytest.mark.skipif(not (SYNTH / "shd_train.h5").exists(),
                                 reason=f"SHD-layout data not found in {SYNTH}")
needs_pth = pytest.mark.skipif(not PTH.exists(), reason=f"official checkpoint {PTH} not found")


def write_shd(path, times, units, labels, speakers=None, keys=None, skip=(), time_dtype=np.float16):
    """A file in the SHD layout; ``skip``: datasets left out."""
    import h5py
    with h5py.File(path, "w") as f:
        n = len(times)
        if "spikes/times" not in skip:
            t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(time_dtype))
            for i, a in enumerate(times):
                t[i] = np.asarray(a, time_dtype)
        if "spikes/units" not in skip:
            u = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
            for i, a in enumerate(units):
                u[i] = np.asarray(a, np.uint16)
        if "labels" not in skip:
            f["labels"] = np.asarray(labels, np.uint16)
        if speakers is not None:
            f["extra/speaker"] = np.asarray(speakers, np.uint16)
        f["extra/keys"] = np.array([k.encode() for k in (keys or [str(i) for i in range(20)])])
    return Path(path)


def official_binning(times, units, dt=4e-3):
    """The official preprocessing's loop, as written there (the independent reference)."""
    img = []
    N = int(1 / dt)
    for i in range(N):
        idxs = np.argwhere(times <= i * dt).flatten()
        vals = units[idxs]
        vals = vals[vals > 0]
        vector = np.zeros(700)
        vector[700 - vals] = 1
        times = np.delete(times, idxs)
        units = np.delete(units, idxs)
        img.append(vector)
    return np.array(img)


# ---------------------------------------------------------------------------- binning
def test_official_binning_edge_cases(tmp_path):
    dt = 4e-3
    edge = float(np.float16(3 * dt))                     # bin 3's upper edge, as float16
    above = float(np.nextafter(np.float16(edge), np.float16(1)))
    times = [0.0, edge, above, float(np.float16(0.996)), 0.998, 1.0, 0.5, 0.5, 0.5]
    units = [5, 6, 7, 8, 9, 10, 0, 699, 1]
    p = write_shd(tmp_path / "e.h5", [times], [units], [3], [0])
    ds = SHDDataset(load_events(p), "official", np.float64)
    x, y = ds.get([0])
    want = np.zeros((250, 700))
    want[0, 695] = 1            # t = 0 -> bin 0; unit 5 -> channel 695
    want[3, 694] = 1            # exactly on the edge 3 dt -> bin 3
    want[4, 693] = 1            # just above it -> bin 4
    want[249, 692] = 1          # t = 0.996 (float16) -> the last bin
    want[125, 1] = 1            # unit 699 -> channel 1 (t = 0.5 = 125 dt exactly)
    want[125, 699] = 1          # unit 1 -> channel 699; unit 0 is dropped; t > 0.996 dropped
    np.testing.assert_array_equal(x[0], want)
    assert y.tolist() == [3]
    np.testing.assert_array_equal(official_binning(np.asarray(times, np.float16),
                                                   np.asarray(units)), want)


def test_binning_options(tmp_path):
    p = write_shd(tmp_path / "o.h5", [[0.001, 0.002, 0.003, 0.011]], [[10, 10, 11, 10]], [0], [0])
    ev = load_events(p)
    counts = SHDDataset(ev, Binning(counts=True), np.float32).get([0])[0][0]
    assert counts[1, 690] == 2 and counts[1, 689] == 1 and counts[3, 690] == 1
    b = Binning(dt=1e-2, n_bins=3, counts=True, channels="unit", pool=10)
    x = SHDDataset(ev, b, np.float32).get([0])[0][0]
    assert x.shape == (3, 70) and x[1, 1] == 3 and x[2, 1] == 1 and x.sum() == 4
    with pytest.raises(ValueError, match="channels"):
        Binning(channels="reverse")
    with pytest.raises(ValueError, match="dt"):
        Binning(dt=0)
    assert set(BINNINGS) >= {"official", "counts"}


@needs_synth
def test_dataset_equals_the_official_loop_on_real_layout_files():
    import h5py
    ev = load_events(SYNTH / "shd_test.h5")
    ds = SHDDataset(ev, "official", np.float32)
    with h5py.File(SYNTH / "shd_test.h5") as f:
        for i in (0, 17, 300):
            want = official_binning(f["spikes/times"][i], f["spikes/units"][i].astype(np.int64))
            np.testing.assert_array_equal(ds.get([i])[0][0], want)
    x, y = ds.get([3, 1])
    assert x.shape == (2, 250, 700) and x.dtype == np.float32
    assert y.tolist() == ev.labels[[3, 1]].tolist()
    again = SHDDataset(ev, "official", np.float32, reuse=True)
    for idx in ([0, 1, 2], [3, 4, 5], [9], [9]):
        np.testing.assert_array_equal(again.get(idx)[0], ds.get(idx)[0])   # refilled buffer
    import spikesim.data.shd as shd_data
    chunked = pytest.MonkeyPatch.context()
    with chunked as m:                      # binned in many chunks: the same cells
        m.setattr(shd_data, "_CHUNK", 1000)
        small = SHDDataset(ev, "official", np.float32)
    np.testing.assert_array_equal(small._cells, ds._cells)
    np.testing.assert_array_equal(small._offsets, ds._offsets)
    sub = ds.subset([5, 6])
    np.testing.assert_array_equal(sub.get([1])[0], ds.get([6])[0])
    assert sub.speakers.tolist() == ev.speakers[[5, 6]].tolist()


def test_augmentation_moves_spikes_and_is_reproducible(tmp_path):
    from spikesim.data.shd import Augment
    times = [np.linspace(0.1, 0.5, 40)] * 8
    units = [np.arange(300, 340)] * 8
    ev = load_events(write_shd(tmp_path / "a.h5", times, units, [0] * 8, [0] * 8))
    plain = SHDDataset(ev, "official", np.float32)
    aug = plain.subset(np.arange(8), Augment(shift=5, channel_shift=7, stretch=0.1, seed=1))
    x0, _ = plain.get(np.arange(8))
    x1, y1 = aug.get(np.arange(8))
    x2, _ = aug.get(np.arange(8))
    np.testing.assert_array_equal(x1, x2)                      # same batch, same draw
    assert not np.array_equal(x0, x1) and y1.tolist() == [0] * 8
    assert np.all(x1.sum((1, 2)) <= x0.sum((1, 2))) and np.all(x1.sum((1, 2)) > 30)
    assert plain.subset([0]).augment is None and not Augment()


# ---------------------------------------------------------------------------- files and errors
def test_compressed_forms_read_the_same(tmp_path):
    p = write_shd(tmp_path / "shd_train.h5", [[0.1, 0.2], [0.3]], [[1, 2], [3]], [0, 1], [0, 1])
    with open(p, "rb") as src, gzip.open(tmp_path / "g.h5.gz", "wb") as dst:
        dst.write(src.read())
    with zipfile.ZipFile(tmp_path / "z.h5.zip", "w") as z:
        z.write(p, "shd_train.h5")
    a = load_events(p)
    for other in (tmp_path / "g.h5.gz", tmp_path / "z.h5.zip"):
        b = load_events(other)
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.units, b.units)
        np.testing.assert_array_equal(a.offsets, b.offsets)
    p.unlink()
    (tmp_path / "z.h5.zip").rename(tmp_path / "shd_train.h5.zip")
    assert find_file(tmp_path, "shd_train").name == "shd_train.h5.zip"
    with pytest.raises(DataError, match="not found"):
        find_file(tmp_path, "shd_test")


@pytest.mark.parametrize("fault, message", [
    ("missing", "spikes/units' is missing"),
    ("lengths", "sample 1 has 2 spike times but 1 units"),
    ("unit", "sample 1 has unit 700"),
    ("negative", "sample 0 has spike time -0.09"),
    ("nan", "sample 1 has spike time nan"),
    ("label", "sample 1 has label 20"),
])
def test_malformed_files_name_file_sample_and_fault(tmp_path, fault, message):
    times, units, labels, skip = [[-0.1 if fault == "negative" else 0.1], [0.2, 0.3]], \
        [[1], [2, 3]], [0, 1], ()
    if fault == "missing":
        skip = ("spikes/units",)
    elif fault == "lengths":
        units = [[1], [2]]
    elif fault == "unit":
        units = [[1], [2, 700]]
    elif fault == "nan":
        times = [[0.1], [0.2, float("nan")]]
    elif fault == "label":
        labels = [0, 20]
    p = write_shd(tmp_path / "bad.h5", times, units, labels, skip=skip)
    with pytest.raises(DataError, match=message) as e:
        load_events(p)
    assert str(p) in str(e.value)


def test_not_an_hdf5_file(tmp_path):
    p = tmp_path / "shd_test.h5"
    p.write_bytes(b"not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5"):
        load_events(p)
    with pytest.raises(DataError, match="does not exist"):
        load_events(tmp_path / "nothing.h5")


def test_speaker_split_holds_out_whole_speakers():
    speakers = np.repeat(np.arange(6), 5)
    tr, va, held = shd.speaker_split(speakers, 2, seed=3)
    assert len(held) == 2 and set(speakers[va]) == set(held)
    assert not set(speakers[tr]) & set(held) and len(tr) + len(va) == 30
    with pytest.raises(ValueError, match="val-speakers"):
        shd.speaker_split(speakers, 6, 0)


# ---------------------------------------------------------------------------- official checkpoint
@needs_pth
def test_official_checkpoint_output_is_pinned():
    """The official model, float64, deterministic initial state, on a fixed input: its summed
    readout and loss are pinned (computed once; a change of any equation, the mapping or the
    loss changes them)."""
    net, meta = shd.from_official(PTH, dtype=np.float64)
    cfg = net.config
    assert [l.size for l in cfg.layers] == [128, 128, 20] and cfg.n_in == 700
    assert cfg.layers[0].b_j0 == 0.01 and cfg.loss.start == 11
    np.testing.assert_array_equal(net.params["h1.b_in"], net.params["h1.b_rec"])
    x = (np.random.default_rng(0).random((2, 250, 700)) < 0.02).astype(np.float64)
    trace = net.forward(x)
    res = net.loss(trace, np.array([3, 11]))
    np.testing.assert_allclose(res.logits, PINNED_LOGITS, rtol=1e-10, atol=1e-12)
    assert res.loss == pytest.approx(PINNED_LOSS, rel=1e-10)
    np.testing.assert_allclose(trace.firing_rates()[:2], PINNED_RATES, rtol=1e-12)


def test_wrong_checkpoint_is_refused(tmp_path):
    ecg = SHARED / "reference" / "ecg_nmi_0.8589.pth"
    if not ecg.exists():
        pytest.skip(f"{ecg} not found")
    with pytest.raises(CheckpointError, match="not an official SHD model"):
        shd.from_official(ecg)
    bad = tmp_path / "x.pth"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        shd.load_model(bad)


# ---------------------------------------------------------------------------- commands
def _small_files(tmp_path, n=48, speakers=6):
    rng = np.random.default_rng(0)
    times, units, labels, spk = [], [], [], []
    for i in range(n):
        label = i % 4
        k = rng.integers(50, 150)
        t = np.sort(rng.random(k) * 0.9)
        u = (label * 150 + rng.integers(1, 120, k)).astype(np.uint16)
        times.append(t)
        units.append(u)
        labels.append(label)
        spk.append(i % speakers)
    keys = ["a", "b", "c", "d"]
    write_shd(tmp_path / "shd_train.h5", times, units, labels, spk, keys)
    write_shd(tmp_path / "shd_test.h5", times[:16], units[:16], labels[:16],
              [7] * 8 + spk[8:16], keys)
    return tmp_path


@needs_pth
def test_eval_command_prints_accuracy_confusion_and_rates(tmp_path, capsys):
    d = _small_files(tmp_path)
    out = tmp_path / "r.json"
    rc = main(["eval", "shd", "--checkpoint", str(PTH), "--data-dir", str(d), "--quiet",
               "--dtype", "float64", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "confusion matrix" in text and "firing rates: h1" in text
    assert "unseen speakers" in text
    rec = json.loads(out.read_text())
    assert len(rec["predictions"]) == 16 and len(rec["confusion_matrix"]) == 20


def test_train_command_runs_resumes_and_reports(tmp_path, capsys):
    d = _small_files(tmp_path)
    out = tmp_path / "run"
    args = ["train", "shd", "--data-dir", str(d), "--out", str(out), "--epochs", "2",
            "--hidden", "12,10", "--batch-size", "16", "--quiet", "--val-speakers", "2"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["epochs"] == 2 and res["n_val"] == 16 and len(res["val_speakers"]) == 2
    assert res["test_accuracy_unseen_speakers"] is not None and res["n_test_unseen"] == 8
    assert res["samples_per_second"] > 0 and res["batch_build_seconds_this_run"] > 0
    assert main(args[:7] + ["4"] + args[8:] + ["--resume"]) == 0
    assert len(json.loads((out / "history.json").read_text())) == 4
    assert "test accuracy" in capsys.readouterr().out
    assert main(["train", "shd", "--data-dir", str(tmp_path / "none"), "--out",
                 str(tmp_path / "x")]) == 2


# computed once with spikesim at the commit that added this test (float64, zeros state)
PINNED_LOGITS = [
    [9.176345749902206, 1.5292705275220217, 9.207478173598155, 4.510461298383246,
     2.809806884163538, 3.8717977286248075, 30.614191077584834, 9.871704695227034,
     17.602923823387304, 1.5455052574006052, 12.415112760874091, 15.916624790005429,
     19.433352007793502, 5.077495690794524, 10.692454637670352, 14.270436134659837,
     32.20732386559411, 12.690047254970198, 21.58020741649602, 3.9774602253481883],
    [9.646298844156636, 1.5313978108096846, 8.6152268877261, 4.352277764786331,
     2.6598453619511067, 3.7995833645832864, 32.92585436743024, 9.89264166969057,
     16.656948723963456, 1.4428041816822448, 11.941079369888453, 16.102842671886748,
     18.644071224079557, 4.878808826285974, 10.29906482342352, 13.887885714628819,
     33.39569204770134, 13.280753831058979, 20.75780550428611, 4.289117009980859]]
PINNED_LOSS = 22.830183232045215
PINNED_RATES = [0.136125, 0.041671875]


def test_ssc_files_train_with_35_classes(tmp_path):
    """SSC has the SHD layout with 35 classes: ``train ssc`` reads ssc_*.h5 and sizes the
    output layer from the files."""
    rng = np.random.default_rng(1)
    keys = [f"w{i}" for i in range(35)]
    for split, n in (("train", 40), ("test", 10)):
        times = [np.sort(rng.random(30)) for _ in range(n)]
        units = [rng.integers(1, 700, 30) for _ in range(n)]
        write_shd(tmp_path / f"ssc_{split}.h5", times, units, rng.integers(0, 35, n),
                  rng.integers(0, 5, n), keys)
    out = tmp_path / "run"
    assert main(["train", "ssc", "--data-dir", str(tmp_path), "--out",
                 str(out), "--epochs", "1", "--hidden", "6,5", "--quiet", "--no-plots"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["task"] == "ssc" and res["config"]["network"]["layers"][-1]["size"] == 35
