"""Readouts, losses and their gradients (docs/model.md section 3).

All take the last layer's readout ``out`` (T, B, C), time-major, and return a
:class:`LossResult` with the loss (mean over the batch), dL/d(out) (T, B, C) when asked,
and the predictions. Computed in float64; the gradient is returned in ``out``'s dtype.
With ``work`` (a dict the caller keeps), the gradient and prediction arrays are reused from
call to call, and each result's arrays are overwritten by the next call.

- ``nll_per_step`` (ECG): sum over t >= start of NLL(log_softmax(u_t), y_t); labels (B, T),
  label -1 masks a step. Prediction per step: argmax u_t.
- ``ce_sum_softmax`` (SHD): z = carry + sum over t >= start of softmax(u_t), then cross-entropy
  of z taken as logits (as the official code applies nn.CrossEntropyLoss to it); labels (B,).
- ``ce_sum_spike`` (S-MNIST "adp-spike"): z = carry + sum over t >= start of s_t, cross-entropy
  of z; ``carry`` is the detached running sum of earlier truncated-BPTT chunks; labels (B,).
Ties in argmax go to the lowest class index.

The softmaxes here are fused into the loss loops (per-step NLL on 16-row blocks, the summed
readout in the kernel's dtype with ``fexp``, the final cross-entropy in float64), so they are
not calls of ``spikesim.model.readout.softmax``, the NumPy one that the code above the backends
uses. Each is the same formula, exp(u - max u) / sum; they differ only in rounding, and
replacing any of them with another changes the loss's last bits (measured: the cross-entropy's
float64 softmax replaced by the summed-readout one changes 112 of 330 fingerprinted arrays).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...model.config import LOSSES
from ...model.primitives import fexp
from ..base import LossResult
from .simd import LANES, vload, vstore
from .threads import n_chunks, run_chunks
from .workspace import work_array


def _check(out, labels, start, per_step):
    if not isinstance(out, np.ndarray) or out.ndim != 3:
        raise ValueError(
            f"readout must be a (T, B, C) array, got {getattr(out, 'shape', type(out))}")
    T, B, C = out.shape
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    want = (B, T) if per_step else (B,)
    if labels.shape != want:
        raise ValueError(f"labels have shape {labels.shape}, expected {want}")
    lo = -1 if per_step else 0
    if labels.size and (labels.min() < lo or labels.max() >= C):
        raise ValueError(
            f"labels must lie in [{lo}, {C - 1}], found [{labels.min()}, {labels.max()}]")
    if start >= T:
        raise ValueError(f"loss start {start} is beyond the sequence length {T}")
    return np.ascontiguousarray(labels, dtype=np.int64)


@njit(inline="always")
def _row_max(uf, o, C):
    """(max, first argmax) of uf[o:o + C], branch-free: the comparisons are unpredictable."""
    m = uf[o]
    am = 0
    for k in range(1, C):
        am = k if uf[o + k] > m else am
        m = max(m, uf[o + k])
    return m, am


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _nll_rows(c, lo, hi, u, labels, start, scale, g, want_grad, loss, pred, hits, valid):
    """Rows [lo, hi) of u (rows (t, b) of the readout from step ``start`` on), with
    y[r] = labels[b, start + t] read in place from the (B, T) labels: pred[r] = argmax u[r]
    (first maximum); loss[c] += -log_softmax(u[r])[y[r]] (rows with y < 0 skipped),
    accumulated in float64; g[r] = scale * (softmax(u[r]) - onehot(y[r])) when ``want_grad``;
    hits[c] += the rows with y >= 0 and pred == y, valid[c] += the rows with y >= 0.
    The exponentials use the kernels' ``fexp`` (exact in float64, a polynomial good to 1e-5 in
    float32) and the gradient run on 16-lane vectors over blocks of 8 rows, with
    each row's maximum and 1 / sum broadcast into ``mb`` and ``tb``: scalar code per class took
    most of the time."""
    C = u.shape[1]
    B = labels.shape[0]
    uf, gf = u.reshape(-1), g.reshape(-1)
    y = np.empty(8, np.int64)           # the block's labels
    mb = np.empty(8 * C, u.dtype)       # each row's maximum, repeated C times
    tb = np.empty(8 * C, u.dtype)       # 1 / each row's sum of exp (0: a masked row, g = 0)
    e = np.empty(8 * C, u.dtype)        # exp(u - max) of the block's rows
    acc = 0.0                           # summed here, stored once: loss[c] shares a cache line
    prod = 1.0                          # product of the rows' sums of exp, each in [1, C]: one log
    nh = 0                              # per many rows (a log per row took most of the time)
    nv = 0
    ty, by = start + lo // B, lo % B   # the step and batch row of row r0
    for r0 in range(lo, hi, 8):
        nr = min(8, hi - r0)
        n = nr * C
        for k in range(nr):
            y[k] = labels[by, ty]
            nv += y[k] >= 0
            by += 1
            if by == B:
                by = 0
                ty += 1
            m, am = _row_max(uf, (r0 + k) * C, C)
            pred[r0 + k] = am
            for j in range(C):
                mb[k * C + j] = m
        for q in range(0, n, LANES):
            w = min(LANES, n - q)
            vstore(e, q, w, fexp(vload(uf, r0 * C + q, w) - vload(mb, q, w)))
        for k in range(nr):
            r = r0 + k
            yr = y[k]
            tot = u.dtype.type(0)
            for j in range(C):
                tot += e[k * C + j]
            if yr >= 0:
                acc -= np.float64(u[r, yr] - mb[k * C])
                prod *= np.float64(tot)
                if prod > 1e250:
                    acc += np.log(prod)
                    prod = 1.0
                nh += pred[r] == yr
                inv = 1 / tot
            else:
                inv = u.dtype.type(0)
            for j in range(C):
                tb[k * C + j] = inv
        if want_grad:
            for q in range(0, n, LANES):
                w = min(LANES, n - q)
                vstore(gf, r0 * C + q, w, scale * vload(e, q, w) * vload(tb, q, w))
            for k in range(nr):
                if y[k] >= 0:
                    g[r0 + k, y[k]] -= scale
    loss[c] += acc + np.log(prod)
    hits[c] += nh
    valid[c] += nv


@njit(cache=True, nogil=True)
def _softmax_rows(u, q):
    """q[r] = softmax(u[r]) in float64."""
    R, C = u.shape
    for r in range(R):
        m = u[r, 0]
        for c in range(1, C):
            m = max(m, u[r, c])
        tot = 0.0
        for c in range(C):
            q[r, c] = np.exp(np.float64(u[r, c]) - m)
            tot += q[r, c]
        for c in range(C):
            q[r, c] /= tot


def nll_per_step(out, labels, start=0, grad=True, carry=None, work=None):
    labels = _check(out, labels, start, True)
    T, B, C = out.shape
    g = work_array(work, "nll.g", out.shape, out.dtype) if grad else np.zeros((1, 1, 1), out.dtype)
    if grad:
        g[:start] = 0
    u2 = np.ascontiguousarray(out[start:]).reshape(-1, C)
    g2 = g[start:].reshape(-1, C) if grad else g.reshape(1, 1)
    R = (T - start) * B                                     # rows (t, b) as out
    nch = n_chunks(R)
    parts = np.zeros(nch)
    hits, valid = np.zeros(nch, np.int64), np.zeros(nch, np.int64)
    pred = work_array(work, "nll.pred", (T, B), np.int64)        # (B, T) below: all steps
    run_chunks(_nll_rows, R, u2, labels, start, out.dtype.type(1.0 / B), g2, grad, parts,
               pred[start:].reshape(-1), hits, valid, nch=nch)
    loss = parts.sum() / B
    pred[:start] = out[:start].argmax(axis=2)
    return LossResult(float(loss), g if grad else None, pred.T, int(hits.sum()), int(valid.sum()))


def _ce_logits(z, labels):
    z = np.ascontiguousarray(z, dtype=np.float64)
    p = np.empty_like(z)
    _softmax_rows(z, p)
    B = z.shape[0]
    loss = -np.log(p[np.arange(B), labels]).mean()
    dz = p.copy()
    dz[np.arange(B), labels] -= 1
    return float(loss), dz / B


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _softmax_sum(c, lo, hi, u, start, q, z):
    """For batch rows [lo, hi): q[t, b] = softmax(u[t, b]) for t >= start (in u's dtype, with
    ``fexp``), and z[b] = sum over those t of q[t, b], accumulated in float64."""
    T, B, C = u.shape
    for t in range(start, T):
        for b in range(lo, hi):
            ur, qr, zr = u[t, b], q[t, b], z[b]
            m = ur[0]
            for k in range(1, C):
                m = max(m, ur[k])
            tot = u.dtype.type(0)
            for k in range(C):
                qr[k] = fexp(ur[k] - m)
                tot += qr[k]
            inv = u.dtype.type(1) / tot
            for k in range(C):
                qr[k] *= inv
                zr[k] += qr[k]


@njit(cache=True, nogil=True, fastmath=True, error_model="numpy")
def _softmax_sum_grad(c, lo, hi, q, dz, start, g):
    """g[t, b] = J_softmax^T dz[b] = q (dz - <dz, q>) for t >= start (softmax's Jacobian)."""
    T, B, C = q.shape
    for t in range(start, T):
        for b in range(lo, hi):
            qr, dr, gr = q[t, b], dz[b], g[t, b]
            dot = 0.0
            for k in range(C):
                dot += dr[k] * qr[k]
            for k in range(C):
                gr[k] = qr[k] * (dr[k] - dot)


def ce_sum_softmax(out, labels, start=0, grad=True, carry=None, work=None):
    labels = _check(out, labels, start, False)
    T, B, C = out.shape
    out = np.ascontiguousarray(out)
    q = np.empty(out.shape, out.dtype)
    z = np.zeros((B, C)) if carry is None else np.array(carry, dtype=np.float64)
    run_chunks(_softmax_sum, B, out, start, q, z)
    loss, dz = _ce_logits(z, labels)
    pred = z.argmax(1)
    g = None
    if grad:
        g = work_array(work, "ce.g", out.shape, out.dtype)
        g[:start] = 0
        run_chunks(_softmax_sum_grad, B, q, dz, start, g)
    return LossResult(loss, g, pred, int((pred == labels).sum()), B, z)


def ce_sum_spike(out, labels, start=0, grad=True, carry=None, work=None):
    labels = _check(out, labels, start, False)
    T, B, C = out.shape
    z = out[start:].sum(0, dtype=np.float64) + (0 if carry is None else carry)
    loss, dz = _ce_logits(z, labels)
    pred = z.argmax(1)
    g = None
    if grad:
        g = work_array(work, "ce.g", out.shape, out.dtype)
        g[:start] = 0
        g[start:] = dz.astype(out.dtype)[None]
    return LossResult(loss, g, pred, int((pred == labels).sum()), B, z)


_FUNCS = {"nll_per_step": nll_per_step, "ce_sum_softmax": ce_sum_softmax,
          "ce_sum_spike": ce_sum_spike}


def compute(kind: str, out, labels, start=0, carry=None, grad=True, work=None) -> LossResult:
    """Dispatch to the named loss (``work``: see the module's docstring)."""
    if kind not in _FUNCS:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    if carry is not None:
        carry = np.asarray(carry, dtype=np.float64)
        if carry.shape != out.shape[1:]:
            raise ValueError(f"carry has shape {carry.shape}, expected {out.shape[1:]}")
    return _FUNCS[kind](out, labels, start, grad=grad, carry=carry, work=work)
