"""Sweeps on a two-worker local Dask cluster, with the built-in demo task: a grid with a failing
trial, resume, a worker killed mid-trial, an Optuna search; and the spec parsing."""
import json
import os
import signal
import threading
import time

import pytest

pytest.importorskip("dask.distributed")
optuna = pytest.importorskip("optuna")

from spikesim.cli import main  # noqa: E402
from spikesim.sweep import spec as sp  # noqa: E402
from spikesim.sweep.driver import make_client, run_grid  # noqa: E402

TINY = "--epochs 2 --n-train 64 --hidden 12"


@pytest.fixture(scope="module")
def client():
    c, cluster = make_client(None, 2)
    yield c
    c.close()
    cluster.close()


def test_spec_parsing():
    assert sp.parse_seeds("3") == [0, 1, 2] and sp.parse_seeds("2-4") == [2, 3, 4]
    assert sp.parse_seeds("5,1") == [5, 1]
    with pytest.raises(ValueError, match="seeds"):
        sp.parse_seeds("x")
    s = sp.parse_settings(["lr=5e-3,1e-2", "batch-size=32"])
    assert s == {"lr": ["5e-3", "1e-2"], "batch_size": ["32"]}
    trials = sp.grid_trials(s, [0, 1])
    assert len(trials) == 4 and trials[0].argv("demo", "o", []) == [
        "--out", "o", "--seed", "0", "--resume", "--lr", "5e-3", "--batch-size", "32"]
    assert trials[0].config_key() == trials[1].config_key() != trials[2].config_key()
    with pytest.raises(ValueError, match="--seeds"):
        sp.parse_settings(["seed=1,2"])
    space = sp.SearchSpace.parse(["lr=float:1e-3:1e-1:log", "hidden=int:8:32", "x=cat:a,b"])
    assert set(space.distributions()) == {"lr", "hidden", "x"}
    with pytest.raises(ValueError, match="float:LO:HI"):
        sp.SearchSpace.parse(["lr=float:1:0"])


def test_grid_sweep_records_a_failure_and_resumes(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "demo", "--out", str(out), "--seeds", "2", "--set", "lr=5e-3,-1",
            "--args", TINY, "--workers", "2"]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    status = {t["name"]: t["status"] for t in summary["trials"]}
    assert status == {"lr=5e-3,seed=0": "done", "lr=5e-3,seed=1": "done",
                      "lr=-1,seed=0": "error", "lr=-1,seed=1": "error"}
    err = next(t for t in summary["trials"] if t["status"] == "error")
    assert "--lr: must be a positive number" in err["error"] and "Traceback" in err["traceback"]
    good = next(r for r in summary["configs"] if r["config"] == "lr=5e-3")
    assert good["seeds"] == [0, 1] and good["val_acc"]["n"] == 2
    assert (out / "summary.md").exists() and (out / "summary.png").exists()
    for name in ("lr=5e-3,seed=0", "lr=5e-3,seed=1"):
        trial = out / "trials" / name
        assert {"manifest.json", "history.json", "results.json", "last.ckpt"} <= \
            {p.name for p in trial.iterdir()}
    # a second run into the same folder needs --resume; then finished trials are skipped
    assert main(args) == 2
    stamp = (out / "trials" / "lr=5e-3,seed=0" / "trial.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0
    assert "2 trials already done, 2 to run" in capsys.readouterr().out
    assert (out / "trials" / "lr=5e-3,seed=0" / "trial.json").stat().st_mtime_ns == stamp


def test_bad_options_are_refused_before_any_work(tmp_path):
    out = tmp_path / "s"
    assert main(["sweep", "demo", "--out", str(out), "--set", "nonsense=1"]) == 2
    assert main(["sweep", "demo", "--out", str(out), "--args", "--bogus 3"]) == 2
    assert not out.exists()


def test_a_killed_worker_s_trial_reruns_from_its_checkpoint(tmp_path, client):
    trials = sp.grid_trials({}, [0])
    fixed = ["--epochs", "25", "--n-train", "256", "--hidden", "16"]
    folder = tmp_path / "trials" / trials[0].name
    result = {}

    def go():
        result["recs"] = run_grid(client, "demo", tmp_path, trials, fixed, log=lambda *a: None)
    th = threading.Thread(target=go)
    th.start()
    deadline = time.time() + 120
    while not (folder / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)
    busy = [w for w, keys in client.processing().items() if keys]
    assert busy, "the trial is not running"
    pid = client.run(os.getpid, workers=busy)[busy[0]]
    os.kill(pid, signal.SIGKILL)                    # the worker dies mid-trial
    th.join(180)
    rec = result["recs"][0]
    assert rec["status"] == "done" and rec["epochs"] == 25
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["resumes"], "the rerun should have continued from last.ckpt"
    assert rec["worker_pid"] != pid


def test_optuna_search_with_pruner_and_resume(tmp_path, capsys):
    out = tmp_path / "search"
    args = ["sweep", "demo", "--out", str(out), "--trials", "4", "--search",
            "lr=float:1e-3:3e-2:log", "--args", TINY, "--workers", "2"]
    assert main(args) == 0
    study = optuna.load_study(study_name="sweep", storage=_storage(out / "study.log"))
    states = [t.state for t in study.get_trials()]
    finished = [s for s in states if s in (optuna.trial.TrialState.COMPLETE,
                                           optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 4
    assert all(len(t.intermediate_values) >= 1 for t in study.get_trials())
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["trials"]) == 4 and (out / "summary.png").exists()
    capsys.readouterr()
    assert main(args + ["--resume"]) == 0           # nothing left to do
    assert len(optuna.load_study(study_name="sweep",
                                 storage=_storage(out / "study.log")).get_trials()) == 4


def _storage(path):
    from spikesim.sweep.spec import journal_storage
    return journal_storage(path)
