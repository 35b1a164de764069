"""Running a sweep on Dask distributed.

The cluster: a ``LocalCluster`` of one single-threaded worker process per core by default, or
the scheduler at ``--scheduler ADDRESS`` (a cluster started by ``dask-jobqueue`` on SLURM, or
``dask scheduler`` / ``dask worker`` by hand); the trials are the same functions either way.

Faults: a trial that raises is recorded (``trial.json``, status error) and the others go on; a
worker that dies mid-trial has its trial rescheduled by Dask on another worker (up to Dask's
``allowed-failures``), where it continues from its last checkpoint; past that it is recorded as
lost. A stopped sweep continues with ``--resume``: finished trials are skipped, and a search
continues its Optuna study from the journal file ``study.log`` (trials left running by the
stop are marked failed and replaced).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from .spec import SearchSpace, Trial, journal_storage
from .trial import read_status, run_trial

SPEC_FILE = "sweep.json"


def make_client(scheduler: str | None, workers: int | None):
    """(client, cluster or None): a client of ``scheduler``, or of a new local cluster of
    ``workers`` single-threaded worker processes (default: one per core)."""
    from dask.distributed import Client, LocalCluster
    if scheduler:
        return Client(scheduler), None
    n = workers or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count() or 1)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    return Client(cluster), cluster


def prepare(sweep_dir: Path, spec: dict, resume: bool):
    """Create the sweep folder with its spec, or, with ``resume``, check that the spec on disk
    is the same sweep."""
    f = sweep_dir / SPEC_FILE
    if f.exists():
        if not resume:
            raise ValueError(f"{sweep_dir} already holds a sweep; add --resume to continue it, "
                             "or choose another --out")
        old = json.loads(f.read_text())
        keys = ("task", "settings", "seeds", "search", "fixed", "trials")
        diff = [k for k in keys if old.get(k) != spec.get(k)]
        if diff:
            raise ValueError(f"{sweep_dir} holds a different sweep (differs in {diff}); "
                             "resume it with the same options")
        return
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise ValueError(f"{sweep_dir} exists and is not a sweep folder")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    from ..train import manifest
    tmp = sweep_dir / (SPEC_FILE + ".tmp")
    tmp.write_text(json.dumps({**spec, "manifest": manifest.collect()}, indent=1))
    os.replace(tmp, f)


def _lost(sweep_dir, trial: Trial, exc) -> dict:
    rec = {"name": trial.name, "params": trial.params, "seed": trial.seed,
           "number": trial.number, "config": trial.config_key(), "status": "lost",
           "error": f"{type(exc).__name__}: {exc}"}
    folder = Path(sweep_dir) / "trials" / trial.name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial.json").write_text(json.dumps(rec, indent=1))
    return rec


def run_grid(client, task, sweep_dir, trials, fixed, threads=1, log=print) -> list:
    """Run every trial not yet done; returns the outcome records of all."""
    from dask.distributed import as_completed
    out, pending = [], {}
    for t in trials:
        st = read_status(sweep_dir / "trials" / t.name)
        if st is not None and st.get("status") == "done":
            out.append(st)
            continue
        fut = client.submit(run_trial, task, str(sweep_dir), t.__dict__, fixed, threads,
                            key=f"trial-{t.name}-{time.time_ns()}", pure=False)
        pending[fut] = t
    if len(out):
        log(f"sweep: {len(out)} trials already done, {len(pending)} to run")
    for fut in as_completed(list(pending)):
        t = pending[fut]
        try:
            rec = fut.result()
        except Exception as exc:                  # noqa: BLE001 - e.g. KilledWorker
            rec = _lost(sweep_dir, t, exc)
        log(_line(rec))
        out.append(rec)
    return out


def run_search(client, task, sweep_dir, space: SearchSpace, n_trials: int, seed: int, fixed,
               workers: int, threads=1, log=print) -> list:
    """An Optuna search (TPE sampler, median pruner on the per-epoch validation accuracy) of
    ``n_trials`` finished trials, ``workers`` at a time."""
    import optuna
    from dask.distributed import wait
    storage_path = sweep_dir / "study.log"
    study = optuna.create_study(study_name="sweep", storage=journal_storage(storage_path),
                                direction="maximize", load_if_exists=True,
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=3,
                                                                   n_warmup_steps=1))
    S = optuna.trial.TrialState
    for ft in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        study.tell(ft.number, state=S.FAIL)      # left running by a stopped sweep
    finished = lambda: sum(ft.state in (S.COMPLETE, S.PRUNED)  # noqa: E731
                           for ft in study.get_trials(deepcopy=False))
    dists = space.distributions()
    running, out = {}, []
    while finished() + len(running) < n_trials or running:
        while finished() + len(running) < n_trials and len(running) < workers:
            ot = study.ask(dists)
            t = Trial(f"trial-{ot.number:03d}", dict(ot.params), seed, ot.number)
            info = {"storage": str(storage_path), "study": "sweep", "trial_id": ot._trial_id}
            fut = client.submit(run_trial, task, str(sweep_dir), t.__dict__, fixed, threads,
                                info, key=f"trial-{t.name}-{time.time_ns()}", pure=False)
            running[fut] = (t, ot.number)
        done, _ = wait(list(running), return_when="FIRST_COMPLETED")
        for fut in done:
            t, number = running.pop(fut)
            try:
                rec = fut.result()
            except Exception as exc:              # noqa: BLE001
                rec = _lost(sweep_dir, t, exc)
            if rec["status"] == "done" and rec.get("val_acc") is not None:
                study.tell(number, rec["val_acc"])
            elif rec["status"] == "pruned":
                study.tell(number, state=S.PRUNED)
            else:
                study.tell(number, state=S.FAIL)
            log(_line(rec))
            out.append(rec)
    return out


def _line(rec) -> str:
    acc = "".join(f" {k} {rec[k] * 100:.2f} %" for k in ("val_acc", "test_acc")
                  if rec.get(k) is not None)
    err = f" ({rec['error']})" if rec.get("error") else ""
    return f"  {rec['status']:7s} {rec['name']}{acc}{err}"
