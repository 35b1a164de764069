"""Baselines without a spiking network on SHD-layout data: multinomial logistic regression on
(1) the spike count of each of the 700 units over the whole sample and (2) coarse
time-frequency bins (10 x 100 ms x 35 groups of 20 units). Features are log(1 + count),
standardised on the training samples. The L2 strength is chosen on speakers held out of the
training file (as ``spikesim train shd`` validates), then the model is refit on the whole
training file and scored on the test file, separately for seen and unseen speakers.

    python experiments/shd/baselines.py --data-dir ../shared/data/shd_synth [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from scipy.optimize import minimize

from spikesim.data.shd import Binning, SHDDataset, find_file, load_events
from spikesim.tasks.shd import speaker_split

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)


def unit_counts(ev) -> np.ndarray:
    """(N, 700) spikes per unit over the whole sample."""
    rows = np.repeat(np.arange(len(ev)), np.diff(ev.offsets))
    out = np.zeros((len(ev), 700))
    np.add.at(out, (rows, ev.units.astype(np.int64)), 1)
    return out


def time_frequency(ev) -> np.ndarray:
    """(N, 10 * 35) spikes per 100 ms bin and group of 20 units, over 0-1 s."""
    b = Binning(dt=0.1, n_bins=10, counts=True, channels="unit", pool=20)
    ds = SHDDataset(ev, b, np.float64)
    return np.concatenate([ds.get(np.arange(i, min(i + 256, len(ev))))[0].reshape(-1, 350)
                           for i in range(0, len(ev), 256)])


def fit(X, y, n_classes, l2):
    """Multinomial logistic regression (weights and biases) by L-BFGS."""
    N, D = X.shape
    Y = np.eye(n_classes)[y]

    def loss(w):
        W, b = w[:D * n_classes].reshape(D, n_classes), w[D * n_classes:]
        z = X @ W + b
        z -= z.max(1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(1, keepdims=True)
        val = -np.log(p[np.arange(N), y] + 1e-300).mean() + l2 * np.sum(W * W)
        g = (p - Y) / N
        return val, np.concatenate([(X.T @ g + 2 * l2 * W).ravel(), g.sum(0)])
    w0 = np.zeros(D * n_classes + n_classes)
    r = minimize(loss, w0, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return r.x[:D * n_classes].reshape(D, n_classes), r.x[D * n_classes:]


def predict(model, X):
    W, b = model
    return (X @ W + b).argmax(1)


def run(train_ev, test_ev, features, seed=0, n_val_speakers=2):
    Xtr, Xte = np.log1p(features(train_ev)), np.log1p(features(test_ev))
    ytr, yte = train_ev.labels, test_ev.labels
    K = max(train_ev.n_classes, test_ev.n_classes)
    tr, va, _ = speaker_split(train_ev.speakers, n_val_speakers, seed)
    mu, sd = Xtr[tr].mean(0), Xtr[tr].std(0) + 1e-6
    val_acc = {l2: float((predict(fit((Xtr[tr] - mu) / sd, ytr[tr], K, l2),
                                  (Xtr[va] - mu) / sd) == ytr[va]).mean()) for l2 in L2_GRID}
    l2 = max(val_acc, key=val_acc.get)
    mu, sd = Xtr.mean(0), Xtr.std(0) + 1e-6
    pred = predict(fit((Xtr - mu) / sd, ytr, K, l2), (Xte - mu) / sd)
    seen = np.isin(test_ev.speakers, np.unique(train_ev.speakers))
    acc = lambda m: float((pred[m] == yte[m]).mean()) if m.any() else None  # noqa: E731
    return {"test_accuracy": acc(np.ones_like(seen)), "seen_speakers": acc(seen),
            "unseen_speakers": acc(~seen), "l2": l2, "val_accuracy_per_l2": val_acc}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--dataset", default="shd")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    train_ev = load_events(find_file(args.data_dir, f"{args.dataset}_train"))
    test_ev = load_events(find_file(args.data_dir, f"{args.dataset}_test"))
    out = {}
    for name, feats in (("unit counts", unit_counts), ("time-frequency bins", time_frequency)):
        r = run(train_ev, test_ev, feats)
        out[name] = r
        print(f"{name:20s} test {r['test_accuracy'] * 100:.2f} %  seen "
              f"{r['seen_speakers'] * 100:.2f} %  unseen {r['unseen_speakers'] * 100:.2f} %  "
              f"(L2 {r['l2']:g} chosen on held-out speakers)")
    if args.json:
        from spikesim.train import manifest
        with open(args.json, "w") as f:
            json.dump({**out, "manifest": manifest.collect()}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
