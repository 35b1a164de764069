"""Readouts, losses and their gradients for the CUDA backend (docs/model.md section 3), as on
the CPU (``spikesim/backends/cpu/losses.py``): ``nll_per_step``, ``ce_sum_softmax``,
``ce_sum_spike``.

Two paths:

- ``compute_device``: the readout (T, B, C) stays on the device (``CudaBackend.readout``); the
  per-step softmaxes and their gradients run in kernels, one thread per row (t, b) or per
  sample, and the gradient dL/d(readout) stays on the device for the backward pass. Only what
  is small comes back: the per-row losses (T B,) or the summed readout z (B, C), and the
  predictions. The cross-entropy of z (B, C) runs on the host in float64 by the CPU's
  ``_ce_logits``, as on the CPU.
- ``compute``: the readout copied to the host, the CPU's loss kernels, for a host readout
  (``trace.output_mem``). ``Network.loss`` takes the device path: it reads the readout through
  ``CudaBackend.readout``; see docs/architecture.md, "CUDA backend".

As on the CPU: the exponentials are the model's ``fexp`` (exact in float64, the polynomial in
float32), per-row sums of exp in the kernel's dtype, the loss and the summed readout z
accumulated in float64 (so the float32 kernels hold float64 instructions on purpose), the
gradient in the readout's dtype, ties in argmax to the lowest class. The kernels keep the
simulator invariant of ``layers.py``: ``fexp``'s result is stored (into g or q) before use.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types

from ...model.config import LOSSES
from ...model.primitives import fexp
from ..base import LossResult
from ..cpu import losses as _cpu
from . import require_numba_cuda

cuda = require_numba_cuda()


@njit(inline="always")
def exp_shifted(u, m):
    """exp(u - m), u <= m: the softmax's numerator (``fexp``, as the CPU's loss kernels)."""
    return fexp(u - m)


def _nll_rows(u, labels, start, scale, one, g, loss_rows, pred):
    """Row r = t B + b of the readout u (T, B, C), one thread per row: pred[r] = argmax u[t, b]
    (first maximum); for t >= start and y = labels[b, t] >= 0: loss_rows[r] =
    -log_softmax(u[t, b])[y] in float64 and g[t, b] = scale (softmax(u[t, b]) - onehot(y));
    otherwise loss_rows[r] = 0 and g[t, b] = 0."""
    r = cuda.grid(1)
    T, B, C = u.shape
    if r >= T * B:
        return
    t, b = r // B, r % B
    m = u[t, b, 0]
    am = 0
    for c in range(1, C):
        if u[t, b, c] > m:
            m = u[t, b, c]
            am = c
    pred[r] = am
    y = labels[b, t]
    zero = one - one
    if t < start or y < 0:
        loss_rows[r] = 0.0
        for c in range(C):
            g[t, b, c] = zero
        return
    for c in range(C):
        g[t, b, c] = exp_shifted(u[t, b, c], m)
    tot = zero
    for c in range(C):
        tot += g[t, b, c]
    loss_rows[r] = math.log(np.float64(tot)) - np.float64(u[t, b, y] - m)
    inv = one / tot
    for c in range(C):
        g[t, b, c] = scale * g[t, b, c] * inv
    g[t, b, y] -= scale


def _softmax_sum(u, start, one, q, z):
    """One thread per sample b: q[t, b] = softmax(u[t, b]) (in u's dtype) for t >= start, and
    z[b] += each of them (float64; z holds the carry on entry)."""
    b = cuda.grid(1)
    T, B, C = u.shape
    if b >= B:
        return
    for t in range(start, T):
        m = u[t, b, 0]
        for c in range(1, C):
            m = max(m, u[t, b, c])
        for c in range(C):
            q[t, b, c] = exp_shifted(u[t, b, c], m)
        tot = one - one
        for c in range(C):
            tot += q[t, b, c]
        inv = one / tot
        for c in range(C):
            q[t, b, c] = q[t, b, c] * inv
            z[b, c] += q[t, b, c]


def _softmax_sum_grad(q, dz, start, g):
    """Row r = t B + b, one thread per row: g[t, b] = J_softmax^T dz[b] = q (dz - <dz, q>) for
    t >= start (dz (B, C) float64), 0 before."""
    r = cuda.grid(1)
    T, B, C = q.shape
    if r >= T * B:
        return
    t, b = r // B, r % B
    if t < start:       # (q holds nothing before start: not even a finite number)
        for c in range(C):
            g[t, b, c] = 0
        return
    dot = dz[b, 0] - dz[b, 0]
    for c in range(C):
        dot += dz[b, c] * q[t, b, c]
    for c in range(C):
        g[t, b, c] = q[t, b, c] * (dz[b, c] - dot)


def _spike_sum(s, start, z):
    """One thread per (b, c): z[b, c] += sum over t >= start of s[t, b, c] (float64)."""
    i = cuda.grid(1)
    T, B, C = s.shape
    if i >= B * C:
        return
    b, c = i // C, i % C
    for t in range(start, T):
        z[b, c] += s[t, b, c]


def _broadcast_grad(dz, start, g):
    """One thread per element: g[t, b, c] = dz[b, c] (in g's dtype) for t >= start, 0 before."""
    i = cuda.grid(1)
    T, B, C = g.shape
    if i >= T * B * C:
        return
    t, b, c = i // (B * C), (i // C) % B, i % C
    if t < start:
        g[t, b, c] = dz[b, c] - dz[b, c]
    else:
        g[t, b, c] = dz[b, c]


KERNELS = {"nll_rows": _nll_rows, "softmax_sum": _softmax_sum,
           "softmax_sum_grad": _softmax_sum_grad, "spike_sum": _spike_sum,
           "broadcast_grad": _broadcast_grad}
nll_rows = cuda.jit(_nll_rows)
softmax_sum = cuda.jit(_softmax_sum)
softmax_sum_grad = cuda.jit(_softmax_sum_grad)
spike_sum = cuda.jit(_spike_sum)
broadcast_grad = cuda.jit(_broadcast_grad)


def signature(name: str, dtype, sp_type=None) -> tuple:
    """The Numba argument types of the launches of kernel ``name`` in ``dtype``."""
    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    a1, a2, a3 = (types.Array(f, d, "C") for d in (1, 2, 3))
    d1, d2 = types.Array(types.float64, 1, "C"), types.Array(types.float64, 2, "C")
    i1, i2, i64 = types.Array(types.int64, 1, "C"), types.Array(types.int64, 2, "C"), types.int64
    sigs = {
        "nll_rows": (a3, i2, i64, f, f, a3, d1, i1),
        "softmax_sum": (a3, i64, f, a3, d2),
        "softmax_sum_grad": (a3, d2, i64, a3),
        "spike_sum": (a3, i64, d2),
        "broadcast_grad": (d2, i64, a3),
    }
    return sigs[name]


THREADS = 128      # threads per block of the loss kernels (one thread per row, sample or element)


def _launch(kernel, n, *args, threads=THREADS):
    kernel[max(1, math.ceil(n / threads)), threads](*args)


def _array(work, key, shape, dtype, host=None):
    """A device array (``host`` copied into it): kept in the dict ``work`` under (key, shape,
    dtype) from call to call, or new where ``work`` is None."""
    dtype = np.dtype(dtype)
    if work is None:
        return cuda.device_array(shape, dtype) if host is None else cuda.to_device(host)
    k = ("loss " + key, tuple(shape), dtype.str)
    a = work.get(k)
    if a is None:
        a = work[k] = cuda.device_array(shape, dtype)
    if host is not None:
        a.copy_to_device(np.ascontiguousarray(host, dtype=dtype))
    return a


def compute_device(kind: str, out, labels, start=0, carry=None, grad=True,
                   threads=THREADS, work=None) -> LossResult:
    """The loss ``kind`` on the device readout ``out`` (T, B, C); the result's ``grad`` is a
    device array (T, B, C) in ``out``'s dtype, everything else is on the host, as
    ``cpu.losses.compute`` returns it. ``threads``: per block (the tests set it small);
    ``work``: a dict in which the device arrays are kept from call to call (the backend's,
    with ``reuse_buffers``), so that the result's ``grad`` is overwritten by the next call."""
    if kind not in _cpu._FUNCS:
        raise ValueError(f"unknown loss {kind!r}; choose one of {', '.join(LOSSES)}")
    if len(out.shape) != 3:
        raise ValueError(f"readout must be a (T, B, C) array, got {out.shape}")
    T, B, C = out.shape
    d = np.dtype(out.dtype)
    # the CPU's checks of labels and start, on a stand-in of the readout's shape (a broadcast
    # view: no memory)
    labels = _cpu._check(np.broadcast_to(np.zeros(1, d), (T, B, C)), labels, start,
                         kind == "nll_per_step")
    if carry is not None:
        carry = np.asarray(carry, dtype=np.float64)
        if carry.shape != (B, C):
            raise ValueError(f"carry has shape {carry.shape}, expected {(B, C)}")
    g = _array(work, "g", (T, B, C), d)
    if kind == "nll_per_step":
        R = T * B
        loss_rows = _array(work, "rows", (R,), np.float64)
        pred_d = _array(work, "pred", (R,), np.int64)
        labels_d = _array(work, "labels", labels.shape, labels.dtype, labels)
        _launch(nll_rows, R, out, labels_d, start, d.type(1.0 / B), d.type(1), g,
                loss_rows, pred_d, threads=threads)
        pred = pred_d.copy_to_host().reshape(T, B).T
        y = labels[:, start:]
        valid = y >= 0
        hits = int((pred[:, start:] == y)[valid].sum())
        loss = float(loss_rows.copy_to_host().sum() / B)
        return LossResult(loss, g if grad else None, pred, hits, int(valid.sum()))
    z = _array(work, "z", (B, C), np.float64, np.zeros((B, C)) if carry is None else carry)
    if kind == "ce_sum_softmax":
        q = _array(work, "q", (T, B, C), d)
        _launch(softmax_sum, B, out, start, d.type(1), q, z, threads=threads)
    else:
        _launch(spike_sum, B * C, out, start, z, threads=threads)
    zh = z.copy_to_host()
    loss, dz = _cpu._ce_logits(zh, labels)
    pred = zh.argmax(1)
    if grad:
        dz_d = _array(work, "dz", (B, C), np.float64, dz)
        if kind == "ce_sum_softmax":
            _launch(softmax_sum_grad, T * B, q, dz_d, start, g, threads=threads)
        else:
            _launch(broadcast_grad, T * B * C, dz_d, start, g, threads=threads)
    return LossResult(loss, g if grad else None, pred, int((pred == labels).sum()), B, zh)


def compute(kind: str, out, labels, start=0, carry=None, grad=True, work=None):
    """The loss ``kind`` on the host readout ``out`` (T, B, C): ``cpu.losses.compute``."""
    return _cpu.compute(kind, out, labels, start, carry=carry, grad=grad, work=work)
