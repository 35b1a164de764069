"""experiments/smnist/seed_table.py: runs grouped by settings, seeds as mean +- std."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from spikesim.tasks.smnist import TRAIN_PRESETS

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("seed_table",
                                              ROOT / "experiments" / "smnist" / "seed_table.py")
seed_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_table)


def _run(folder: Path, task="smnist", seed=0, test=0.9, val=0.92, dataset=None, sizes=None,
         **settings):
    st = json.loads(json.dumps({**TRAIN_PRESETS["recipe"], **settings}))
    folder.mkdir(parents=True)
    hist = [{"epoch": e, "val_acc": val * e / 3, "train_acc": 0.5, "seconds": 1.0}
            for e in (1, 2, 3)]
    (folder / "results.json").write_text(json.dumps({
        "task": task, "test_accuracy": test, "best_val_acc": val, "tested_epoch": 3,
        "settings": st, "train_config": {"seed": seed}, "history": hist,
        "per_step_accuracy": [0.1, 0.5, test],
        **({"meta": {"dataset": dataset}} if dataset else {}),
        **({"n_train": sizes[0], "n_val": sizes[1]} if sizes else {})}))
    return folder


def test_groups_by_settings_and_reports_mean_and_std(tmp_path, capsys):
    tests = [0.91, 0.89, 0.90]
    runs = [_run(tmp_path / f"s{k}", seed=k, test=t) for k, t in enumerate(tests)]
    old = _run(tmp_path / "old", seed=0, test=0.8)
    st = json.loads((old / "results.json").read_text())
    del st["settings"]["augment_shift"]         # results written before the option existed
    (old / "results.json").write_text(json.dumps(st))
    runs[0:0] = [_run(tmp_path / "shift", seed=0, test=0.95, augment_shift=2),
                 _run(tmp_path / "ps", task="psmnist", seed=1, test=0.7)]
    with pytest.raises(SystemExit, match="same settings and seed twice"):
        seed_table.main([str(r) for r in runs + [old]])
    table = seed_table.main([str(r) for r in runs] + ["--out", str(tmp_path / "s.png")])
    assert (tmp_path / "s.png").stat().st_size > 0
    by = {(r["task"], r["settings"]): r for r in table}
    assert set(by) == {("smnist", "recipe"), ("smnist", "augment_shift=2"), ("psmnist", "recipe")}
    recipe = by["smnist", "recipe"]
    assert recipe["seeds"] == [0, 1, 2] and recipe["test_per_seed"] == tests
    assert recipe["test"]["mean"] == pytest.approx(np.mean(tests))
    assert recipe["test"]["std"] == pytest.approx(np.std(tests, ddof=1))
    out = capsys.readouterr().out
    assert "| smnist | recipe | 0, 1, 2 | 90.00 +- 1.00 | 91.00, 89.00, 90.00 |" in out
    assert "| psmnist | recipe | 1 | 70.00 (one seed) |" in out
    # an older run without the option groups with the recipe's (no shift) runs
    rows = seed_table.main([str(old), str(runs[3]), str(runs[4])])
    assert len(rows) == 1 and rows[0]["seeds"] == [0, 1, 2]


def test_fashion_runs_are_their_own_task(tmp_path, capsys):
    digits = _run(tmp_path / "digits", seed=0, test=0.9, dataset="mnist")
    older = _run(tmp_path / "older", seed=1, test=0.8)       # written before meta.dataset
    fashion = _run(tmp_path / "fashion", seed=0, test=0.8, dataset="fashion")
    rows = seed_table.main([str(digits), str(older), str(fashion)])
    by = {r["task"]: r for r in rows}
    assert set(by) == {"smnist", "smnist (fashion)"}
    assert by["smnist"]["seeds"] == [0, 1] and by["smnist (fashion)"]["seeds"] == [0]
    assert "| smnist (fashion) | recipe | 0 | 80.00 (one seed) |" in capsys.readouterr().out


def test_refuses_a_folder_without_results(tmp_path):
    with pytest.raises(SystemExit, match="no results.json"):
        seed_table.main([str(tmp_path)])


def test_runs_on_fewer_images_are_their_own_group(tmp_path):
    usual = [_run(tmp_path / f"s{k}", seed=k, sizes=(4500, 500)) for k in (0, 1)]
    unknown = _run(tmp_path / "older", seed=2)          # written before n_train was recorded
    half = _run(tmp_path / "half", seed=0, test=0.6, sizes=(2250, 500), epochs=360)
    table = seed_table.main([str(r) for r in usual + [unknown, half]])
    by = {r["settings"]: r for r in table}
    assert set(by) == {"recipe", "epochs=360, train_images=2250, val_images=500"}
    assert by["recipe"]["seeds"] == [0, 1, 2]


def test_learning_curves_on_a_batch_axis(tmp_path, monkeypatch):
    """--x batch puts each group's epoch e at e * its batches per epoch, so that runs on half
    the images (twice the epochs) line up with the recipe's at equal updates."""
    assert seed_table.batches_per_epoch({"n_train": 4500, "settings": {"batch_size": 32}}) == 141
    assert seed_table.batches_per_epoch({"n_train": 2250, "settings": {"batch_size": 32}}) == 71
    assert seed_table.batches_per_epoch({"n_train": 64, "settings": {"batch_size": 32}}) == 2
    full = _run(tmp_path / "full", seed=0, sizes=(4500, 500))
    half = _run(tmp_path / "half", seed=0, sizes=(2250, 500), epochs=360)
    import matplotlib.axes
    drawn = []
    plot = matplotlib.axes.Axes.plot
    monkeypatch.setattr(matplotlib.axes.Axes, "plot",
                        lambda ax, x, *a, **k: drawn.append(list(x)) or plot(ax, x, *a, **k))
    png = tmp_path / "b.png"
    seed_table.main([str(full), str(half), "--out", str(png), "--x", "batch"])
    assert png.stat().st_size > 0
    # learning curves and per-step curves of both groups; the per-step axis stays in steps
    assert drawn == [[141, 282, 423], [1, 2, 3], [71, 142, 213], [1, 2, 3]]
    with pytest.raises(SystemExit):
        seed_table.main([str(full), "--x", "update"])
