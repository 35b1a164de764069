"""The summary of a sweep: per configuration (the trials that differ only in their seed), the
mean, standard deviation (n - 1), minimum and maximum of the validation and test accuracy over
the finished seeds, every seed's numbers, and the wall time; as ``summary.json``,
``summary.md`` and ``summary.png`` (accuracy per configuration, seeds as points; with a search,
also the validation accuracy per trial and the best so far). Configurations are ranked by mean
validation accuracy; test accuracy is reported beside it, never used to rank.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .trial import read_status


def seed_stats(xs) -> dict:
    """Mean, standard deviation (n - 1; 0 for one value), minimum, maximum and count of the
    values that are not None."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return {"mean": None, "std": None, "min": None, "max": None, "n": 0}
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return {"mean": m, "std": sd, "min": min(xs), "max": max(xs), "n": len(xs)}


def collect(sweep_dir) -> list:
    trials = []
    for f in sorted((Path(sweep_dir) / "trials").glob("*/trial.json")):
        st = read_status(f.parent)
        if st is not None:
            trials.append(st)
    return trials


def summarise(trials: list) -> list:
    configs = {}
    for t in trials:
        configs.setdefault(t["config"], []).append(t)
    rows = []
    for name, ts in configs.items():
        done = sorted((t for t in ts if t["status"] == "done"), key=lambda t: t["seed"])
        rows.append({"config": name, "params": ts[0]["params"],
                     "val_acc": seed_stats([t.get("val_acc") for t in done]),
                     "test_acc": seed_stats([t.get("test_acc") for t in done]),
                     "seeds": [t["seed"] for t in done],
                     "val_acc_per_seed": [t.get("val_acc") for t in done],
                     "test_acc_per_seed": [t.get("test_acc") for t in done],
                     "wall_seconds": sum(t.get("wall_seconds", 0.0) for t in ts),
                     "not_done": {t["name"]: t["status"] for t in ts if t["status"] != "done"}})
    rows.sort(key=lambda r: -(r["val_acc"]["mean"] if r["val_acc"]["mean"] is not None
                              else -1.0))
    return rows


def _pct(s, k="mean"):
    v = s.get(k)
    return "-" if v is None else f"{v * 100:.2f}"


def markdown(rows: list, title: str) -> str:
    lines = [f"# {title}", "", "Ranked by mean validation accuracy (test accuracy is reported, "
             "never used to rank).", "",
             "| configuration | seeds | validation % mean +- std (min-max) | test % mean +- std "
             "(min-max) | test % per seed | wall s | not done |", "|---|---|---|---|---|---|---|"]
    def cell(s):
        if s["mean"] is None:
            return "-"
        return (f"{_pct(s)} +- {_pct(s, 'std')} ({_pct(s, 'min')}-{_pct(s, 'max')})")
    for r in rows:
        per = ", ".join("-" if x is None else f"{x * 100:.2f}" for x in r["test_acc_per_seed"])
        nd = ", ".join(f"{k}: {s}" for k, s in r["not_done"].items()) or ""
        lines.append(f"| {r['config']} | {len(r['seeds'])} | {cell(r['val_acc'])} | "
                     f"{cell(r['test_acc'])} | {per} | {r['wall_seconds']:.0f} | {nd} |")
    return "\n".join(lines) + "\n"


def figure(rows: list, trials: list, path, search: bool):
    from .. import plots
    if not plots.have_matplotlib():
        return None
    fig, ax = plots._figure(1, 2 if search else 1, figsize=(11 if search else 7, 4.5))
    a = ax[0, 0]
    for i, r in enumerate(rows):
        for key, marker, dx in (("val_acc_per_seed", "o", -0.1), ("test_acc_per_seed", "s", 0.1)):
            ys = [y for y in r[key] if y is not None]
            a.scatter([i + dx] * len(ys), ys, marker=marker, s=18,
                      c="C0" if key.startswith("val") else "C1",
                      label=("validation" if key.startswith("val") else "test") if i == 0
                      else None)
    a.set_xticks(range(len(rows)))
    a.set_xticklabels([r["config"] for r in rows], rotation=30, ha="right", fontsize=7)
    a.set_ylabel("accuracy")
    a.set_title("accuracy per configuration (points: seeds)")
    a.legend(fontsize=8)
    if search:
        b = ax[0, 1]
        done = sorted((t for t in trials if t.get("number") is not None and
                       t.get("val_acc") is not None), key=lambda t: t["number"])
        xs = [t["number"] for t in done]
        ys = [t["val_acc"] for t in done]
        b.scatter(xs, ys, s=14, label="trial (validation)")
        best, run = [], -1.0
        for y in ys:
            run = max(run, y)
            best.append(run)
        b.step(xs, best, where="post", c="C3", label="best so far")
        b.set_xlabel("trial")
        b.set_title("Optuna search")
        b.legend(fontsize=8)
    return plots._save(fig, path)


def write(sweep_dir, title: str, search: bool = False) -> list:
    sweep_dir = Path(sweep_dir)
    trials = collect(sweep_dir)
    rows = summarise(trials)
    (sweep_dir / "summary.json").write_text(json.dumps({"configs": rows, "trials": trials},
                                                       indent=1))
    (sweep_dir / "summary.md").write_text(markdown(rows, title))
    figure(rows, trials, sweep_dir / "summary.png", search)
    return rows
