"""The run manifest: a short Trainer.fit writes manifest.json into its run folder, a resume
appends to its list of resumes, and the collection copes with no git and any /proc/cpuinfo."""
import datetime
import json
import sys

from spikesim.backends.cpu.threads import get_threads
from spikesim.network import Network
from spikesim.tasks import synthetic
from spikesim.train import manifest
from spikesim.train.trainer import TrainConfig, Trainer

FIELDS = {"manifest_version", "date", "command", "git_commit", "git_dirty", "versions", "seed",
          "threads", "machine", "resumes", "backend"}


def _trainer(out, epochs):
    tr, te = synthetic.datasets(n_train=32, n_test=16, seed=0)
    net = Network(synthetic.network_config(hidden=8), seed=0)
    cfg = TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, seed=5)
    return Trainer(net, cfg, tr, te, out_dir=out, progress=False)


def _utc(date: str) -> datetime.datetime:
    d = datetime.datetime.fromisoformat(date)
    assert d.utcoffset() == datetime.timedelta(0)
    return d


def test_fit_writes_the_manifest_and_resume_appends(tmp_path):
    t = _trainer(tmp_path, 1)
    t.fit()
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert set(m) == FIELDS
    _utc(m["date"])
    assert m["command"] == sys.argv and m["seed"] == 5 and m["threads"] == get_threads()
    assert set(m["versions"]) == {"python", "numpy", "numba", "llvmlite", "scipy", "h5py",
                                  "spikesim"}
    assert m["versions"]["numpy"] and m["versions"]["spikesim"]
    assert m["git_commit"] is None or len(m["git_commit"]) == 40
    assert m["git_dirty"] in (None, True, False)
    assert set(m["machine"]) >= {"platform", "cpu", "vector_flags"}
    flags = m["machine"]["vector_flags"]
    assert flags is None or set(flags) == {"avx2", "avx512f", "fma", "neon"}
    assert m["resumes"] == []
    assert m["backend"] == "cpu"
    # more epochs on the same Trainer (as ``spikesim train ecg --select train`` runs them):
    # the same run, nothing appended
    t.cfg.epochs = 2
    t.fit()
    assert json.loads((tmp_path / "manifest.json").read_text()) == m
    # a new process resumes the run: one record, the run's own fields kept
    t2 = _trainer(tmp_path, 3)
    assert t2.resume()
    t2.fit()
    m2 = json.loads((tmp_path / "manifest.json").read_text())
    assert {k: v for k, v in m2.items() if k != "resumes"} == \
        {k: v for k, v in m.items() if k != "resumes"}
    assert len(m2["resumes"]) == 1
    r = m2["resumes"][0]
    assert (r["epoch"], r["batch_index"]) == (2, 0)
    assert set(r) >= {"date", "command", "git_commit", "git_dirty", "versions", "threads",
                      "machine"}
    _utc(r["date"])
    assert [h["epoch"] for h in t2.history] == [1, 2, 3]
    assert not list(tmp_path.glob("*.tmp"))          # written atomically, nothing left over


def test_no_out_dir_no_manifest(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _trainer(None, 1).fit()
    assert not list(tmp_path.iterdir())


def test_git_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))        # no git executable on the path
    assert manifest.git_state() == (None, None)
    m = manifest.collect(1)
    assert m["git_commit"] is None and m["git_dirty"] is None


def test_machine_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2GHz\nflags\t\t: fpu sse2 avx2 fma\n")
    m = manifest.machine(str(x86))
    assert m["cpu"] == "Some CPU @ 2GHz"
    assert m["vector_flags"] == {"avx2": True, "avx512f": False, "fma": True, "neon": False}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd evtstrm aes\nCPU part\t: 0xd0c\n")
    assert manifest.machine(str(arm))["vector_flags"]["neon"] is True
    assert manifest.machine(str(tmp_path / "absent"))["vector_flags"] is None


def test_resume_of_a_run_without_manifest(tmp_path):
    t = _trainer(tmp_path, 1)
    t.fit()
    (tmp_path / "manifest.json").unlink()           # a run from before manifests
    t2 = _trainer(tmp_path, 2)
    assert t2.resume()
    t2.fit()
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["started_before_manifest"] is True and len(m["resumes"]) == 1
