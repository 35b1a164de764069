"""Finite differences of a loss and the element-wise error metric of ``spikesim gradcheck``
(docs/validation.md).

Derivatives are fourth-order central differences, (-L(+2h) + 8 L(+h) - 8 L(-h) + L(-2h)) / 12h,
float64, of every element of a small tensor, or of a sample of a large one (the largest and
smallest gradients and random elements) together with one random direction through the whole
tensor.

The error of one element compares a computed gradient g with an independent value r (finite
differences or the NumPy reference):

    e = |g - r| / (|r| + a),    a = floor_rel * max|g, r| over the tensor + floor_abs

so that large elements are checked relatively and elements near zero absolutely, against the
tensor's scale and the noise of the method (finite differences: about 1e-12 |L| in float64).
A tensor's error is its worst element's, which is printed with its index.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP = 2e-4             # the finite-difference step h (float64, parameters of order 0.1-10)


@dataclass
class ElementError:
    """The worst element of a comparison: its error, index, computed and independent value,
    and how many of the tensor's elements were compared."""
    err: float
    index: tuple
    got: float
    want: float
    checked: int
    total: int

    def describe(self) -> str:
        where = ",".join(str(i) for i in self.index) if self.index else "-"
        part = "" if self.checked == self.total else f", {self.checked} of {self.total} elements"
        return f"worst [{where}]: {self.got:.6e} vs {self.want:.6e}{part}"


def elementwise_error(got, want, floor_rel: float, floor_abs: float = 0.0, index=None,
                      total: int | None = None) -> ElementError:
    """The metric above over arrays ``got`` and ``want`` of equal shape (or the values at
    ``index``, a list of index tuples into a tensor of ``total`` elements)."""
    got = np.asarray(got, np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    if got.shape != want.shape:
        raise ValueError(f"cannot compare {got.shape} with {want.shape}")
    if got.size == 0:
        return ElementError(0.0, (), 0.0, 0.0, 0, total or 0)
    scale = max(float(np.max(np.abs(got))), float(np.max(np.abs(want))))
    a = floor_rel * scale + floor_abs
    diff = np.abs(got - want)
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(diff == 0, 0.0, diff / (np.abs(want) + a))
    k = int(np.argmax(e))
    idx = tuple(index[k]) if index is not None else (k,)
    return ElementError(float(e[k]), idx, float(got[k]), float(want[k]), got.size,
                        total if total is not None else got.size)


def choose_elements(grad: np.ndarray, limit: int, rng: np.random.Generator) -> list:
    """All indices of ``grad`` when it has at most ``limit`` elements; else the largest and
    smallest |grad| (8 of each, fewer for a small limit) and random others, ``limit`` in all
    (sorted, unique)."""
    n = grad.size
    if n <= limit:
        return list(np.ndindex(grad.shape))
    order = np.argsort(np.abs(grad).ravel(), kind="stable")
    k = max(1, min(8, limit // 4))
    pick = set(order[-k:].tolist()) | set(order[:k].tolist())
    rest = np.setdiff1d(np.arange(n), np.fromiter(pick, np.int64))
    pick |= set(rng.choice(rest, size=limit - len(pick), replace=False).tolist())
    return [np.unravel_index(i, grad.shape) for i in sorted(pick)]


def _central(loss, set_value, h):
    vals = []
    for step in (2 * h, h, -h, -2 * h):
        set_value(step)
        vals.append(loss())
    set_value(0.0)
    return (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * h)


def fd_elements(loss, tensor: np.ndarray, index: list, h: float = STEP) -> np.ndarray:
    """d loss / d tensor[i] for each i of ``index`` (``tensor`` is changed in place and
    restored exactly; ``loss()`` reads it)."""
    out = np.empty(len(index))
    for n, i in enumerate(index):
        orig = tensor[i]

        def set_value(step, i=i, orig=orig):
            tensor[i] = orig + step
        out[n] = _central(loss, set_value, h)
        tensor[i] = orig
    return out


def fd_direction(loss, tensor: np.ndarray, direction: np.ndarray, h: float = STEP) -> float:
    """The derivative of loss along ``direction`` (same shape as ``tensor``)."""
    orig = tensor.copy()

    def set_value(step):
        tensor[...] = orig + step * direction
    d = _central(loss, set_value, h)
    tensor[...] = orig
    return d
