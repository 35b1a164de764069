"""Plots of a benchmark study (matplotlib, optional): per sweep, time per step and per
sample-step against the swept value (spikesim, the NumPy reference, PyTorch), the model's
bytes per second against the measured copy bandwidth, and a roofline (arithmetic intensity
against achieved GFLOP/s under the bandwidth and sgemm ceilings). Without sweeps: the roofline
of the points. The flops and bytes are the model counts of ``validation.bench_counts``; the
reference and PyTorch are placed at spikesim's intensity (the same useful work).
"""
from __future__ import annotations

import numpy as np

ENGINES = (("median_s", "spikesim", "C0", "o"), ("reference_s", "NumPy reference", "C1", "s"),
           ("torch_s", "PyTorch eager", "C2", "^"))


def _roofline(ax, points, ceil, label_key=None):
    bw = max(ceil["copy_gbs_1thread"], ceil["copy_gbs_all"])
    peak = ceil["sgemm_peak_gflops"]
    ai = np.array([p["intensity"] for p in points])
    lo, hi = min(ai.min(), bw and peak / bw) / 4, max(ai.max(), peak / bw) * 4
    xs = np.geomspace(lo, hi, 100)
    ax.loglog(xs, np.minimum(peak, bw * xs), "k-", lw=1)
    ax.text(lo, bw * lo * 1.3, f"{bw:.0f} GB/s", fontsize=7)
    ax.text(hi, peak * 1.1, f"sgemm {peak:.0f} GFLOP/s", fontsize=7, ha="right")
    for key, name, color, marker in ENGINES:
        pts = [(p["intensity"], p["model_flops"] / p[key] / 1e9, p) for p in points
               if p.get(key)]
        if not pts:
            continue
        ax.loglog([a for a, _, _ in pts], [g for _, g, _ in pts], marker, color=color,
                  label=name, ms=4)
        if label_key and key == "median_s":
            for a, g, p in pts:
                ax.annotate(str(p.get(label_key, p["config"])), (a, g), fontsize=6,
                            xytext=(2, 2), textcoords="offset points")
    ax.set_xlabel("flop / byte (model)", fontsize=7)
    ax.set_ylabel("GFLOP/s (model)", fontsize=7)
    ax.tick_params(labelsize=6)


def plot_study(result: dict, path: str) -> bool:
    """Write the study's plots to ``path`` (PNG); False (with a note) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return False
    ceil, sweeps = result["ceilings"], result["sweeps"]
    if not sweeps:
        fig, ax = plt.subplots(figsize=(4.5, 3.5))
        _roofline(ax, result["points"], ceil, "config")
        ax.legend(fontsize=6)
        ax.set_title("roofline", fontsize=8)
    else:
        mem = any("memory" in p for sw in sweeps for p in sw["points"])
        ncol = 5 if mem else 4
        fig, axes = plt.subplots(len(sweeps), ncol, figsize=(3.25 * ncol, 2.8 * len(sweeps)),
                                 squeeze=False)
        bw = max(ceil["copy_gbs_1thread"], ceil["copy_gbs_all"])
        for row, sw in zip(axes, sweeps):
            pts = sw["points"]
            xv = [p["sweep_value"] for p in pts]
            for key, name, color, marker in ENGINES:
                sel = [(x, p) for x, p in zip(xv, pts) if p.get(key)]
                if not sel:
                    continue
                row[0].loglog([x for x, _ in sel], [p[key] for _, p in sel], marker + "-",
                              color=color, label=name, ms=4)
                row[1].loglog([x for x, _ in sel],
                              [p[key] / (p["batch"] * p["steps"]) * 1e6 for _, p in sel],
                              marker + "-", color=color, ms=4)
            row[2].loglog(xv, [p["achieved_gbs"] for p in pts], "o-", color="C0", ms=4)
            row[2].axhline(bw, color="k", lw=1)
            row[2].text(xv[0], bw * 0.8, f"copy {bw:.0f} GB/s", fontsize=7, va="top")
            _roofline(row[3], pts, ceil, "sweep_value")
            if mem:
                for key, name, color in (("full", "spikesim full BPTT", "C0"),
                                         ("tbptt", "spikesim truncated", "C4"),
                                         ("torch", "PyTorch autograd", "C2")):
                    sel = [(x, p["memory"][key]["peak_bytes"] / 2 ** 20) for x, p in zip(xv, pts)
                           if "peak_bytes" in (p.get("memory") or {}).get(key, {})]
                    if sel:
                        row[4].loglog(*zip(*sel), "o-", color=color, ms=4, label=name)
                row[4].legend(fontsize=6)
            titles = ("s per step", "us per sample-step", "GB/s (model bytes)", "roofline",
                      "peak MiB of a step")
            for ax, t in zip(row, titles):
                ax.set_title(f"{sw['config']}: {t}", fontsize=8)
                ax.tick_params(labelsize=6)
            for ax in [*row[:3], *row[4:]]:
                ax.set_xlabel(sw["axis"], fontsize=7)
                ax.minorticks_off()
                ax.set_xticks(xv)
                ax.set_xticklabels([f"{v:g}" for v in xv])
            row[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    _shrink(path)
    return True


def _shrink(path):
    """Re-save the PNG with a 64-colour palette (a third of the size; the plots have few
    colours). Skipped where Pillow is missing."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(64)
    small.save(path, optimize=True)


def main(argv=None) -> int:
    """``python -m validation.bench_plot STUDY.json PLOT.png``: plot a saved study again."""
    import json
    import sys
    a = sys.argv[1:] if argv is None else argv
    with open(a[0]) as f:
        return 0 if plot_study(json.load(f), a[1]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
