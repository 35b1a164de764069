"""Probe of the data-list builder (``spikesim.backends.cpu.lists.input_lists``): the same loop
with three ways of appending a 16-lane piece's non-zeros, timed on one thread on the shd
input (64 x 250 x 700, density 2 %), to tell what the builder's time is spent on.

- ``vcompress``: as the kernel does on AVX-512, two ``vcompress`` stores to memory per piece
  (values and columns), with no branch on an empty mask;
- ``vcompress_if_any``: the same, skipped where the piece has no non-zero;
- ``bit_loop``: the kernel's fallback without AVX-512, one load and store per set bit.

The three produce the same lists (checked). ``python -m validation.bench_list_probe``. The
kernel itself is not changed by this module; it only measures.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from spikesim.backends.cpu.simd import (
    LANES,
    compress16_bits,
    compress16_vcompress,
    popcount,
    vbits_nonzero,
    vload,
)

_MODES = {"vcompress": 0, "vcompress_if_any": 1, "bit_loop": 2}


@njit(cache=True, nogil=True, error_model="numpy")
def _lists(X, lo, hi, xp0, xp1, xcol, xval, mode):
    B, T, N = X.shape
    Xf = X.reshape(-1)
    colof = np.arange(N + LANES).astype(np.int32)
    p = 0
    for t in range(T):
        for b in range(lo, hi):
            o = (b * T + t) * N
            xp0[t * B + b] = p
            for j in range(0, N, LANES):
                w = min(LANES, N - j)
                v = vload(Xf, o + j, w)
                m = vbits_nonzero(v)
                if mode == 0:
                    compress16_vcompress(xval, p, Xf, o + j, w, m)
                    compress16_vcompress(xcol, p, colof, j, w, m)
                elif mode == 1:
                    if m:
                        compress16_vcompress(xval, p, Xf, o + j, w, m)
                        compress16_vcompress(xcol, p, colof, j, w, m)
                else:
                    compress16_bits(xval, p, Xf, o + j, w, m)
                    compress16_bits(xcol, p, colof, j, w, m)
                p += popcount(m)
            xp1[t * B + b] = p
    return p


def probe(B: int = 64, T: int = 250, N: int = 700, density: float = 0.02,
          repeats: int = 7) -> dict:
    """Median seconds of one chunk (half the batch) per mode, and the lists' size."""
    x = (np.random.default_rng(0).random((B, T, N)) < density).astype(np.float32)
    hi = B // 2
    cap = hi * T * N
    out, ref = {}, None
    for name, mode in _MODES.items():
        p0, p1 = np.zeros(T * B, np.int64), np.zeros(T * B, np.int64)
        col, val = np.zeros(cap + LANES, np.int32), np.zeros(cap + LANES, np.float32)
        n = _lists(x, 0, hi, p0, p1, col, val, mode)
        got = (p0.copy(), p1.copy(), col[:n].copy(), val[:n].copy())
        if ref is None:
            ref = got
        elif not all(np.array_equal(a, b) for a, b in zip(ref, got)):
            raise AssertionError(f"mode {name} built different lists")
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            _lists(x, 0, hi, p0, p1, col, val, mode)
            ts.append(time.perf_counter() - t)
        out[name] = float(np.median(ts))
    out["entries"] = int(ref[2].shape[0])
    out["input_bytes"] = int(hi * T * N * 4)
    return out


def main(argv=None) -> int:
    r = probe()
    print(f"data lists of one chunk of the shd input ({r['input_bytes'] / 1e6:.1f} MB, "
          f"{r['entries']} entries), one thread, median:")
    for name in _MODES:
        print(f"  {name:18s} {r[name] * 1e3:8.2f} ms  {r['input_bytes'] / r[name] / 1e9:6.2f} GB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
