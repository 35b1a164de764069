"""The lists that carry sparse activity between kernels.

A list holds the non-zeros of each row r = slot * B + b of a (slots, B, N) array: the entries
p0[r] <= p < p1[r] of (col, val). The data's lists are built by ``input_lists`` (one pass
over the input, read in place); a spiking layer appends its own spikes as it produces them
(``append_spike_lists``). The entries of a chunk's rows of one step follow each other in row
order (p1[r] = p0[r + 1]), so a narrow layer can run over a whole step's entries in one loop
(``entry_rows``). Lists are appended without a branch per entry: bit masks from 16-lane vector
compares and ``simd.compress16``.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numba import njit

from .flat import vzero
from .simd import LANES, at, compress16, nonzero16, popcount, vbits_nonfinite, vbits_nonzero, vload

_opts = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")


class Lists(NamedTuple):
    """The non-zeros of each row r of an array: entries p0[r] <= p < p1[r] of (col, val)."""
    p0: Any         # (rows,) int64
    p1: Any         # (rows,) int64
    col: Any        # (capacity,) int32 column of each entry
    val: Any        # (capacity,) its value, in the kernel's dtype

    def rows_from(self, first_row: int) -> "Lists":
        """The same lists seen from row ``first_row`` on (the entries are shared)."""
        return Lists(self.p0[first_row:], self.p1[first_row:], self.col, self.val)


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
def append_spike_lists(slot, lo, hi, B, N, sflat, so, p, lp0, lp1, lcol, lval, work):
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
    """The work arrays of ``append_spike_lists`` for nb rows of N neurons."""
    colof = np.empty(nb * N, np.int32)
    for b in range(nb):
        for j in range(N):
            colof[b * N + j] = j
    ng = (nb * N + 63) // 64
    return colof, np.empty(ng + 1, np.uint64), np.empty(ng + 1, np.int64)


@njit(inline="always")
def entry_rows(t, lo, hi, B, p0, p1, rows):
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
def dense_slot(slot, lo, hi, B, N, lp0, lp1, lcol, lval, out, o, rows):
    """out[o:o + (hi - lo) * N] (rows b in [lo, hi), flat) = the spikes of one slot, from the
    lists, in one loop over the slot's entries (``entry_rows``; rows: (hi - lo) * N + 1)."""
    vzero(out, o, (hi - lo) * N)
    P0, ne = entry_rows(slot, lo, hi, B, lp0, lp1, rows)
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
            dense_slot(slot, b, b + 1, B, N, lp0, lp1, lcol, lval, of, (slot * B + b) * N, rows)


@njit(cache=True, nogil=True)
def lists_sum(p0, p1, val):
    """Sum of the values of all the lists' rows, in float64."""
    tot = 0.0
    for r in range(p0.shape[0]):
        for p in range(p0[r], p1[r]):
            tot += val[p]
    return tot


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

