"""Figures for training runs: learning curves, tau histograms, spike rasters, an ECG
sequence figure, a confusion matrix and an input-and-hidden raster figure.

matplotlib is optional: it is imported inside the functions; when it is missing a warning is
given once and the figure is skipped (the functions then return None). Figures are drawn on
the Agg canvas directly (no pyplot, no global backend change) and written as PNG; each
function returns the path written.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

__all__ = ["learning_curves", "tau_histograms", "raster", "sequence_figure", "confusion_figure",
           "raster_figure", "have_matplotlib"]

_WARNED = False


def have_matplotlib() -> bool:
    """True when matplotlib is importable; otherwise warns (once) and returns False."""
    global _WARNED
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        if not _WARNED:
            warnings.warn("matplotlib is not installed: figures are skipped", RuntimeWarning,
                          stacklevel=3)
            _WARNED = True
        return False


def _figure(nrows=1, ncols=1, figsize=(8, 4), **kw):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(str(path), dpi=100, format="png")
    return path


def learning_curves(history, path, selected_epoch: int | None = None,
                    selected_by: str = "selected"):
    """Train/validation loss and accuracy per epoch from Trainer history dicts (keys epoch,
    train_loss, train_acc, and, when there was a validation set, val_loss, val_acc).
    ``selected_epoch``: the epoch whose model was kept (``selected_by`` says by what rule), drawn
    as a vertical line with its accuracies in the legend."""
    if not have_matplotlib():
        return None
    history = list(history or [])
    if not history:
        raise ValueError("learning_curves: the history is empty")
    ep = [h["epoch"] for h in history]
    fig, ax = _figure(1, 2, figsize=(10, 4))
    for j, (key, title) in enumerate((("loss", "loss"), ("acc", "accuracy"))):
        a = ax[0, j]
        a.plot(ep, [h.get(f"train_{key}", np.nan) for h in history], label="train")
        if any(f"val_{key}" in h for h in history):
            a.plot(ep, [h.get(f"val_{key}", np.nan) for h in history], label="validation")
        sel = next((h for h in history if h["epoch"] == selected_epoch), None)
        if sel is not None:
            vals = ", ".join(f"{k} {sel[f'{k}_{key}']:.4g}" for k in ("train", "val")
                             if sel.get(f"{k}_{key}") is not None)
            a.axvline(selected_epoch, color="k", ls="--", lw=1,
                      label=f"epoch {selected_epoch} ({selected_by}): {vals}")
        a.set_xlabel("epoch")
        a.set_ylabel(title)
        a.set_title(title)
        a.grid(alpha=0.3)
        a.legend(fontsize="small")
    if any("val_loss" in h for h in history) and all(h.get("train_loss", 1) > 0 for h in history):
        ax[0, 0].set_yscale("log")
    return _save(fig, path)


def _tau_items(params, skip=()):
    return {k: np.asarray(v, float).ravel() for k, v in (params or {}).items()
            if (k.endswith(".tau_m") or k.endswith(".tau_adp")) and k not in skip}


def unused_time_constants(config) -> set:
    """The time-constant arrays a network holds but never uses: tau_adp of LIF layers (no
    adaptation: beta = 0) and of non-spiking layers."""
    return {f"{l.name}.tau_adp" for l in config.layers if not l.spiking or l.beta == 0}


def tau_histograms(params_before, params_after, path, config=None):
    """Histograms of every ``*.tau_m`` and ``*.tau_adp`` array, before and after training
    (one panel per array; either dict may be None). With the network's ``config``, arrays the
    network does not use are left out (:func:`unused_time_constants`)."""
    if not have_matplotlib():
        return None
    skip = unused_time_constants(config) if config is not None else set()
    before, after = _tau_items(params_before, skip), _tau_items(params_after, skip)
    names = sorted(set(before) | set(after))
    if not names:
        raise ValueError("tau_histograms: no *.tau_m or *.tau_adp arrays in the parameters")
    ncols = min(2, len(names))
    nrows = -(-len(names) // ncols)
    fig, ax = _figure(nrows, ncols, figsize=(5 * ncols, 3 * nrows))
    for i, name in enumerate(names):
        a = ax[i // ncols, i % ncols]
        vals = [v for v in (before.get(name), after.get(name)) if v is not None]
        lo, hi = min(v.min() for v in vals), max(v.max() for v in vals)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 31)
        if name in before:
            a.hist(before[name], bins=bins, alpha=0.5, label="before")
        if name in after:
            a.hist(after[name], bins=bins, alpha=0.5, label="after")
        a.set_title(name)
        a.set_xlabel("steps")
        a.legend()
    for i in range(len(names), nrows * ncols):
        ax[i // ncols, i % ncols].set_visible(False)
    return _save(fig, path)


def raster(ax, spikes, title: str = ""):
    """Draw a spike raster of ``spikes`` (T, N) on the matplotlib axes ``ax``."""
    s = np.asarray(spikes)
    if s.ndim != 2:
        raise ValueError(f"raster: spikes must be (T, N), got shape {s.shape}")
    t, n = np.nonzero(s > 0)
    ax.scatter(t, n, s=1.5, marker="|", c="k", linewidths=0.6)
    ax.set_xlim(-0.5, s.shape[0] - 0.5)
    ax.set_ylim(-0.5, max(1, s.shape[1]) - 0.5)
    ax.set_ylabel("neuron")
    if title:
        ax.set_title(title)
    return ax


def sequence_figure(x, hidden_spikes, out_mem, labels, pred, path, class_names=None):
    """One sequence: input spikes x (T, C), hidden raster (T, N), output membranes (T, K),
    and true vs predicted class per step (T,)."""
    if not have_matplotlib():
        return None
    x, hs, um = np.asarray(x), np.asarray(hidden_spikes), np.asarray(out_mem)
    labels, pred = np.asarray(labels), np.asarray(pred)
    K = um.shape[1]
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    fig, ax = _figure(4, 1, figsize=(12, 9), sharex=True,
                      gridspec_kw={"height_ratios": [1, 2, 2, 1]})
    raster(ax[0, 0], x, "input spikes")
    ax[0, 0].set_ylabel("channel")
    raster(ax[1, 0], hs, f"hidden layer ({hs.shape[1]} neurons)")
    a = ax[2, 0]
    for k in range(K):
        a.plot(um[:, k], lw=0.8, label=names[k])
    a.set_title("output membrane potential")
    a.legend(ncol=K, fontsize=7, loc="upper right")
    a = ax[3, 0]
    a.step(np.arange(len(labels)), labels, where="post", lw=1.5, label="true")
    a.step(np.arange(len(pred)), pred, where="post", lw=0.8, label="predicted")
    a.set_yticks(range(K))
    a.set_yticklabels(names, fontsize=7)
    a.set_xlabel("step")
    a.legend(fontsize=7, loc="upper right")
    acc = float((labels == pred).mean()) if len(labels) else float("nan")
    a.set_title(f"class per step (agreement {acc:.3f})")
    return _save(fig, path)


def confusion_figure(cm, path, class_names=None, title: str = "confusion matrix"):
    """The confusion matrix ``cm`` (true class per row, predicted per column), each row
    normalised to the fraction of its samples, with the counts written in the cells."""
    if not have_matplotlib():
        return None
    cm = np.asarray(cm)
    K = cm.shape[0]
    names = list(class_names) if class_names is not None else [str(k) for k in range(K)]
    frac = cm / np.maximum(1, cm.sum(1, keepdims=True))
    fig, ax = _figure(1, 1, figsize=(1.0 + 0.42 * K, 0.8 + 0.38 * K))
    a = ax[0, 0]
    a.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    for i in range(K):
        for j in range(K):
            if cm[i, j]:
                a.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=6,
                       color="white" if frac[i, j] > 0.5 else "black")
    a.set_xticks(range(K))
    a.set_xticklabels(names, rotation=90, fontsize=7)
    a.set_yticks(range(K))
    a.set_yticklabels(names, fontsize=7)
    a.set_xlabel("predicted")
    a.set_ylabel("true")
    acc = np.trace(cm) / max(1, cm.sum())
    a.set_title(f"{title} (accuracy {acc:.3f})")
    return _save(fig, path)


def raster_figure(x, layer_spikes: dict, path, title: str = ""):
    """One sample: the input raster x (T, C) beside the raster of each layer in
    ``layer_spikes`` (name -> (T, N))."""
    if not have_matplotlib():
        return None
    n = 1 + len(layer_spikes)
    fig, ax = _figure(1, n, figsize=(4.2 * n, 4.2))
    raster(ax[0, 0], x, "input")
    ax[0, 0].set_ylabel("channel")
    for a, (name, s) in zip(ax[0, 1:], layer_spikes.items()):
        raster(a, s, f"{name} ({np.asarray(s).shape[1]} neurons)")
    for a in ax[0]:
        a.set_xlabel("step")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
