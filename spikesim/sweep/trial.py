"""One trial of a sweep, as a Dask worker runs it: an ordinary ``spikesim train TASK`` run in
``<sweep>/trials/<name>/`` (manifest, history, checkpoints, results), always with ``--resume``,
so that a trial rerun after its worker died continues from its last checkpoint.

Its outcome goes to ``trial.json`` in the run folder (written atomically): status ``done``,
``pruned`` (stopped by the search's pruner), or ``error`` (with the exception and traceback);
a trial whose ``trial.json`` says ``done`` is not run again.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import traceback
from pathlib import Path

STATUS_FILE = "trial.json"


def read_status(folder) -> dict | None:
    p = Path(folder) / STATUS_FILE
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _write_status(folder: Path, rec: dict):
    tmp = folder / (STATUS_FILE + ".tmp")
    tmp.write_text(json.dumps(rec, indent=1))
    os.replace(tmp, folder / STATUS_FILE)


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose errors are exceptions carrying argparse's message (a trial's bad option
    is recorded in its status, not lost on a worker's stderr with a bare SystemExit)."""

    def error(self, message):
        raise ValueError(f"{self.prog}: {message}")


def run_trial(task: str, sweep_dir: str, trial: dict, fixed: list, threads: int = 1,
              optuna_trial: dict | None = None) -> dict:
    """Run one trial (``trial``: a ``spec.Trial`` as a dict) and return its outcome record.

    ``optuna_trial``: {"storage": path, "study": name, "trial_id": id} to report the validation
    accuracy of every epoch to the study and stop when its pruner says so."""
    import numba

    from ..backends.cpu.threads import set_threads
    from ..tasks import task_module
    from ..train import trainer
    from .spec import Trial
    t = Trial(**trial)
    folder = Path(sweep_dir) / "trials" / t.name
    done = read_status(folder)
    if done is not None and done.get("status") == "done":
        return done
    folder.mkdir(parents=True, exist_ok=True)
    set_threads(threads)            # the kernels' threads; Dask's nanny sets neither
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    rec = {"name": t.name, "params": t.params, "seed": t.seed, "number": t.number,
           "config": t.config_key(), "worker_pid": os.getpid()}
    mod = task_module(task)
    parser = _RaisingParser(prog=f"spikesim train {task}")
    mod.add_train_args(parser, task)
    argv = t.argv(task, str(folder), list(fixed) + ["--quiet"])
    hook = _pruning_hook(optuna_trial) if optuna_trial else None
    t0 = time.time()
    try:
        args = parser.parse_args(argv)
        if hook:
            trainer.EPOCH_HOOKS.append(hook)
        rc = mod.run_train(args)
        if rc:
            raise RuntimeError(f"spikesim train {task} exited with status {rc}")
        res = json.loads((folder / "results.json").read_text())
        rec.update(status="done", val_acc=res.get("best_val_acc"),
                   test_acc=res.get("test_accuracy"), epochs=res.get("epochs"))
    except trainer.StopTraining as e:
        rec.update(status="pruned", message=str(e))
    except (Exception, SystemExit) as e:         # recorded; the sweep goes on
        rec.update(status="error", error=f"{type(e).__name__}: {e}",
                   traceback=traceback.format_exc())
    finally:
        if hook:
            trainer.EPOCH_HOOKS.remove(hook)
    rec["wall_seconds"] = time.time() - t0
    hist = folder / "history.json"
    if hist.exists():
        h = json.loads(hist.read_text())
        vals = [r["val_acc"] for r in h if r.get("val_acc") is not None]
        rec["val_acc_per_epoch"] = vals
        if rec.get("val_acc") is None and vals:
            rec["val_acc"] = max(vals)
    _write_status(folder, rec)
    return rec


def _pruning_hook(info: dict):
    """An epoch hook that reports validation accuracy to the Optuna trial and stops the run
    when the study's pruner says so."""
    import optuna

    from ..train.trainer import StopTraining
    from .spec import journal_storage
    study = optuna.load_study(study_name=info["study"],
                              storage=journal_storage(info["storage"]))
    ot = optuna.trial.Trial(study, info["trial_id"])

    def hook(rec):
        if rec.get("val_acc") is None:
            return
        ot.report(rec["val_acc"], rec["epoch"])
        if ot.should_prune():
            raise StopTraining(f"pruned after epoch {rec['epoch']} (validation accuracy "
                               f"{rec['val_acc']:.4f})")
    return hook
