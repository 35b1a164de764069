"""Evaluation metrics for per-step classification (ECG segmentation), in plain NumPy.

- :func:`confusion_matrix`: counts[true, pred] over the given steps.
- :func:`per_sequence_accuracy`: the accuracy of each sequence over steps ``start..T-1``
  (the official ECG metric uses start = 10 and counts unlabelled steps as class 0).
- :func:`boundaries`, :func:`boundary_detection`: segment onsets (a step where the label
  changes) and their detection, per class, within a tolerance of +-``tolerance`` steps,
  matched one to one (optimally, or greedily as the official ECG evaluation does).

Label -1 (or ``mask`` False) marks a step to leave out of the accuracy and the confusion
matrix.
"""
from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "per_sequence_accuracy", "pooled_accuracy", "boundaries",
           "match_boundaries", "match_nearest", "boundary_detection"]


def _as_2d(a, name):
    a = np.asarray(a)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2:
        raise ValueError(f"{name} must be (T,) or (N, T), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer classes, got dtype {a.dtype}")
    return a


def _pair(pred, labels):
    pred, labels = _as_2d(pred, "pred"), _as_2d(labels, "labels")
    if pred.shape != labels.shape:
        raise ValueError(f"pred {pred.shape} and labels {labels.shape} differ in shape")
    return pred, labels


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts: row = true class, column = predicted class.

    Any array shapes (flattened); entries whose true label is negative are skipped.
    """
    t = np.asarray(y_true).ravel()
    p = np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true ({t.size}) and y_pred ({p.size}) differ in size")
    keep = t >= 0
    t, p = t[keep].astype(np.int64), p[keep].astype(np.int64)
    if t.size and (t.max() >= n_classes or p.min() < 0 or p.max() >= n_classes):
        raise ValueError(f"classes must lie in [0, {n_classes - 1}]")
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes).astype(np.int64)


def _valid(labels, start, mask):
    valid = labels >= 0
    valid[:, :start] = False
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.ndim == 1:
            mask = mask[None, :]
        if mask.shape != labels.shape:
            raise ValueError(f"mask {mask.shape} and labels {labels.shape} differ in shape")
        valid &= mask
    return valid


def per_sequence_accuracy(pred, labels, start: int = 10, mask=None) -> np.ndarray:
    """Accuracy of each sequence over steps ``start..T-1`` -> (N,) float64.

    Steps with label < 0 or ``mask`` False are left out; a sequence with no step left
    gets NaN.
    """
    pred, labels = _pair(pred, labels)
    if start < 0 or start >= labels.shape[1]:
        raise ValueError(f"start {start} outside the sequence length {labels.shape[1]}")
    valid = _valid(labels, start, mask)
    correct = ((pred == labels) & valid).sum(1)
    n = valid.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, correct / np.maximum(n, 1), np.nan)


def pooled_accuracy(pred, labels, start: int = 10, mask=None) -> float:
    """Correct steps / counted steps over all sequences (steps ``start..T-1``)."""
    pred, labels = _pair(pred, labels)
    valid = _valid(labels, start, mask)
    return float(((pred == labels) & valid).sum() / max(1, valid.sum()))


def boundaries(seq, start: int = 0) -> tuple:
    """Segment onsets of a 1-D label sequence: (steps, classes) where seq[t] != seq[t-1],
    for t > start (the comparison uses steps >= start only). Steps whose new label is
    negative (unlabelled under the mask policy) are not onsets."""
    seq = np.asarray(seq)
    if seq.ndim != 1:
        raise ValueError(f"a label sequence must be 1-D, got shape {seq.shape}")
    t = np.nonzero(seq[start + 1:] != seq[start:-1])[0] + start + 1
    t = t[seq[t] >= 0]
    return t, seq[t]


def match_boundaries(true_t, pred_t, tolerance: int) -> int:
    """Number of one-to-one matches between two sets of steps with |t_true - t_pred| <=
    tolerance (maximum matching; a sweep over the sorted steps is optimal in 1-D)."""
    a, b = np.sort(np.asarray(true_t)), np.sort(np.asarray(pred_t))
    i = j = m = 0
    while i < len(a) and j < len(b):
        if b[j] < a[i] - tolerance:
            j += 1
        elif b[j] > a[i] + tolerance:
            i += 1
        else:
            m += 1
            i += 1
            j += 1
    return m


def match_nearest(true_t, pred_t, tolerance: float) -> int:
    """One-to-one matches as the official ECG evaluation counts them: each true onset, in
    time order, takes the nearest still unmatched predicted onset (the earlier one on a tie)
    and counts when it is at most ``tolerance`` steps away."""
    left = list(np.sort(np.asarray(pred_t)))
    m = 0
    for t in np.sort(np.asarray(true_t)):
        if not left:
            break
        d = np.abs(np.asarray(left) - t)
        j = int(np.argmin(d))
        if d[j] <= tolerance:
            m += 1
            left.pop(j)
    return m


def boundary_detection(pred, labels, n_classes: int, tolerance: float = 10, start: int = 0,
                       method: str = "optimal") -> dict:
    """Per-class detection of segment onsets.

    A true onset of class c is a step t > start with labels[t] = c != labels[t-1]; a
    predicted onset likewise from ``pred``. Within each sequence, true and predicted onsets
    of the same class are matched one to one when at most ``tolerance`` steps apart:
    ``method="optimal"`` finds the most matches (:func:`match_boundaries`), ``"nearest"``
    counts them as the official evaluation does (:func:`match_nearest`).
    Returns ``{"tp", "fp", "fn"}`` (each an (n_classes,) int64 array) plus ``precision``,
    ``recall``, ``f1`` (per class, NaN where undefined) and ``tolerance``.
    """
    pred, labels = _pair(pred, labels)
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    if method not in ("optimal", "nearest"):
        raise ValueError(f"unknown matching method {method!r}; choose optimal or nearest")
    match = match_boundaries if method == "optimal" else match_nearest
    tp = np.zeros(n_classes, np.int64)
    fp = np.zeros(n_classes, np.int64)
    fn = np.zeros(n_classes, np.int64)
    for p, y in zip(pred, labels):
        tt, tc = boundaries(y, start)
        pt, pc = boundaries(p, start)
        for c in range(n_classes):
            a, b = tt[tc == c], pt[pc == c]
            m = match(a, b, tolerance)
            tp[c] += m
            fn[c] += len(a) - m
            fp[c] += len(b) - m
    with np.errstate(invalid="ignore", divide="ignore"):
        prec = tp / (tp + fp)
        rec = tp / (tp + fn)
        f1 = 2 * prec * rec / (prec + rec)
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1,
            "tolerance": tolerance, "method": method}
