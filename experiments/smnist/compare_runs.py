"""Plot the learning curves of several training runs side by side: validation and training
accuracy against the epoch and against the training time, one colour per run.

    python experiments/smnist/compare_runs.py RUN_DIR [RUN_DIR ...] --out compare.png

Each RUN_DIR holds the ``results.json`` (or ``history.json``) that ``spikesim train`` wrote;
the label of a run is its folder name. Needs matplotlib (the ``plot`` extra).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def load_history(run: Path) -> list[dict]:
    """The per-epoch history of a run folder, from results.json or else history.json."""
    results = run / "results.json"
    if results.exists():
        return json.loads(results.read_text())["history"]
    history = run / "history.json"
    if history.exists():
        return json.loads(history.read_text())
    raise SystemExit(f"error: {run} holds neither results.json nor history.json")


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (results.json inside)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    histories = {run.name: load_history(run) for run in args.runs}

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (name, hist) in enumerate(histories.items()):
        colour = f"C{k}"
        epochs = [e["epoch"] for e in hist]
        hours, total = [], 0.0
        for e in hist:
            total += e["seconds"]
            hours.append(total / 3600)
        val = [100 * e["val_acc"] for e in hist]
        train = [100 * e["train_acc"] for e in hist]
        for ax, x in zip(axes, (epochs, hours)):
            ax.plot(x, val, color=colour, label=f"{name}: validation")
            ax.plot(x, train, color=colour, ls=":", lw=1, label=f"{name}: training")
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training time (h, epochs' own seconds)")
    axes[0].set_ylabel("accuracy (%)")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
