"""Small helpers on flat arrays with integer offsets, 16 lanes at a time: copies, zeroing,
per-neuron constants tiled over a chunk's rows, and the four- and eight-vector loads and stores
of the gathers. Flat arrays and offsets, never views, because a view made inside a time loop
costs atomic reference-count updates and a call (see docs/architecture.md)."""
from __future__ import annotations

import numpy as np
from numba import njit

from .simd import LANES, empty64, vload, vload16, vstore, vstore16


@njit(inline="always")
def vcopy(dst, od, src, os, n):
    """dst[od:od + n] = src[os:os + n], 16 lanes at a time (a loop of a[o + q] = ... would not
    vectorise: Numba guards a computed index against negative values)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(dst, od + q, w, vload(src, os + q, w))


@njit(inline="always")
def vzero(a, o, n):
    """a[o:o + n] = 0, 16 lanes at a time (a load of no lanes gives zeros)."""
    for q in range(0, n, LANES):
        vstore(a, o + q, min(LANES, n - q), vload(a, o, 0))


@njit(inline="always")
def tile_rows(a, nb):
    """Per-neuron constants repeated for nb batch rows (the flat (b, j) index of a chunk)."""
    N = a.shape[0]
    out = empty64(nb * N, a.dtype)
    for k in range(nb):
        out[k * N:(k + 1) * N] = a
    return out


@njit(inline="always")
def reciprocal(a):
    """1 / a elementwise, in a's dtype, into a 64-byte aligned array."""
    out = empty64(a.shape[0], a.dtype)
    out[:] = np.ones(a.shape[0], a.dtype) / a
    return out


@njit(inline="always")
def block_widths(n):
    """Lanes used in each of the four 16-lane vectors of a 64-lane block with n lanes left."""
    return min(16, n), max(0, min(16, n - 16)), max(0, min(16, n - 32)), max(0, min(16, n - 48))


@njit(inline="always")
def load4(a, o, w0, w1, w2, w3):
    return vload(a, o, w0), vload(a, o + 16, w1), vload(a, o + 32, w2), vload(a, o + 48, w3)


@njit(inline="always")
def store4(a, o, w0, w1, w2, w3, a0, a1, a2, a3):
    vstore(a, o, w0, a0)
    vstore(a, o + 16, w1, a1)
    vstore(a, o + 32, w2, a2)
    vstore(a, o + 48, w3, a3)


@njit(inline="always")
def load8(a, o):
    """The eight full vectors a[o:o + 128]."""
    return (vload16(a, o), vload16(a, o + 16), vload16(a, o + 32), vload16(a, o + 48),
            vload16(a, o + 64), vload16(a, o + 80), vload16(a, o + 96), vload16(a, o + 112))


@njit(inline="always")
def store8(a, o, v):
    for k in range(8):          # a loop over a tuple of vectors: unrolled by Numba
        vstore16(a, o + 16 * k, v[k])

