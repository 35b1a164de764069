"""Seeds as distributions: finished S-MNIST / PS-MNIST runs grouped by task (Fashion-MNIST
runs apart from digit runs) and settings (runs that differ only in their seed), each group's
test accuracy and best validation accuracy as mean +- standard deviation (n - 1) with every
seed's value, and optionally a plot of the groups' learning curves and per-step accuracy,
mean +- std over the seeds.

    python experiments/smnist/seed_table.py RUN_DIR [RUN_DIR ...] [--out seeds.png] [--x batch]

Each RUN_DIR holds the ``results.json`` of a finished ``spikesim train smnist|psmnist``. The
model of each run was chosen on validation accuracy; the test accuracy is reported, never used
to choose. Settings that older results do not hold (added to ``spikesim train`` later) count as
the official preset's value, the behaviour those runs had. The numbers of training and
validation images count as settings where they are not the dataset's usual split.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from spikesim.sweep.summary import seed_stats
from spikesim.tasks.smnist import TRAIN_PRESETS

#: (training, validation) images of the usual split of each dataset: 4 500 / 500 of the 5 000
#: digits, 54 000 / 6 000 of Fashion-MNIST's 60 000
USUAL_SPLIT = {"mnist": (4500, 500), "fashion": (54000, 6000)}


def load_run(run: Path) -> dict:
    path = run / "results.json"
    if not path.exists():
        raise SystemExit(f"error: {run} holds no results.json (a finished run writes one)")
    res = json.loads(path.read_text())
    res["settings"] = {**TRAIN_PRESETS["official"], **res["settings"]}
    # Fashion-MNIST runs (--dataset fashion) are another task, never a seed of a digits run
    if res.get("meta", {}).get("dataset", "mnist") != "mnist":
        res["task"] = f"{res['task']} ({res['meta']['dataset']})"
    # the number of training and validation images is a setting too (--train-limit,
    # --val-fraction): written where it is not the dataset's usual split, so that a run on
    # fewer images is never a seed of the recipe's runs
    dataset = res.get("meta", {}).get("dataset", "mnist")
    sizes = (res.get("n_train"), res.get("n_val"))
    if None not in sizes and sizes != USUAL_SPLIT.get(dataset):
        res["settings"]["train_images"], res["settings"]["val_images"] = sizes
    res["seed"] = res["train_config"]["seed"]
    res["name"] = run.name
    return res


def group_runs(runs: list[dict]) -> dict:
    """Runs keyed by (task, their settings as JSON); each group's runs sorted by seed. Two
    runs of one group with the same seed are refused (one of them would count twice)."""
    groups: dict = {}
    for r in runs:
        key = (r["task"], json.dumps(r["settings"], sort_keys=True))
        groups.setdefault(key, []).append(r)
    for rs in groups.values():
        rs.sort(key=lambda r: r["seed"])
        seeds = [r["seed"] for r in rs]
        if len(set(seeds)) != len(seeds):
            raise SystemExit(f"error: {', '.join(r['name'] for r in rs)}: the same settings "
                             f"and seed twice (seeds {seeds})")
    return groups


def settings_label(settings: dict, reference: dict) -> str:
    """The settings that differ from ``reference`` (the recipe), or "recipe"."""
    diff = {k: v for k, v in settings.items() if json.dumps(v) != json.dumps(reference.get(k))}
    return ", ".join(f"{k}={v}" for k, v in sorted(diff.items())) or "recipe"


def rows(groups: dict) -> list[dict]:
    recipe = json.loads(json.dumps(TRAIN_PRESETS["recipe"]))
    out = []
    for (task, settings), rs in groups.items():
        out.append({"task": task, "settings": settings_label(json.loads(settings), recipe),
                    "runs": [r["name"] for r in rs], "seeds": [r["seed"] for r in rs],
                    "test": seed_stats([r["test_accuracy"] for r in rs]),
                    "val": seed_stats([r["best_val_acc"] for r in rs]),
                    "test_per_seed": [r["test_accuracy"] for r in rs],
                    "tested_epochs": [r["tested_epoch"] for r in rs]})
    return out


def markdown(table: list[dict]) -> str:
    def cell(s):
        if s["n"] < 2:          # no spread from one seed: say so rather than print +- 0
            return "-" if not s["n"] else f"{100 * s['mean']:.2f} (one seed)"
        return f"{100 * s['mean']:.2f} +- {100 * s['std']:.2f}"
    lines = ["| task | settings | seeds | test % mean +- std | test % per seed | best "
             "validation % mean +- std | tested epochs |", "|---|---|---|---|---|---|---|"]
    for r in table:
        per = ", ".join(f"{100 * x:.2f}" for x in r["test_per_seed"])
        lines.append(f"| {r['task']} | {r['settings']} | {', '.join(map(str, r['seeds']))} | "
                     f"{cell(r['test'])} | {per} | {cell(r['val'])} | "
                     f"{', '.join(map(str, r['tested_epochs']))} |")
    return "\n".join(lines) + "\n"


def batches_per_epoch(run: dict) -> int:
    """Batches (updates of the whole network) in one of the run's epochs: its training images
    over its batch size, the last batch partial."""
    return -(-int(run["n_train"]) // int(run["settings"]["batch_size"]))


#: learning-curve x axes of the plot: epochs, or training batches (runs on fewer images make
#: more epochs of fewer batches; on this axis they line up by the updates they have made)
X_AXES = {"epoch": "epoch", "batch": "training batches"}


def plot(groups: dict, table: list[dict], out: Path, x_axis: str = "epoch") -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for k, (rs, row) in enumerate(zip(groups.values(), table)):
        seeds = f"{len(rs)} seed" + ("s" if len(rs) > 1 else "")
        colour, label = f"C{k}", f"{row['task']}, {row['settings']} ({seeds})"
        n = min(len(r["history"]) for r in rs)
        val = 100 * np.array([[e["val_acc"] for e in r["history"][:n]] for r in rs])
        ps_n = min(len(r["per_step_accuracy"]) for r in rs)
        ps = 100 * np.array([r["per_step_accuracy"][:ps_n] for r in rs])
        per_epoch = batches_per_epoch(rs[0]) if x_axis == "batch" else 1
        for ax, curves, step in ((axes[0], val, per_epoch), (axes[1], ps, 1)):
            x = np.arange(1, curves.shape[1] + 1) * step
            mean, sd = curves.mean(0), curves.std(0, ddof=1) if len(rs) > 1 else 0 * curves[0]
            ax.plot(x, mean, color=colour, label=label)
            ax.fill_between(x, mean - sd, mean + sd, color=colour, alpha=0.25, lw=0)
    axes[0].set(xlabel=X_AXES[x_axis], ylabel="validation accuracy (%)", title="learning curves")
    axes[1].set(xlabel="time step", ylabel="test accuracy of the running readout (%)",
                title="per-step accuracy")
    axes[0].legend(fontsize=7)
    fig.suptitle("mean +- std over seeds")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (results.json inside)")
    parser.add_argument("--out", type=Path, default=None, help="also draw this PNG")
    parser.add_argument("--x", choices=X_AXES, default="epoch",
                        help="the learning curves' x axis: epochs, or training batches (to "
                             "compare runs on different numbers of images at equal updates)")
    args = parser.parse_args(argv)
    groups = group_runs([load_run(run) for run in args.runs])
    table = rows(groups)
    print(markdown(table), end="")
    if args.out is not None:
        plot(groups, table, args.out, args.x)
    return table


if __name__ == "__main__":
    main()
