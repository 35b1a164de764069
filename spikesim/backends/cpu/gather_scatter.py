"""Gathers and scatter-adds over lists: the input current of a row (weight rows gathered over
the entries that fired, sums held in vector registers), the weight-gradient scatters (regrouped
by column for wide layers), the bias sums, and the gradient handed to the layer below.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .blas import matmul
from .flat import block_widths, load4, load8, store4, store8, vcopy
from .lists import entry_rows
from .simd import vadd_ordered, vfma, vload, vload16, vstore16, zeros64

GROUP_N = 64          # from this layer width on, weight-gradient scatters are grouped by column


@njit(inline="always")
def _gather4(a0, a1, a2, a3, Wf, N, j0, w0, w1, w2, w3, col, val, p, p1):
    """(a0..a3) + sum over entries p <= q < p1 of val[q] * W[col[q], j0:j0 + 64], W (., N) flat:
    the block's accumulators stay in registers over all entries (``spikesim.backends.cpu.simd``).
    Blocks of at most 16 lanes take a loop of their own (one vector per entry)."""
    if w1 == 0:
        for q in range(p, p1):
            a0 = vfma(a0, val[q], vload(Wf, col[q] * N + j0, w0))
        return a0, a1, a2, a3
    for q in range(p, p1):
        k = col[q] * N + j0
        v = val[q]
        a0 = vfma(a0, v, vload(Wf, k, w0))
        a1 = vfma(a1, v, vload(Wf, k + 16, w1))
        a2 = vfma(a2, v, vload(Wf, k + 32, w2))
        a3 = vfma(a3, v, vload(Wf, k + 48, w3))
    return a0, a1, a2, a3


@njit(inline="always")
def _gather8(a, Wf, N, j0, col, val, p, p1):
    """``_gather4`` for a full block of 128 lanes, a = eight accumulators: twice the lanes per
    pass over the entries (their indices and values are read half as often)."""
    a0, a1, a2, a3, a4, a5, a6, a7 = a
    for q in range(p, p1):
        k = col[q] * N + j0
        v = val[q]
        a0 = vfma(a0, v, vload16(Wf, k))
        a1 = vfma(a1, v, vload16(Wf, k + 16))
        a2 = vfma(a2, v, vload16(Wf, k + 32))
        a3 = vfma(a3, v, vload16(Wf, k + 48))
        a4 = vfma(a4, v, vload16(Wf, k + 64))
        a5 = vfma(a5, v, vload16(Wf, k + 80))
        a6 = vfma(a6, v, vload16(Wf, k + 96))
        a7 = vfma(a7, v, vload16(Wf, k + 112))
    return a0, a1, a2, a3, a4, a5, a6, a7


@njit(inline="always")
def _gather_rows(out, o, init, io, N, W1, c1, v1, p, p1, W2, c2, v2, q, q1):
    """out[o:o + N] = init[io:io + N] + sum over p <= k < p1 of v1[k] W1[c1[k]] + sum over
    q <= k < q1 of v2[k] W2[c2[k]] (flat arrays, W rows of N): a gather of weight rows over a
    list's entries, 128 lanes at a time in registers (``_gather8``), then 64 (``_gather4``).
    Each lane sums in the order init, first list, second list, as a scalar loop would."""
    j0 = 0
    while j0 + 128 <= N:
        a = _gather8(load8(init, io + j0), W1, N, j0, c1, v1, p, p1)
        store8(out, o + j0, _gather8(a, W2, N, j0, c2, v2, q, q1))
        j0 += 128
    while j0 < N:
        _gather_block64(out, o, init, io, N, j0, W1, c1, v1, p, p1, W2, c2, v2, q, q1)
        j0 += 64


@njit(inline="always")
def _gather_block64(out, o, init, io, N, j0, W1, c1, v1, p, p1, W2, c2, v2, q, q1):
    """``_gather_rows`` for the lanes [j0, min(N, j0 + 64)): one block of four accumulators."""
    w0, w1, w2, w3 = block_widths(N - j0)
    a0, a1, a2, a3 = load4(init, io + j0, w0, w1, w2, w3)
    a0, a1, a2, a3 = _gather4(a0, a1, a2, a3, W1, N, j0, w0, w1, w2, w3, c1, v1, p, p1)
    a0, a1, a2, a3 = _gather4(a0, a1, a2, a3, W2, N, j0, w0, w1, w2, w3, c2, v2, q, q1)
    store4(out, o + j0, w0, w1, w2, w3, a0, a1, a2, a3)


@njit(inline="always")
def input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wr, rec, lp0, lp1, lcol,
                   lval, Ib):
    """Ib[(b - lo) * N + j] = bias + W_in x_t + W_rec s_{t-1} for the chunk's rows: gathers of
    rows of W_in^T over the input's non-zeros and of W_rec^T over the layer's own spikes of
    step t-1 (its lists, row t * B + b = slot t); Wi, Wr: the transposed weights, flat."""
    for b in range(lo, hi):
        r = t * B + b
        _gather_rows(Ib, (b - lo) * N, bias, 0, N, Wi, xcol, xval, xp0[r], xp1[r], Wr, lcol, lval,
                     lp0[r], lp1[r] if rec else lp0[r])


@njit(inline="always")
def _scatter_row(dWf, base, S, N, gf, go, col, val, p, p1):
    """dW^T[col[q]] += val[q] * g for entries p <= q < p1, g = gf[go:go + N] one row of dL/dI,
    held in registers 128 lanes at a time; dW rows (stride S) are padded to whole vectors."""
    j0 = 0
    while j0 + 128 <= N:
        g0, g1, g2, g3, g4, g5, g6, g7 = load8(gf, go + j0)
        for q in range(p, p1):
            k = base + col[q] * S + j0
            v = val[q]
            vstore16(dWf, k, vfma(vload16(dWf, k), v, g0))
            vstore16(dWf, k + 16, vfma(vload16(dWf, k + 16), v, g1))
            vstore16(dWf, k + 32, vfma(vload16(dWf, k + 32), v, g2))
            vstore16(dWf, k + 48, vfma(vload16(dWf, k + 48), v, g3))
            vstore16(dWf, k + 64, vfma(vload16(dWf, k + 64), v, g4))
            vstore16(dWf, k + 80, vfma(vload16(dWf, k + 80), v, g5))
            vstore16(dWf, k + 96, vfma(vload16(dWf, k + 96), v, g6))
            vstore16(dWf, k + 112, vfma(vload16(dWf, k + 112), v, g7))
        j0 += 128
    while j0 < N:
        _scatter_block64(dWf, base, S, N, j0, gf, go, col, val, p, p1)
        j0 += 64


@njit(inline="always")
def _scatter_block64(dWf, base, S, N, j0, gf, go, col, val, p, p1):
    """``_scatter_row`` for the lanes [j0, min(N, j0 + 64)): one block of four vectors of g."""
    w0, w1, w2, w3 = block_widths(N - j0)
    g0, g1, g2, g3 = load4(gf, go + j0, w0, w1, w2, w3)
    for q in range(p, p1):          # (the tests of w are hoisted out of the loop by LLVM)
        k = base + col[q] * S + j0
        v = val[q]
        vstore16(dWf, k, vfma(vload16(dWf, k), v, g0))
        if w1:
            vstore16(dWf, k + 16, vfma(vload16(dWf, k + 16), v, g1))
        if w2:
            vstore16(dWf, k + 32, vfma(vload16(dWf, k + 32), v, g2))
        if w3:
            vstore16(dWf, k + 48, vfma(vload16(dWf, k + 48), v, g3))


@njit(inline="always")
def _scatter_flat(dWf, base, S, N, gf, col, val, P0, n, rows):
    """``_scatter_row`` over a whole step's entries in one loop, for N <= 64:
    dW^T[col[e]] += val[e] * g[rows[k]] for the entries e = P0 + k, k < n (``entry_rows``).
    The dW rows are updated with whole-vector loads and stores, which forward to each other."""
    w0, w1, w2, w3 = block_widths(N)
    for k in range(n):
        e = P0 + k
        d = base + col[e] * S
        go = rows[k] * N
        v = val[e]
        vstore16(dWf, d, vfma(vload16(dWf, d), v, vload(gf, go, w0)))
        if w1:
            vstore16(dWf, d + 16, vfma(vload16(dWf, d + 16), v, vload(gf, go + 16, w1)))
        if w2:
            vstore16(dWf, d + 32, vfma(vload16(dWf, d + 32), v, vload(gf, go + 32, w2)))
        if w3:
            vstore16(dWf, d + 48, vfma(vload16(dWf, d + 48), v, vload(gf, go + 48, w3)))


@njit(inline="always")
def _scatter_add(c, t, lo, hi, B, N, gf, p0, p1, col, val, dWf, work):
    """dWT[c, i] += sum over the chunk's rows b of step t of v * dL/dI_t[b], for each entry
    (i, v) of row t*B + b of the lists: the weight gradient of a gathered input.

    The entries are first regrouped by column i (a counting sort of the step's entries into
    ``work``), so that each row of dWT is a gather (``_gather_rows``) of the rows of dL/dI, loaded
    and stored once per step instead of once per contribution. For narrow layers
    (N < GROUP_N), or when the step has fewer than four entries per column, regrouping costs
    more than it saves, and each entry is added where it is (``_scatter_flat`` for narrow
    layers: all the step's entries in one loop; ``_scatter_row``: per row). dWT is a
    private accumulator whose rows are padded to whole vectors (``private_rows``), passed flat
    (dWf), as dL/dI (gf, rows of N)."""
    cnt, start, rows, vals = work
    ncol = cnt.shape[0]
    S = (N + 15) // 16 * 16                 # row stride of dWT (padded)
    base = c * ncol * S
    total = 0
    for b in range(lo, hi):
        total += p1[t * B + b] - p0[t * B + b]
    if N < GROUP_N:
        P0, ne = entry_rows(t, lo, hi, B, p0, p1, rows)
        _scatter_flat(dWf, base, S, N, gf, col, val, P0, ne, rows)
        return
    if total < 4 * ncol:
        for b in range(lo, hi):
            r = t * B + b
            _scatter_row(dWf, base, S, N, gf, (b - lo) * N, col, val, p0[r], p1[r])
        return
    for i in range(ncol):
        cnt[i] = 0
    for b in range(lo, hi):
        r = t * B + b
        for p in range(p0[r], p1[r]):
            cnt[col[p]] += 1
    k = 0
    for i in range(ncol):
        start[i] = k
        k += cnt[i]
        cnt[i] = start[i]                   # from here on: the fill cursor, then the end
    for b in range(lo, hi):
        r = t * B + b
        for p in range(p0[r], p1[r]):
            i = col[p]
            rows[cnt[i]] = b - lo
            vals[cnt[i]] = val[p]
            cnt[i] += 1
    for i in range(ncol):
        if cnt[i] > start[i]:
            o = base + i * S
            _gather_rows(dWf, o, dWf, o, N, gf, rows, vals, start[i], cnt[i], gf, rows, vals, 0, 0)


@njit(inline="always")
def private_copy(a):
    """A zeroed (1, ...) accumulator shaped like one chunk's slice of ``a`` (nch, ...): chunks
    sum into private memory and add to their slice once at the end, so that two threads never
    write the same cache line (the slices of neighbouring chunks share lines)."""
    return zeros64(a[0].size, a.dtype).reshape((1,) + a.shape[1:])


@njit(inline="always")
def private_rows(a):
    """``private_copy`` for weight gradients (nch, ncol, N), with rows padded to whole vectors
    (a multiple of 16 lanes), so that scatters update them with unmasked vector stores."""
    S = (a.shape[2] + 15) // 16 * 16
    return zeros64(a.shape[1] * S, a.dtype).reshape((1, a.shape[1], S))


@njit(inline="always")
def add_private_rows(c, a, private):
    """Add a chunk's private weight-gradient rows (``private_rows``) into its slice a[c]."""
    a[c] += private[0, :, :a.shape[2]]


@njit(inline="always")
def add_neuron_sums(c, a, flat, nb, N):
    """a[c, j] += the sum over the chunk's nb batch rows of flat[k * N + j] (per-neuron
    gradients such as dL/dalpha, accumulated per batch row in the time loop)."""
    for k in range(nb):
        for j in range(N):
            a[c, j] += flat[k * N + j]


@njit(inline="always")
def scatter_work(ncol, nb, dtype):
    """The work arrays of ``_scatter_add`` for ``ncol`` columns and ``nb`` rows."""
    return (np.empty(ncol, np.int64), np.empty(ncol, np.int64), np.empty(nb * ncol + 1, np.int64),
            np.empty(nb * ncol, dtype))


@njit(inline="always")
def _row_sums(db, g, nb, N):
    """db[:N] += the sum of the nb rows of g (rows of N, flat), in row order, 64 columns at a
    time in registers. (Through memory, each row's masked load waited for the previous row's
    masked store: they do not forward.) ``vadd_ordered`` keeps the sequential rounding."""
    j0 = 0
    while j0 < N:
        w0, w1, w2, w3 = block_widths(N - j0)
        a0, a1, a2, a3 = load4(db, j0, w0, w1, w2, w3)
        for b in range(nb):
            o = b * N + j0
            a0 = vadd_ordered(a0, vload(g, o, w0))
            a1 = vadd_ordered(a1, vload(g, o + 16, w1))
            a2 = vadd_ordered(a2, vload(g, o + 32, w2))
            a3 = vadd_ordered(a3, vload(g, o + 48, w3))
        store4(db, j0, w0, w1, w2, w3, a0, a1, a2, a3)
        j0 += 64


@njit(inline="always")
def weight_grads(c, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWinT, db, rec, lp0, lp1, lcol,
                  lval, dWrecT, xwork, lwork):
    """Add step t's contributions to dW_in^T, db and dW_rec^T (flat private accumulators):
    scatter-adds of the rows of dL/dI over the input's non-zeros and, from the layer's own
    spike lists (row t*B + b is slot t, i.e. s_{t-1}), over the spikes of step t-1."""
    _row_sums(db, gI, hi - lo, N)
    _scatter_add(c, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWinT, xwork)
    if rec:
        _scatter_add(c, t, lo, hi, B, N, gI, lp0, lp1, lcol, lval, dWrecT, lwork)


@njit(inline="always")
def input_grad(t, lo, hi, gI, Win, gx, gxf, gx_mode):
    """What the layer below needs of step t: with ``gx_mode`` 1, gx[t, lo:hi] = dL/dI_t W_in =
    dL/dx_t; with 2, gx[t, lo:hi] = dL/dI_t itself, when the layer is narrower than its input
    (the layer below forms the product per step: ``external_grad``), so the wide (T, B, N_in)
    array is never written and read back; 0: nothing (the first layer). gI, Win, gxf: flat."""
    N = gI.shape[0] // (hi - lo)
    if gx_mode == 1:
        M = gx.shape[2]
        matmul(gI, 0, Win, gxf, (t * gx.shape[1] + lo) * M, hi - lo, N, M)
    elif gx_mode == 2:
        vcopy(gxf, (t * gx.shape[1] + lo) * N, gI, 0, gI.shape[0])


@njit(inline="always")
def external_grad(t, lo, hi, g_ext, gef, W_ext, ext_prod, bf):
    """Where the gradient arriving from outside the layer for step t and the chunk's rows
    starts: in g_ext (gef: g_ext flat), or, when the layer above sent dL/dI (gx_mode 2), in bf
    after it is formed there as g_ext[t, lo:hi] @ W_ext (M, N; W_ext flat). The caller picks
    the array once (an array chosen per step costs reference counting)."""
    o = (t * g_ext.shape[1] + lo) * g_ext.shape[2]
    if ext_prod:
        M = g_ext.shape[2]
        matmul(gef, o, W_ext, bf, 0, hi - lo, M, W_ext.shape[0] // M)
        return 0
    return o

