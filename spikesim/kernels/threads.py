"""Thread-pool control: Numba's threads do the parallel work, BLAS runs single-threaded.

OpenBLAS worker threads busy-wait after each product and steal the cores from Numba's threads
(PERFORMANCE.md), and the kernels call BLAS from inside their parallel loops, so every
spikesim computation runs inside :func:`compute_threads`.
"""
from __future__ import annotations

import contextlib

import numba
from threadpoolctl import threadpool_limits

_depth = 0


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Limit BLAS to one thread and, if ``n`` is given, Numba to ``n`` threads. Re-entrant."""
    global _depth
    old = numba.get_num_threads()
    if n is not None:
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"thread count must be a positive integer, got {n!r}")
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    if _depth:
        try:
            _depth += 1
            yield
        finally:
            _depth -= 1
            numba.set_num_threads(old)
        return
    with threadpool_limits(limits=1, user_api="blas"):
        _depth += 1
        try:
            yield
        finally:
            _depth -= 1
            numba.set_num_threads(old)


def n_chunks(rows: int) -> int:
    """How many chunks to split ``rows`` into: one per Numba thread, at most one per row."""
    return max(1, min(numba.get_num_threads(), rows))
