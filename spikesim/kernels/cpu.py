"""Numba CPU kernels: the forward and the backward pass of each layer kind over a whole
sequence, with the input projection fused into the forward and the weight gradients and the
gradient to the layer below fused into the backward.

Why fused: these loops are bound by memory traffic, not arithmetic (one core reads about
18 GB/s and writes about 9 GB/s here, the two cores share about 20 GB/s, and a neuron step
does ~10 flops per 4-byte value it touches). Fusing removes the input-current and
current-gradient arrays (T, B, N) altogether: the current is formed row by row from the
input's non-zeros, and each row of dL/dI is used for the weight gradients while it is still in
cache.

Layout: time-major, C-contiguous. The membrane u has T + 1 time slots: slot 0 holds the
initial state and slot t + 1 the state after step t, so step t reads slot t and writes slot
t + 1 with no special case. The spikes are kept only as lists of the non-zeros of each row
r = slot * B + b (entries p0[r] <= p < p1[r] of (col, val)), written by the forward kernel as
it produces them; the adaptation trace b only every CHECK slots, rebuilt by the backward. The
data arrive as the same kind of lists (``input_lists``). So input projections, recurrent
inputs and the weight gradients are gathers and scatter-adds over what fired, exact for any
values (smooth spikes, analog data, a random initial state) and cheap for sparse ones. The
entries of a chunk's rows of one step follow each other in row order (p1[r] = p0[r + 1]), so a
narrow layer can run over a whole step's entries in one loop (``_entry_rows``).

Parallelism: every kernel is serial and releases the GIL; it works on chunk ``c`` of the batch,
rows [lo, hi), and ``spikesim.kernels.threads.run_chunks`` runs the chunks on a thread pool.
(Numba's ``prange`` compiled these loops several times slower.) Chunks keep private partial
sums (a leading chunk axis, reduced by the caller in a fixed order), so results are
deterministic for a given thread count. BLAS runs single-threaded (``compute_threads``).

The neuron arithmetic lives in ``spikesim.model.neurons`` and ``spikesim.model.surrogates``;
the kernels only loop. The surrogate is chosen once per step, outside the neuron loop, and the
neuron loops run over the chunk's (b, j) as one flat index (in blocks of BLOCK in the
backward), so they are branch-free; they, the gathers and the list masks run on explicit
16-lane vectors (``spikesim.kernels.simd``).

Inside the time loops there are no array views: each kernel makes its flat views once, and
everything in the loop takes flat arrays and integer offsets (a view costs atomic
reference-count updates and a call; see docs/architecture.md). The per-step matrix products
call BLAS the same way (``spikesim.kernels.blas.matmul``).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..model.neurons import (adapt_step, alif_step, alif_step_backward, integrator_step,
                             integrator_step_backward)
from ..model.surrogates import (GAUSSIAN, LINEAR, MULTI_GAUSSIAN, SLAYER, SMOOTH, heaviside,
                                sg_gaussian, sg_linear, sg_multi_gaussian, sg_slayer, sg_smooth,
                                smooth_spike)
from .blas import matmul
from .simd import (LANES, at, compress16, empty64, is_aligned64, nonzero16, popcount, prefetch,
                   store_fence, vadd_ordered, vbits_nonfinite, vbits_nonzero, vfma, vload,
                   vload16, vstore, vstore16, vstore16_stream, zeros64)

_opts = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")
GROUP_N = 64          # from this layer width on, weight-gradient scatters are grouped by column
BLOCK = 2048          # neurons per block of the backward's neuron loops (about 8 KB per array)
CHECK = 8             # the adaptation trace b is kept every CHECK steps and recomputed in between


# ----------------------------------------------------------------------------------------------
# Helpers (inlined)
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def _spikes(x, s1, o, n, sp):
    """s1[o + q] = the smooth mode's spike, sigmoid(k x[q]), for q < n (the Heaviside spikes
    come from ``_alif_rows``)."""
    for q in range(n):
        s1[o + q] = smooth_spike(x[q], sp)


@njit(**_opts)
def _surrogates(x, sg, n, sp):
    """sg[q] = surrogate derivative at x[q], one 16-lane loop per surrogate."""
    code = sp[0]
    if code == MULTI_GAUSSIAN:
        _map16(sg_multi_gaussian, x, sg, n, sp)
    elif code == GAUSSIAN:
        _map16(sg_gaussian, x, sg, n, sp)
    elif code == LINEAR:
        _map16(sg_linear, x, sg, n, sp)
    elif code == SLAYER:
        _map16(sg_slayer, x, sg, n, sp)
    else:                               # (the smooth mode branches: scalar)
        for q in range(n):
            sg[q] = sg_smooth(x[q], sp)


@njit(inline="always")
def _map16(f, x, out, n, sp):
    """out[q] = f(x[q], sp) for q < n, 16 lanes at a time (f: a scalar function of
    ``spikesim.model`` that also takes vectors)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(out, q, w, f(vload(x, q, w), sp))


@njit(inline="always")
def _copy(dst, od, src, os, n):
    """dst[od:od + n] = src[os:os + n], 16 lanes at a time (a loop of a[o + q] = ... would not
    vectorise: Numba guards a computed index against negative values)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(dst, od + q, w, vload(src, os + q, w))


@njit(inline="always")
def _zero(a, o, n):
    """a[o:o + n] = 0, 16 lanes at a time (a load of no lanes gives zeros)."""
    for q in range(0, n, LANES):
        vstore(a, o + q, min(LANES, n - q), vload(a, o, 0))


@njit(inline="always")
def _tile(a, nb):
    """Per-neuron constants repeated for nb batch rows (the flat (b, j) index of a chunk)."""
    N = a.shape[0]
    out = empty64(nb * N, a.dtype)
    for k in range(nb):
        out[k * N:(k + 1) * N] = a
    return out


@njit(inline="always")
def _reciprocal(a):
    """1 / a elementwise, in a's dtype, into a 64-byte aligned array."""
    out = empty64(a.shape[0], a.dtype)
    out[:] = np.ones(a.shape[0], a.dtype) / a
    return out


@njit(inline="always")
def _widths(n):
    """Lanes used in each of the four 16-lane vectors of a 64-lane block with n lanes left."""
    return min(16, n), max(0, min(16, n - 16)), max(0, min(16, n - 32)), max(0, min(16, n - 48))


@njit(inline="always")
def _load4(a, o, w0, w1, w2, w3):
    return vload(a, o, w0), vload(a, o + 16, w1), vload(a, o + 32, w2), vload(a, o + 48, w3)


@njit(inline="always")
def _store4(a, o, w0, w1, w2, w3, a0, a1, a2, a3):
    vstore(a, o, w0, a0)
    vstore(a, o + 16, w1, a1)
    vstore(a, o + 32, w2, a2)
    vstore(a, o + 48, w3, a3)


@njit(inline="always")
def _load8(a, o):
    """The eight full vectors a[o:o + 128]."""
    return (vload16(a, o), vload16(a, o + 16), vload16(a, o + 32), vload16(a, o + 48),
            vload16(a, o + 64), vload16(a, o + 80), vload16(a, o + 96), vload16(a, o + 112))


@njit(inline="always")
def _store8(a, o, v):
    for k in range(8):          # a loop over a tuple of vectors: unrolled by Numba
        vstore16(a, o + 16 * k, v[k])


@njit(inline="always")
def _gather4(a0, a1, a2, a3, Wf, N, j0, w0, w1, w2, w3, col, val, p, p1):
    """(a0..a3) + sum over entries p <= q < p1 of val[q] * W[col[q], j0:j0 + 64], W (., N) flat:
    the block's accumulators stay in registers over all entries (``spikesim.kernels.simd``).
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
        a = _gather8(_load8(init, io + j0), W1, N, j0, c1, v1, p, p1)
        _store8(out, o + j0, _gather8(a, W2, N, j0, c2, v2, q, q1))
        j0 += 128
    while j0 < N:
        w0, w1, w2, w3 = _widths(N - j0)
        a0, a1, a2, a3 = _load4(init, io + j0, w0, w1, w2, w3)
        a0, a1, a2, a3 = _gather4(a0, a1, a2, a3, W1, N, j0, w0, w1, w2, w3, c1, v1, p, p1)
        a0, a1, a2, a3 = _gather4(a0, a1, a2, a3, W2, N, j0, w0, w1, w2, w3, c2, v2, q, q1)
        _store4(out, o + j0, w0, w1, w2, w3, a0, a1, a2, a3)
        j0 += 64


@njit(inline="always")
def _input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wr, rec, lp0, lp1, lcol,
                   lval, Ib):
    """Ib[(b - lo) * N + j] = bias + W_in x_t + W_rec s_{t-1} for the chunk's rows: gathers of
    rows of W_in^T over the input's non-zeros and of W_rec^T over the layer's own spikes of
    step t-1 (its lists, row t * B + b = slot t); Wi, Wr: the transposed weights, flat."""
    for b in range(lo, hi):
        r = t * B + b
        _gather_rows(Ib, (b - lo) * N, bias, 0, N, Wi, xcol, xval, xp0[r], xp1[r], Wr, lcol, lval,
                     lp0[r], lp1[r] if rec else lp0[r])


@njit(inline="always")
def _mask64(v, g, w):
    """Bit i set where v[g + i] != 0, for i < w <= 64: vector compares of 16 lanes, then a loop
    for the rest."""
    m = np.uint64(0)
    k = 0
    while k + 16 <= w:
        m |= nonzero16(v, g + k) << np.uint64(k)
        k += 16
    for i in range(k, w):
        m |= np.uint64(v[g + i] != 0) << np.uint64(i)
    return m


@njit(inline="always")
def _spike_lists(slot, lo, hi, B, N, sflat, so, p, lp0, lp1, lcol, lval, work):
    """Append the non-zeros of the chunk's spikes of one slot (``sflat[so:]``: rows b in
    [lo, hi), flat) to the lists from offset p, and set each row's bounds; returns the next
    offset. Branch-free: bit masks of 64 neurons from vector compares (the flat chunk, so narrow
    layers get full masks too); each row's bounds from the counts of set bits before it; the
    entries by ``compress16``, 16 neurons at a time, their columns from ``colof`` (the column
    of each flat position). work = (colof, masks, counts): the kernel's, sized by
    ``spike_list_work``. (A loop over the set bits, with a branch at each row's end, was 3.5x
    faster than a test per neuron, and mispredicted about once per row.)"""
    colof, masks, pre = work
    n = (hi - lo) * N
    ng = (n + 63) // 64
    c = p
    for g in range(ng):
        m = _mask64(sflat, so + 64 * g, min(64, n - 64 * g))
        masks[g] = m
        pre[g] = c                          # entries before group g
        c += popcount(m)
    masks[ng] = np.uint64(0)
    pre[ng] = c
    r0 = slot * B + lo
    for b in range(hi - lo):
        i = b * N                           # the row's first flat position: entries before it
        below = (np.uint64(1) << np.uint64(i & 63)) - np.uint64(1)
        e = pre[i >> 6] + popcount(masks[i >> 6] & below)
        lp0[r0 + b] = e
        if b > 0:
            lp1[r0 + b - 1] = e
    lp1[r0 + hi - lo - 1] = c
    for q in range(0, n, LANES):            # (a vector never spans two 64-bit masks)
        m16 = (masks[q >> 6] >> np.uint64(q & 63)) & np.uint64(0xFFFF)
        w = min(LANES, n - q)
        compress16(lval, p, sflat, so + q, w, m16)
        compress16(lcol, p, colof, q, w, m16)
        p += popcount(m16)
    return p


@njit(inline="always")
def spike_list_work(nb, N):
    """The work arrays of ``_spike_lists`` for nb rows of N neurons."""
    colof = np.empty(nb * N, np.int32)
    for b in range(nb):
        for j in range(N):
            colof[b * N + j] = j
    ng = (nb * N + 63) // 64
    return colof, np.empty(ng + 1, np.uint64), np.empty(ng + 1, np.int64)


@njit(inline="always")
def _scatter_row(dWf, base, S, N, gf, go, col, val, p, p1):
    """dW^T[col[q]] += val[q] * g for entries p <= q < p1, g = gf[go:go + N] one row of dL/dI,
    held in registers 128 lanes at a time; dW rows (stride S) are padded to whole vectors."""
    j0 = 0
    while j0 + 128 <= N:
        g0, g1, g2, g3, g4, g5, g6, g7 = _load8(gf, go + j0)
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
        w0, w1, w2, w3 = _widths(N - j0)
        g0, g1, g2, g3 = _load4(gf, go + j0, w0, w1, w2, w3)
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
        j0 += 64


@njit(inline="always")
def _entry_rows(t, lo, hi, B, p0, p1, rows):
    """rows[k] = b - lo for the entries P0 + k, k < n, of the chunk's rows b of step t (row
    t * B + b), which follow each other; returns (P0, n). Branch-free: a count at each row's
    first entry, then a running sum. (A loop over each row's few entries mispredicts its exit
    about once per row, which cost narrow layers more than the entries' own work.)"""
    P0 = p0[t * B + lo]
    n = p1[t * B + hi - 1] - P0
    for k in range(n + 1):
        rows[k] = 0
    for b in range(lo, hi):
        rows[p0[t * B + b] - P0] += 1
    acc = -1
    for k in range(n):
        acc += rows[k]
        rows[k] = acc
    return P0, n


@njit(inline="always")
def _scatter_flat(dWf, base, S, N, gf, col, val, P0, n, rows):
    """``_scatter_row`` over a whole step's entries in one loop, for N <= 64:
    dW^T[col[e]] += val[e] * g[rows[k]] for the entries e = P0 + k, k < n (``_entry_rows``).
    The dW rows are updated with whole-vector loads and stores, which forward to each other."""
    w0, w1, w2, w3 = _widths(N)
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
    private accumulator whose rows are padded to whole vectors (``_private_rows``), passed flat
    (dWf), as dL/dI (gf, rows of N)."""
    cnt, start, rows, vals = work
    ncol = cnt.shape[0]
    S = (N + 15) // 16 * 16                 # row stride of dWT (padded)
    base = c * ncol * S
    total = 0
    for b in range(lo, hi):
        total += p1[t * B + b] - p0[t * B + b]
    if N < GROUP_N:
        P0, ne = _entry_rows(t, lo, hi, B, p0, p1, rows)
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
def _private(a):
    """A zeroed (1, ...) accumulator shaped like one chunk's slice of ``a`` (nch, ...): chunks
    sum into private memory and add to their slice once at the end, so that two threads never
    write the same cache line (the slices of neighbouring chunks share lines)."""
    return zeros64(a[0].size, a.dtype).reshape((1,) + a.shape[1:])


@njit(inline="always")
def _private_rows(a):
    """``_private`` for weight gradients (nch, ncol, N), with rows padded to whole vectors
    (a multiple of 16 lanes), so that scatters update them with unmasked vector stores."""
    S = (a.shape[2] + 15) // 16 * 16
    return zeros64(a.shape[1] * S, a.dtype).reshape((1, a.shape[1], S))


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
        w0, w1, w2, w3 = _widths(N - j0)
        a0, a1, a2, a3 = _load4(db, j0, w0, w1, w2, w3)
        for b in range(nb):
            o = b * N + j0
            a0 = vadd_ordered(a0, vload(g, o, w0))
            a1 = vadd_ordered(a1, vload(g, o + 16, w1))
            a2 = vadd_ordered(a2, vload(g, o + 32, w2))
            a3 = vadd_ordered(a3, vload(g, o + 48, w3))
        _store4(db, j0, w0, w1, w2, w3, a0, a1, a2, a3)
        j0 += 64


@njit(inline="always")
def _weight_grads(c, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWinT, db, rec, lp0, lp1, lcol,
                  lval, dWrecT, xwork, lwork):
    """Add step t's contributions to dW_in^T, db and dW_rec^T (flat private accumulators):
    scatter-adds of the rows of dL/dI over the input's non-zeros and, from the layer's own
    spike lists (row t*B + b is slot t, i.e. s_{t-1}), over the spikes of step t-1."""
    _row_sums(db, gI, hi - lo, N)
    _scatter_add(c, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWinT, xwork)
    if rec:
        _scatter_add(c, t, lo, hi, B, N, gI, lp0, lp1, lcol, lval, dWrecT, lwork)


@njit(inline="always")
def _input_grad(t, lo, hi, gI, Win, gx, gxf, gx_mode):
    """What the layer below needs of step t: with ``gx_mode`` 1, gx[t, lo:hi] = dL/dI_t W_in =
    dL/dx_t; with 2, gx[t, lo:hi] = dL/dI_t itself, when the layer is narrower than its input
    (the layer below forms the product per step: ``_ext_grad``), so the wide (T, B, N_in)
    array is never written and read back; 0: nothing (the first layer). gI, Win, gxf: flat."""
    N = gI.shape[0] // (hi - lo)
    if gx_mode == 1:
        M = gx.shape[2]
        matmul(gI, 0, Win, gxf, (t * gx.shape[1] + lo) * M, hi - lo, N, M)
    elif gx_mode == 2:
        _copy(gxf, (t * gx.shape[1] + lo) * N, gI, 0, gI.shape[0])


@njit(inline="always")
def _ext_grad(t, lo, hi, g_ext, gef, W_ext, ext_prod, bf):
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


# ----------------------------------------------------------------------------------------------
# The neuron loops of one step over a chunk's flat (b, j) index, on flat arrays from given
# offsets, 16 lanes at a time: the scalar equations of spikesim.model applied to Vec16 values
# (simd.py; the last vector is masked). The vector loads and stores take computed indices; the
# loops left to LLVM's vectoriser stay vectorisable by the numpy error model (no division
# checks), results unpacked into locals (unpacking into array elements adds an exit branch),
# and indices straight from range() or through ``simd.at`` (a computed index such as k + j
# makes Numba emit negative-index wraparound, and LLVM then gives up on the loop).
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def _alif_rows(n, uf, ou1, ur, sf, bf, o0, o1, Ib, A, OA, R, OR, beta, b0, dt, x, sp, stream):
    """One forward step of n neurons: u_{t-1}, s_{t-1} and b_{t-1} from the rings ur, sf, bf at
    o0; u_t, b_t into them at o1 and u_t into uf[ou1:]; x = u - B, and the Heaviside spike H(x)
    into sf[o1:] (the smooth mode's spikes are then written over it by ``_spikes``). With
    ``stream`` (uf[ou1] is 64-byte aligned), full vectors go to uf as non-temporal stores, and
    u_{t-1} is read from the ring, not back from uf (which those stores left in memory)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        uq, bq, xq = alif_step(vload(ur, o0 + q, w), vload(sf, o0 + q, w), vload(bf, o0 + q, w),
                               vload(Ib, q, w), vload(A, q, w), vload(OA, q, w), vload(R, q, w),
                               vload(OR, q, w), beta, b0, dt)
        if stream and w == LANES:
            vstore16_stream(uf, ou1 + q, uq)
        else:
            vstore(uf, ou1 + q, w, uq)
        vstore(ur, o1 + q, w, uq)
        vstore(bf, o1 + q, w, bq)
        vstore(x, q, w, xq)
        vstore(sf, o1 + q, w, heaviside(xq, sp))


@njit(**_opts)
def _adapt_rows(n, bf, o0, sf, os, R, OR, o1):
    """bf[o1 + q] = adapt_step(bf[o0 + q], sf[os + q]) for q < n."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(bf, o1 + q, w, adapt_step(vload(bf, o0 + q, w), vload(sf, os + q, w),
                                         vload(R, q, w), vload(OR, q, w)))


@njit(inline="always")
def _dense_slot(slot, lo, hi, B, N, lp0, lp1, lcol, lval, out, o, rows):
    """out[o:o + (hi - lo) * N] (rows b in [lo, hi), flat) = the spikes of one slot, from the
    lists, in one loop over the slot's entries (``_entry_rows``; rows: (hi - lo) * N + 1)."""
    _zero(out, o, (hi - lo) * N)
    P0, ne = _entry_rows(slot, lo, hi, B, lp0, lp1, rows)
    for k in range(ne):
        out[o + at(rows, k) * N + at(lcol, P0 + k)] = at(lval, P0 + k)


@njit(**_opts)
def lists_to_dense(lo, hi, B, lp0, lp1, lcol, lval, out):
    """out (S, B, N) = the dense array of the lists' rows slot * B + b (b in [lo, hi))."""
    N = out.shape[2]
    rows = np.empty(N + 1, np.int64)
    of = out.reshape(-1)
    for slot in range(out.shape[0]):
        for b in range(lo, hi):     # row by row: lists written by several chunks have gaps
            _dense_slot(slot, b, b + 1, B, N, lp0, lp1, lcol, lval, of, (slot * B + b) * N, rows)


@njit(**_opts)
def adaptation_trace(s, b_init, rho, omr, bt):
    """bt (S,B,N) = the adaptation trace b of every slot, from b_init (B,N) and the spikes s
    (S,B,N), by the forward's ``adapt_step`` (for a trace's dense ``bt_full``)."""
    S, B, N = s.shape
    R, OR = _tile(rho, B), _tile(omr, B)
    bt[0] = b_init
    bf, sf, n = bt.reshape(-1), s.reshape(-1), B * N
    for t in range(1, S):
        _adapt_rows(n, bf, (t - 1) * n, sf, (t - 1) * n, R, OR, t * n)


@njit(cache=True, nogil=True)
def lists_sum(p0, p1, val):
    """Sum of the values of all the lists' rows, in float64."""
    tot = 0.0
    for r in range(p0.shape[0]):
        for p in range(p0[r], p1[r]):
            tot += val[p]
    return tot


@njit(**_opts)
def _alif_rows_backward(n, ge, oe, fs, fu, sg, uf, ou1, ou0, sf, os, bf, ob1, ob0, A, OA, IOA, R,
                        OR, beta, b0, dt, o, gs_c, grec, gu_n, gb_n, gI, ga, gr):
    """One backward step of n neurons: u_t, u_{t-1} at uf[ou1:], uf[ou0:], s_{t-1} at sf[os:],
    b_t, b_{t-1} at bf[ob1:], bf[ob0:], the external gradient at ge[oe:]; the chunk's state
    gradients gs_c, grec, gu_n, gb_n, gI from offset o; sg, the constants, ga and gr per
    position in the block."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        e = vload(ge, oe + q, w)
        gu, gb, gi, gal, grh, gsp = alif_step_backward(
            fs * e + vload(gs_c, o + q, w) + vload(grec, o + q, w), vload(sg, q, w), fu * e,
            vload(gu_n, o + q, w), vload(gb_n, o + q, w), vload(uf, ou1 + q, w),
            vload(uf, ou0 + q, w), vload(sf, os + q, w), vload(bf, ob1 + q, w),
            vload(bf, ob0 + q, w), vload(A, q, w), vload(OA, q, w), vload(IOA, q, w),
            vload(R, q, w), vload(OR, q, w), beta, b0, dt)
        vstore(gI, o + q, w, gi)
        vstore(gs_c, o + q, w, gsp)
        vstore(ga, q, w, vload(ga, q, w) + gal)
        vstore(gr, q, w, vload(gr, q, w) + grh)
        vstore(gu_n, o + q, w, gu)
        vstore(gb_n, o + q, w, gb)


@njit(**_opts)
def _lif_rows_backward(n, ge, oe, fs, fu, sg, uf, ou1, ou0, sf, os, bf, ob1, A, OA, IOA, beta, b0,
                       dt, o, gs_c, grec, gu_n, gI, ga):
    """``_alif_rows_backward`` for beta = 0 (LIF): the same equation, without the adaptation
    trace's terms, which are then zero (dL/db and dL/drho stay 0; gb_n and gr are not touched).
    B is still formed from the (zero) b vector, and rho, 1 - rho, b_{t-1} and dL/db_{t+1} enter as
    a run-time zero, so that every result rounds exactly as in the general loop."""
    z = dt - dt
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        e = vload(ge, oe + q, w)
        gu, gb, gi, gal, grh, gsp = alif_step_backward(
            fs * e + vload(gs_c, o + q, w) + vload(grec, o + q, w), vload(sg, q, w), fu * e,
            vload(gu_n, o + q, w), z, vload(uf, ou1 + q, w), vload(uf, ou0 + q, w),
            vload(sf, os + q, w), vload(bf, ob1 + q, w), z, vload(A, q, w), vload(OA, q, w),
            vload(IOA, q, w), z, z, beta, b0, dt)
        vstore(gI, o + q, w, gi)
        vstore(gs_c, o + q, w, gsp)
        vstore(ga, q, w, vload(ga, q, w) + gal)
        vstore(gu_n, o + q, w, gu)


@njit(**_opts)
def _integrator_rows(n, uf, ou0, ou1, Ib, A, OA):
    """u from uf[ou0:] into uf[ou1:] for n readout neurons."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(uf, ou1 + q, w, integrator_step(vload(uf, ou0 + q, w), vload(Ib, q, w),
                                               vload(A, q, w), vload(OA, q, w)))


@njit(**_opts)
def _integrator_rows_backward(n, ge, oe, uf, ou1, ou0, A, OA, IOA, gu_n, gI, ga):
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        gu, gi, gal = integrator_step_backward(vload(ge, oe + q, w), vload(gu_n, q, w),
                                               vload(uf, ou1 + q, w), vload(uf, ou0 + q, w),
                                               vload(A, q, w), vload(OA, q, w), vload(IOA, q, w))
        vstore(gI, q, w, gi)
        vstore(gu_n, q, w, gu)
        vstore(ga, q, w, vload(ga, q, w) + gal)


# ----------------------------------------------------------------------------------------------
# The data's lists: the non-zeros of each row r = t * B + b of the input (B, T, N), read in
# place and in memory order; chunk [lo, hi) is a range of b
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, error_model="numpy")     # no fastmath: it must see NaN
def input_lists(c, lo, hi, X, xp0, xp1, xcol, xval, bad):
    """The lists of the non-zeros of X[b, t] (row t * B + b), in one pass over the chunk's
    rows, time-major; the chunk owns the capacity [lo * T * N, hi * T * N) of xcol, xval. bad[c] > 0
    if there are NaN or inf. Per 16 values of a row: one masked load, two compares (non-zero,
    non-finite) and ``compress16`` of the values and their columns, without a branch."""
    B, T, N = X.shape
    Xf = X.reshape(-1)
    colof = np.arange(N + LANES).astype(np.int32)   # lane k of the piece at column j: j + k
    p = lo * T * N
    nf = 0
    for t in range(T):                          # in the order the layer reads them
        for b in range(lo, hi):
            o = (b * T + t) * N
            xp0[t * B + b] = p
            for j in range(0, N, LANES):
                w = min(LANES, N - j)
                v = vload(Xf, o + j, w)         # lanes >= w read as 0: neither set nor bad
                nf += vbits_nonfinite(v) != 0
                m = vbits_nonzero(v)
                compress16(xval, p, Xf, o + j, w, m)
                compress16(xcol, p, colof, j, w, m)
                p += popcount(m)
            xp1[t * B + b] = p
    bad[c] += nf


# ----------------------------------------------------------------------------------------------
# Spiking layer (ALIF; LIF is beta = 0), optionally recurrent
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def alif_forward(c, lo, hi, xp0, xp1, xcol, xval, WinT, bias, WrecT, rec, alpha, oma, rho, omr,
                 beta, b0, dt, sp, u, s_init, b_init, bchk, s_last, b_last, lp0, lp1, lcol, lval):
    """Run a spiking layer over T steps for batch rows [lo, hi).

    The input current I_t = W_in x_t + bias + W_rec s_{t-1} is formed per row from the input's
    lists (xp0, xp1, xcol, xval) and the layer's own spike lists; WinT, WrecT are the
    transposed weights. What is kept for the backward pass, and why so little: these loops are
    bound by memory traffic, so of the state only u (T+1,B,N) is stored in full (slot 0 = the
    initial state). The spikes are kept as their lists (rows slot * B + b, all T + 1 slots; the
    chunk owns the capacity [lo * (T+1) * N, hi * (T+1) * N) of lcol, lval), and the
    adaptation trace b every CHECK slots in bchk (T // CHECK + 1, B, N). The state after the
    last step goes to s_last, b_last (B, N).
    """
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA, R, OR = _tile(alpha, nb), _tile(oma, nb), _tile(rho, nb), _tile(omr, nb)
    x = empty64(n, u.dtype)
    Ib = empty64(n, u.dtype)
    lw = spike_list_work(nb, N)
    ur = empty64(2 * n, u.dtype).reshape((2, n))   # u, s and b of the previous and current step
    sr = empty64(2 * n, u.dtype).reshape((2, n))
    br = empty64(2 * n, u.dtype).reshape((2, n))
    ur[0] = u[0, lo:hi].reshape(-1)
    sr[0] = s_init[lo:hi].reshape(-1)
    br[0] = b_init[lo:hi].reshape(-1)
    bchk[0, lo:hi] = b_init[lo:hi]
    # flat views, made once: a view made inside the time loop costs two atomic reference-count
    # updates and a call that spills the vector registers (a tenth of the step's time)
    uf, urf, sf, bf = u.reshape(-1), ur.reshape(-1), sr.reshape(-1), br.reshape(-1)
    cf = bchk.reshape(-1)
    Wi, Wr = WinT.reshape(-1), WrecT.reshape(-1)
    # u is written once here and read back only by the backward pass, long after: stream it to
    # memory (non-temporal stores skip reading each line into the cache first; a fifth of the
    # ECG forward's time went to that). Every step's rows start 64-byte aligned when slot 0 of
    # the chunk does and a slot is a whole number of vectors.
    stream = is_aligned64(uf, off) and (B * N) % LANES == 0
    p = _spike_lists(0, lo, hi, B, N, sf, 0, lo * (T + 1) * N, lp0, lp1, lcol, lval, lw)
    for t in range(T):
        cur, nxt = (t % 2) * n, ((t + 1) % 2) * n
        _input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wr, rec, lp0, lp1,
                       lcol, lval, Ib)
        _alif_rows(n, uf, (t + 1) * B * N + off, urf, sf, bf, cur, nxt, Ib, A, OA, R, OR, beta,
                   b0, dt, x, sp, stream)
        if sp[0] == SMOOTH:
            _spikes(x, sf, nxt, n, sp)
        p = _spike_lists(t + 1, lo, hi, B, N, sf, nxt, p, lp0, lp1, lcol, lval, lw)
        if (t + 1) % CHECK == 0:
            _copy(cf, (t + 1) // CHECK * B * N + off, bf, nxt, n)
    store_fence()
    s_last[lo:hi] = sr[T % 2].reshape(nb, N)
    b_last[lo:hi] = br[T % 2].reshape(nb, N)


@njit(**_opts)
def alif_backward(c, lo, hi, g_ext, W_ext, ext_prod, ext_on_u, u, bchk, xp0, xp1, xcol, xval, lp0,
                  lp1, lcol, lval, Win, gx, gx_mode, Wrec, rec,
                  alpha, oma, rho, omr, beta, b0, dt, sp, dWinT, db, dWrecT, galpha, grho):
    """Backward through time of a spiking layer for batch rows [lo, hi).

    g_ext (T,B,N): the gradient arriving from outside the layer: dL/du_t of a membrane readout
    when ``ext_on_u`` is 1, else dL/ds_t (next layer, spike readout); a layer never has both.
    With ``ext_prod`` it is (T,B,M) dL/dI of the layer above, times W_ext (M,N) per step.
    Adds the chunk's parameter gradients to dWinT[c] (N_in,N), db[c], dWrecT[c] (N,N),
    galpha[c], grho[c]; writes gx for the layer below as ``_input_grad`` says.
    The spikes come from the lists and b from its checkpoints: going down through each span of
    CHECK steps, b and s of the span are first rebuilt (``adapt_step``, as in the forward).
    The recurrent path W_rec^T dL/dI_{t+1} is one small dense product per step and chunk.
    """
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    dtype = u.dtype
    rb = max(1, min(nb, BLOCK // N))   # rows per block: a block's temporaries stay in cache
    m = rb * N
    A, OA, R, OR = _tile(alpha, rb), _tile(oma, rb), _tile(rho, rb), _tile(omr, rb)
    IOA = _reciprocal(OA)
    gu_n = zeros64(n, dtype)           # dL/du_{t+1}
    gb_n = zeros64(n, dtype)           # dL/db_{t+1}
    gs_c = zeros64(n, dtype)           # terms of dL/ds_t produced by step t+1
    gI = zeros64(n, dtype)             # dL/dI_t of the chunk (after the step: dL/dI_{t+1})
    ga = zeros64(m, dtype)             # dL/dalpha and dL/drho, per position in a block
    gr = zeros64(m, dtype)
    rflat = zeros64(n, dtype)          # W_rec^T dL/dI_{t+1}
    x = empty64(m, dtype)
    sg = empty64(m, dtype)
    ebf = empty64(n, dtype)            # the external gradient, when formed here
    xwork = scatter_work(dWinT.shape[1], nb, dtype)
    lwork = scatter_work(dWrecT.shape[1], nb, dtype)
    srows = np.empty(n + 1, np.int64)   # the row of each entry of a slot (``_dense_slot``)
    dWin_l, db_l, dWrec_l = _private_rows(dWinT), _private(db), _private_rows(dWrecT)
    fu = dtype.type(ext_on_u)
    fs = dtype.type(1 - ext_on_u)
    segb = zeros64((CHECK + 1) * n, dtype)  # b of slots k*CHECK .. k*CHECK + CHECK (flat)
    segs = empty64(CHECK * n, dtype)        # s of slots k*CHECK .. k*CHECK + CHECK - 1
    # flat views, made once (see alif_forward)
    uf, cf, gef = u.reshape(-1), bchk.reshape(-1), g_ext.reshape(-1)
    Wif, Wrf, Wef = Win.reshape(-1), Wrec.reshape(-1), W_ext.reshape(-1)
    ge = ebf if ext_prod else gef       # the external gradient's array (``_ext_grad``)
    dWin_f, dWrec_f, db_f, gxf = dWin_l.reshape(-1), dWrec_l.reshape(-1), db_l[0], gx.reshape(-1)
    for t in range(T - 1, -1, -1):
        k0s = (t // CHECK) * CHECK
        if t == T - 1 or t % CHECK == CHECK - 1:       # rebuild the span [k0s, t + 1]
            if beta != 0:                  # (LIF: b never enters, and stays 0 here)
                _copy(segb, 0, cf, t // CHECK * B * N + off, n)
            for j in range(t + 1 - k0s):
                _dense_slot(k0s + j, lo, hi, B, N, lp0, lp1, lcol, lval, segs, j * n, srows)
                if beta == 0:
                    continue
                for k0 in range(0, nb, rb):
                    q0, q1 = k0 * N, min(nb, k0 + rb) * N
                    _adapt_rows(q1 - q0, segb, j * n + q0, segs, j * n + q0, R, OR,
                                (j + 1) * n + q0)
        if rec and t + 1 < T:
            matmul(gI, 0, Wrf, rflat, 0, nb, N, N)  # W_rec^T dL/dI_{t+1}, added in the rows below
        if t >= 2:                  # u_{t-2}'s rows, read two steps on, from memory (the forward
            for q in range(0, n, LANES):        # streamed them there): about 4 % of the step
                prefetch(uf, (t - 2) * B * N + off + q)
        oe = _ext_grad(t, lo, hi, g_ext, gef, Wef, ext_prod, ebf)
        j = t - k0s
        for k0 in range(0, nb, rb):
            q0, q1 = k0 * N, min(nb, k0 + rb) * N
            mq, ou0, ou1 = q1 - q0, t * B * N + off + q0, (t + 1) * B * N + off + q0
            ob0, ob1 = j * n + q0, (j + 1) * n + q0
            for q in range(mq):     # (left to LLVM's vectoriser: a Vec16 form rounds differently)
                x[q] = at(uf, ou1 + q) - (b0 + beta * at(segb, ob1 + q))
            _surrogates(x, sg, mq, sp)
            if beta == 0:
                _lif_rows_backward(mq, ge, oe + q0, fs, fu, sg, uf, ou1, ou0, segs, ob0, segb,
                                   ob1, A, OA, IOA, beta, b0, dt, q0, gs_c, rflat, gu_n, gI, ga)
            else:
                _alif_rows_backward(mq, ge, oe + q0, fs, fu, sg, uf, ou1, ou0, segs, ob0, segb,
                                    ob1, ob0, A, OA, IOA, R, OR, beta, b0, dt, q0, gs_c, rflat,
                                    gu_n, gb_n, gI, ga, gr)
        _weight_grads(0, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWin_f, db_f, rec, lp0, lp1,
                      lcol, lval, dWrec_f, xwork, lwork)
        _input_grad(t, lo, hi, gI, Wif, gx, gxf, gx_mode)
    for k in range(rb):
        for j in range(N):
            galpha[c, j] += ga[k * N + j]
            grho[c, j] += gr[k * N + j]
    dWinT[c] += dWin_l[0, :, :dWinT.shape[2]]
    db[c] += db_l[0]
    dWrecT[c] += dWrec_l[0, :, :dWrecT.shape[2]]


# ----------------------------------------------------------------------------------------------
# Non-spiking readout integrator
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def integrator_forward(c, lo, hi, xp0, xp1, xcol, xval, WinT, bias, alpha, oma, u):
    """u_t = alpha u_{t-1} + (1 - alpha) I_t, I_t = W_in x_t + bias; u (T+1,B,N)."""
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA = _tile(alpha, nb), _tile(oma, nb)
    Ib = empty64(n, u.dtype)
    uf, Wi = u.reshape(-1), WinT.reshape(-1)
    for t in range(T):
        _input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wi, False, xp0, xp1,
                       xcol, xval, Ib)
        _integrator_rows(n, uf, t * B * N + off, (t + 1) * B * N + off, Ib, A, OA)


@njit(**_opts)
def integrator_backward(c, lo, hi, gu_ext, u, xp0, xp1, xcol, xval, Win, gx, gx_mode, alpha, oma,
                        dWinT, db, galpha):
    """Backward of the integrator, with its weight gradients and dL/dx fused in."""
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA = _tile(alpha, nb), _tile(oma, nb)
    IOA = _reciprocal(OA)
    gu_n = zeros64(n, u.dtype)
    gI = zeros64(n, u.dtype)
    ga = zeros64(n, u.dtype)
    xwork = scatter_work(dWinT.shape[1], nb, u.dtype)
    dWin_l, db_l = _private_rows(dWinT), _private(db)
    uf, gef, dWin_f, db_f, gxf, Wif = (u.reshape(-1), gu_ext.reshape(-1), dWin_l.reshape(-1),
                                       db_l[0], gx.reshape(-1), Win.reshape(-1))
    for t in range(T - 1, -1, -1):
        _integrator_rows_backward(n, gef, t * B * N + off, uf, (t + 1) * B * N + off,
                                  t * B * N + off, A, OA, IOA, gu_n, gI, ga)
        _weight_grads(0, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWin_f, db_f, False, xp0, xp1,
                      xcol, xval, dWin_f, xwork, xwork)
        _input_grad(t, lo, hi, gI, Wif, gx, gxf, gx_mode)
    for k in range(nb):
        for j in range(N):
            galpha[c, j] += ga[k * N + j]
    dWinT[c] += dWin_l[0, :, :dWinT.shape[2]]
    db[c] += db_l[0]
