"""Compare training runs: their learning curves side by side (validation and training accuracy
against the epoch and against the training time, one colour per run), and a table of the runs
at matched epochs.

    python experiments/smnist/compare_runs.py RUN_DIR [RUN_DIR ...] --out compare.png
    python experiments/smnist/compare_runs.py RUN_DIR [RUN_DIR ...] --at 10,20,40

The table is fair only between runs on the same learning-rate schedule (the same --epochs
with --schedule linear), where epoch N saw the same learning rates in every run; a probe
stopped early on the 180-epoch schedule compares with the full run's first N epochs.

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


def at_epochs(history: list[dict], epochs: list[int], window: int = 5) -> list[dict]:
    """One row per epoch N of ``epochs`` that ``history`` reached: validation and training
    accuracy at N, the mean validation accuracy of the ``window`` epochs ending at N (single
    epochs swing by several points on 500 validation images) and the best up to N."""
    by_epoch = {e["epoch"]: e for e in history}
    rows = []
    for n in epochs:
        if n not in by_epoch:
            continue
        upto = [e["val_acc"] for e in history if e["epoch"] <= n]
        recent = [e["val_acc"] for e in history if n - window < e["epoch"] <= n]
        rows.append({"epoch": n, "val": by_epoch[n]["val_acc"],
                     "val_mean": sum(recent) / len(recent), "val_best": max(upto),
                     "train": by_epoch[n]["train_acc"]})
    return rows


def print_table(histories: dict, epochs: list[int], window: int = 5) -> None:
    """A Markdown table of every run at the matched epochs, accuracies in %."""
    print(f"| run | epoch | validation | validation, mean of {window} epochs | best validation "
          "so far | training |")
    print("|---|---|---|---|---|---|")
    for name, hist in histories.items():
        rows = at_epochs(hist, epochs, window)
        if not rows:
            print(f"| {name} | (reached epoch {max((e['epoch'] for e in hist), default=0)}) "
                  "| | | | |")
        for r in rows:
            print(f"| {name} | {r['epoch']} | {100 * r['val']:.1f} | {100 * r['val_mean']:.1f} "
                  f"| {100 * r['val_best']:.1f} | {100 * r['train']:.1f} |")


def epoch_seconds(history: list[dict], pauses_over: float | None = None) -> list[float]:
    """The epochs' own seconds; with ``pauses_over``, an epoch that took longer (a run paused
    or stopped between sessions inside it) counts as the median of the run's other epochs."""
    seconds = [e["seconds"] for e in history]
    if not pauses_over:
        return seconds
    normal = sorted(s for s in seconds if s <= pauses_over)
    median = normal[len(normal) // 2] if normal else pauses_over
    return [s if s <= pauses_over else median for s in seconds]


def parse_epochs(text: str) -> list[int]:
    try:
        epochs = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected epochs like 10,20,40, got {text!r}") from None
    if not epochs or min(epochs) < 1:
        raise argparse.ArgumentTypeError(f"expected positive epochs like 10,20,40, got {text!r}")
    return epochs


def main(argv=None) -> Path | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (results.json inside)")
    parser.add_argument("--out", type=Path, default=None, help="the PNG to write")
    parser.add_argument("--at", type=parse_epochs, default=None, metavar="N,N,...",
                        help="print the runs at these epochs as a Markdown table")
    parser.add_argument("--window", type=int, default=5,
                        help="epochs averaged in the table's mean column (default: 5)")
    parser.add_argument("--pauses-over", type=float, default=None, metavar="SECONDS",
                        help="on the time axis, count an epoch longer than this (one that "
                             "holds a pause) at its run's median epoch time")
    args = parser.parse_args(argv)
    if args.out is None and args.at is None:
        parser.error("give --out (a plot), --at (a table) or both")
    if args.window < 1:
        parser.error("--window must be at least 1")
    histories = {run.name: load_history(run) for run in args.runs}
    if args.at:
        print_table(histories, args.at, args.window)
    if args.out is None:
        return None

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for k, (name, hist) in enumerate(histories.items()):
        colour = f"C{k}"
        epochs = [e["epoch"] for e in hist]
        hours, total = [], 0.0
        for seconds in epoch_seconds(hist, args.pauses_over):
            total += seconds
            hours.append(total / 3600)
        val = [100 * e["val_acc"] for e in hist]
        train = [100 * e["train_acc"] for e in hist]
        for ax, x in zip(axes, (epochs, hours)):
            ax.plot(x, val, color=colour, label=f"{name}: validation")
            ax.plot(x, train, color=colour, ls=":", lw=1, label=f"{name}: training")
    axes[0].set_xlabel("epoch")
    axes[1].set_xlabel("training time (h, epochs' own seconds"
                       + (f"; any over {args.pauses_over:g} s as the median)"
                          if args.pauses_over else ")"))
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
