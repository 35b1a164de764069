"""Probe of the register block of the list gathers and scatters
(``spikesim.backends.cpu.gather_scatter``): 128 lanes (eight 16-lane accumulators) against
64 lanes (four), timed on one thread at the S-MNIST 256-neuron layer's sizes.

Eight 16-lane float32 accumulators fill all 16 vector registers of an AVX2 CPU (two 8-lane
ymm registers each), leaving none for the loaded weights; AVX-512 has 32 registers of 16 lanes.
The probe tells whether the 128-lane block costs on this CPU:

- ``gather``: ``input_current``'s loop, the rows of W_rec^T summed over each row's entries
  (128-lane blocks then 64, as the kernel does, against 64-lane blocks only);
- ``scatter``: ``weight_grads``' loop, dW^T[col] += val * g for each row's entries.

Both ways give the same bits (each lane adds in the same order; checked).
``python -m validation.bench_block_probe``. It measures only; the kernels are not changed here.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from numba import njit

from spikesim.backends.cpu.gather_scatter import (
    _gather_block64,
    _gather_rows,
    _scatter_block64,
    _scatter_row,
)
from spikesim.backends.cpu.target import TARGET


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _gather(out, bias, W, col, val, p0, p1, N, narrow):
    for r in range(p0.shape[0]):
        if narrow:  # the kernel's 64-lane block over the whole row, the second list empty
            for j0 in range(0, N, 64):
                _gather_block64(out, r * N, bias, 0, N, j0, W, col, val, p0[r], p1[r], W, col,
                                val, 0, 0)
        else:       # the kernel's function, the second list empty
            _gather_rows(out, r * N, bias, 0, N, W, col, val, p0[r], p1[r], W, col, val, 0, 0)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=True)
def _scatter(dW, g, col, val, p0, p1, N, narrow):
    for r in range(p0.shape[0]):
        if narrow:
            for j0 in range(0, N, 64):
                _scatter_block64(dW, 0, N, N, j0, g, r * N, col, val, p0[r], p1[r])
        else:
            _scatter_row(dW, 0, N, N, g, r * N, col, val, p0[r], p1[r])


def _lists(rows, N, rate, rng):
    """Spike lists of ``rows`` rows of N neurons firing at ``rate``: (p0, p1, col, val)."""
    s = rng.random((rows, N)) < rate
    col = np.nonzero(s)[1].astype(np.int32)
    counts = s.sum(1)
    p1 = np.cumsum(counts).astype(np.int64)
    p0 = p1 - counts
    return p0, p1, col, np.ones(col.shape[0], np.float32)


def probe(rows: int = 128 * 100, N: int = 256, rate: float = 0.1, repeats: int = 41) -> dict:
    """Best seconds per way, for ``rows`` rows (128 batch rows x 100 steps by default)."""
    rng = np.random.default_rng(0)
    p0, p1, col, val = _lists(rows, N, rate, rng)
    W = rng.standard_normal(N * N).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    g = rng.standard_normal(rows * N).astype(np.float32)
    def run(part, narrow):
        if part == "gather":
            o = np.empty(rows * N, np.float32)
            _gather(o, bias, W, col, val, p0, p1, N, narrow)
            return o
        dW = np.zeros(N * N, np.float32)
        _scatter(dW, g, col, val, p0, p1, N, narrow)
        return dW

    out = {}
    for part in ("gather", "scatter"):
        if not np.array_equal(run(part, False), run(part, True)):
            raise AssertionError(f"the two {part} ways give different results")
        ts = {False: [], True: []}
        for _ in range(repeats):        # the two ways alternate, so that load hits both alike
            for narrow in (False, True):
                t = time.perf_counter()
                run(part, narrow)
                ts[narrow].append(time.perf_counter() - t)
        for narrow in (False, True):
            out[f"{part}_{64 if narrow else 128}"] = float(np.min(ts[narrow]))
    out["entries"] = int(col.shape[0])
    return out


def main(argv=None) -> int:
    r = probe()
    print(f"kernel target {TARGET}; {r['entries']} entries, 256 neurons, one thread, best of 41:")
    for part in ("gather", "scatter"):
        a, b = r[f"{part}_128"], r[f"{part}_64"]
        print(f"  {part:8s} 128-lane {a * 1e3:8.2f} ms   64-lane {b * 1e3:8.2f} ms   "
              f"128/64 = {a / b:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
