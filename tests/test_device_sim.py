"""``--device cuda`` end to end, in the CUDA simulator: the command line trains every task
(demo, ecg, smnist, psmnist, shd) and evaluates on the CUDA backend, ``gradcheck --device cuda``
passes, evaluation on the official checkpoints gives the CPU's predictions, parameters are
uploaded only when they change, reused work arrays give fresh results, and
``validation/gpu_check.py --tiny`` runs.

Runs only in a process with NUMBA_ENABLE_CUDASIM=1 (set before numba is imported) and
SPIKESIM_CUDASIM_HOST_PRODUCTS=1 (the products in NumPy: the simulator runs a Python thread per
element of a product; tests/test_cuda_sim.py runs those kernels): tests/test_device.py starts
one. By hand: ``NUMBA_ENABLE_CUDASIM=1 SPIKESIM_CUDASIM_HOST_PRODUCTS=1 python3 -m pytest
tests/test_device_sim.py``. Sizes are tiny: a sample of a task costs seconds here.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("runs in the CUDA simulator only (NUMBA_ENABLE_CUDASIM=1 before numba is "
                "imported); tests/test_device.py runs it in a subprocess",
                allow_module_level=True)
pytest.importorskip("numba.cuda")

from spikesim.cli import main  # noqa: E402
from spikesim.network import Network  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
DATA = Path(os.environ.get("SPIKESIM_DATA") or SHARED / "data")
REF = Path(os.environ.get("SPIKESIM_REFERENCE") or SHARED / "reference")


def need(*paths):
    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")


def test_train_demo_on_cuda(tmp_path):
    out = tmp_path / "run"
    rc = main(["train", "demo", "--device", "cuda", "--epochs", "1", "--n-train", "8",
               "--batch-size", "8", "--hidden", "6", "--out", str(out), "--quiet"])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test_accuracy"] <= 1 and res["epochs"] == 1
    assert (out / "last.ckpt").exists()


def test_eval_smnist_on_cuda_matches_cpu(tmp_path):
    pth = REF / "smnist_nmi_98.21.pth"
    need(pth, DATA / "mnist")
    res = {}
    for device in ("cuda", "cpu"):
        js = tmp_path / f"{device}.json"
        rc = main(["eval", "smnist", "--checkpoint", str(pth), "--data-dir", str(DATA),
                   "--limit", "1", "--batch-size", "1", "--device", device, "--quiet",
                   "--json", str(js), "--save-predictions", str(tmp_path / f"{device}.npy")])
        assert rc == 0
        res[device] = json.loads(js.read_text())
    assert res["cuda"]["accuracy"] == res["cpu"]["accuracy"]
    assert np.array_equal(np.load(tmp_path / "cuda.npy"), np.load(tmp_path / "cpu.npy"))


def test_eval_ecg_on_cuda_matches_cpu():
    """The ECG evaluation (the official checkpoint, float64) on one test sequence."""
    from spikesim.data.qtdb import load_qtdb
    from spikesim.tasks import ecg
    pth = REF / "ecg_nmi_0.8589.pth"
    need(pth, DATA / "qtdb")
    data = load_qtdb(DATA, "test", unlabelled="class0", dtype=np.float64)
    x, y = data.x[:1], data.labels[:1]
    out = {}
    for device in ("cuda", "cpu"):
        net, info = ecg.load_network(pth, "auto", None, np.float64)
        net.set_backend(device)
        assert net.backend.name == device
        out[device] = ecg.evaluate_network(net, x, y, "zeros", 1, info["variant"])
    (rc, pc), (rg, pg) = out["cpu"], out["cuda"]
    assert np.array_equal(pc, pg)
    assert rc["accuracy"] == rg["accuracy"]
    for k, v in rc["firing_rates"].items():
        w = rg["firing_rates"][k]
        assert (v is None and w is None) or abs(v - w) < 1e-12


def test_eval_shd_on_cuda_matches_cpu():
    """The SHD evaluation (the official checkpoint, float32) on two samples of shd_synth."""
    from spikesim.data.shd import SHDDataset, load_events
    from spikesim.tasks import shd
    pth, test = REF / "shd_nmi_90.7.pth", DATA / "shd_synth" / "shd_test.h5"
    need(pth, test)
    out = {}
    for device in ("cuda", "cpu"):
        net, meta = shd.load_model(pth, np.float32)
        net.set_backend(device)
        binning = shd.Binning(**meta["binning"]) if isinstance(meta.get("binning"), dict) \
            else shd.BINNINGS["official"]
        events = load_events(test, n_units=binning.n_units)
        ds = SHDDataset(events, binning, net.dtype).subset(np.arange(2))
        out[device] = shd.evaluate_dataset(net, ds, batch_size=2)
    c, g = out["cpu"], out["cuda"]
    assert np.array_equal(c["predictions"], g["predictions"])
    assert abs(c["loss"] - g["loss"]) <= 1e-4 * abs(c["loss"])
    for k, v in c["firing_rates"].items():
        assert abs(v - g["firing_rates"][k]) <= 0.05 * v + 1e-6


def test_gradcheck_on_cuda(capsys):
    """Finite differences and the reference on the CUDA backend (one case each, --quick)."""
    rc = main(["gradcheck", "--device", "cuda", "--quick", "--only",
               "rec ALIF -> integrator, ce_sum_softmax", "surrogate linear"])
    text = capsys.readouterr().out
    assert rc == 0, text[-3000:]
    assert "(--device cuda)" in text and " 0 failed" in text
    assert " fd " in text and " ref " in text


def test_parameters_are_uploaded_when_they_change():
    """A second forward pass with unchanged parameters uploads nothing, the backward pass reuses
    the forward's uploads, and a parameter changed in place (as the optimiser does) is uploaded
    again: the results follow it, as on the CPU."""
    from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
    cfg = NetworkConfig(n_in=3, layers=[LayerConfig(5, "rec", name="h"),
                                        LayerConfig(2, "integrator", name="out")],
                        loss=LossConfig("ce_sum_softmax", start=2))
    cpu = Network(cfg, seed=2, dtype=np.float64)
    cpu.params["h.W_in"] *= 4
    gpu = Network(cfg, params={k: v.copy() for k, v in cpu.params.items()}, dtype=np.float64,
                  backend="cuda")
    x = (np.random.default_rng(0).random((2, 12, 3)) < 0.5).astype(np.float64)
    y = np.array([0, 1])
    gpu.loss_and_grad(x, y)
    n = gpu.backend.uploads
    assert n > 0
    l1, g1, _, _ = gpu.loss_and_grad(x, y)
    assert gpu.backend.uploads == n               # nothing changed: nothing uploaded
    for net in (cpu, gpu):
        net.params["h.W_rec"] += 0.1              # in place, as the optimiser updates
        net.params["h.tau_m"] *= 1.5
    l0, g0, _, _ = cpu.loss_and_grad(x, y)
    l2, g2, _, _ = gpu.loss_and_grad(x, y)
    assert gpu.backend.uploads > n
    assert abs(l2 - l0) <= 1e-12 * abs(l0) and abs(l2 - l1) > 1e-9
    for k in g0:
        assert np.abs(g2[k] - g0[k]).max() <= 1e-10 * max(1e-300, np.abs(g0[k]).max()), k


def test_gpu_check_runs_in_the_simulator(tmp_path):
    """validation/gpu_check.py --tiny: the CPU-against-CUDA comparison of shd, ecg and smnist
    passes, and the timing table and SHD epoch estimate are printed (tiny sizes, no PyTorch
    CUDA here)."""
    from validation import gpu_check
    lines = []
    rc = gpu_check.run(_args(tmp_path), out=lines.append)
    text = "\n".join(lines)
    assert rc == 0, text
    for name in ("shd", "ecg", "smnist"):
        assert f"ok  {name}" in text, text
    assert "shd-b256" in text and "SHD epoch" in text
    res = json.loads((tmp_path / "g.json").read_text())
    assert all(c["ok"] for c in res["compare"]) and len(res["timings"]) == 4


def _args(tmp_path):
    import argparse

    from validation import gpu_check
    p = argparse.ArgumentParser()
    gpu_check.add_args(p)
    return p.parse_args(["--tiny", "--json", str(tmp_path / "g.json")])


@pytest.mark.parametrize("loss", ["ce_sum_softmax", "nll_per_step", "ce_sum_spike"])
def test_reused_work_arrays_give_fresh_results(loss):
    """With ``reuse_buffers`` (as the trainer and evaluation run) the device work arrays, the
    loss kernels' included, are kept from call to call: batches of other shapes in between,
    and the accumulators zeroed again, give the CPU's results each time."""
    from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
    last = "dense" if loss == "ce_sum_spike" else "integrator"
    cfg = NetworkConfig(n_in=4, layers=[LayerConfig(6, "rec", name="h"),
                                        LayerConfig(5, "dense", name="d"),
                                        LayerConfig(3, last, name="out")],
                        loss=LossConfig(loss, start=1))
    cpu = Network(cfg, seed=4, dtype=np.float64)
    cpu.params["h.W_in"] *= 4
    cpu.params["d.W_in"] *= 3
    gpu = Network(cfg, params={k: v.copy() for k, v in cpu.params.items()}, dtype=np.float64,
                  backend="cuda")
    gpu.reuse_buffers = True
    rng = np.random.default_rng(1)
    batches = [((rng.random((B, T, 4)) < 0.5).astype(np.float64),
                rng.integers(0, 3, (B, T) if loss == "nll_per_step" else B))
               for B, T in ((3, 7), (2, 5), (3, 7))]
    for x, y in batches + batches[:1]:
        l0, g0, _, _ = cpu.loss_and_grad(x, y)
        l1, g1, _, _ = gpu.loss_and_grad(x, y)
        assert abs(l1 - l0) <= 1e-12 * abs(l0)
        for k in g0:
            assert np.abs(g1[k] - g0[k]).max() <= 1e-10 * max(1e-300, np.abs(g0[k]).max()), k
    assert any(str(k[0]).startswith("loss ") for k in gpu.backend._work)


def _shd_files(folder, n_train=12, n_test=4):
    """Tiny files in the SHD layout: 4 classes, 3 speakers, spikes in class-specific units."""
    import h5py
    rng = np.random.default_rng(0)
    for name, n in (("shd_train.h5", n_train), ("shd_test.h5", n_test)):
        with h5py.File(folder / name, "w") as f:
            t = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float16))
            u = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
            for i in range(n):
                k = int(rng.integers(40, 80))
                t[i] = np.sort(rng.random(k) * 0.9).astype(np.float16)
                u[i] = ((i % 4) * 150 + rng.integers(1, 120, k)).astype(np.uint16)
            f["labels"] = np.arange(n, dtype=np.uint16) % 4
            f["extra/speaker"] = np.arange(n, dtype=np.uint16) % 3
            f["extra/keys"] = np.array([k.encode() for k in "abcd"])
    return folder


def test_train_and_eval_shd_on_cuda(tmp_path):
    """spikesim train shd --device cuda (16 bins), then eval of its checkpoint on cuda and on
    the cpu: the same predictions."""
    d = _shd_files(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "shd", "--data-dir", str(d), "--out", str(out), "--epochs", "1",
                 "--hidden", "6,5", "--batch-size", "6", "--bins", "16", "--val-speakers", "1",
                 "--quiet", "--no-plots", "--device", "cuda"]) == 0
    res = {}
    for device in ("cuda", "cpu"):
        js = tmp_path / f"{device}.json"
        assert main(["eval", "shd", "--checkpoint", str(out / "best.ckpt"), "--data-dir", str(d),
                     "--quiet", "--device", device, "--json", str(js)]) == 0
        res[device] = json.loads(js.read_text())
    assert res["cuda"]["accuracy"] == res["cpu"]["accuracy"]
    assert res["cuda"]["confusion_matrix"] == res["cpu"]["confusion_matrix"]
    assert abs(res["cuda"]["loss"] - res["cpu"]["loss"]) <= 1e-4 * abs(res["cpu"]["loss"])


@pytest.mark.parametrize("task", ["smnist", "psmnist"])
def test_train_smnist_on_cuda_with_truncated_bptt(tmp_path, task):
    """spikesim train smnist|psmnist --device cuda: 20 steps in truncated chunks of 8, a few
    images."""
    need(DATA / "mnist")
    out = tmp_path / "run"
    assert main(["train", task, "--data-dir", str(DATA), "--out", str(out), "--epochs", "1",
                 "--steps", "20", "--tbptt", "8", "--train-limit", "8", "--val-fraction", "0.25",
                 "--test-limit", "2", "--per-step-limit", "1", "--hidden", "5,6,4",
                 "--batch-size", "6", "--quiet", "--no-plots", "--device", "cuda"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["epochs"] == 1 and 0 <= res["test_accuracy"] <= 1


def test_train_ecg_on_cuda(tmp_path, monkeypatch):
    """spikesim train ecg --device cuda on the first 4 training and 2 test sequences cut to 80
    steps (the data reader wrapped: the command has no option for fewer sequences)."""
    import dataclasses

    from spikesim.data import qtdb
    need(DATA / "qtdb")
    real = qtdb.load_qtdb

    def small(*a, **kw):
        s = real(*a, **kw)
        n, T = (4 if s.split == "train" else 2), 80
        return dataclasses.replace(s, x=s.x[:n, :T], labels=s.labels[:n, :T],
                                   lengths=np.minimum(s.lengths[:n], T),
                                   labelled=s.labelled[:n, :T])
    monkeypatch.setattr(qtdb, "load_qtdb", small)
    out = tmp_path / "run"
    assert main(["train", "ecg", "--data-dir", str(DATA), "--out", str(out), "--epochs", "1",
                 "--batch-size", "4", "--val-fraction", "0", "--quiet", "--no-plots",
                 "--device", "cuda"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert 0 <= res["test_accuracy"] <= 1
