"""Threads: the CPU kernels are serial, GIL-free Numba functions over a chunk of the batch;
:func:`run_chunks` runs the chunks on a thread pool, one per core, with denormals flushed to
zero (``spikesim.backends.cpu.fpu``).

BLAS runs single-threaded inside :func:`compute_threads`: OpenBLAS worker threads busy-wait
after each product and would steal the cores from the kernel threads (measured: lesson 3
of docs/benchmarks.md), and the kernels call BLAS from every chunk.
"""
from __future__ import annotations

import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import scipy.linalg.cython_blas  # noqa: F401  (load the BLAS that Numba's np.dot calls, so that

#                                  threadpool_limits below sees it; it is a separate OpenBLAS)
from threadpoolctl import threadpool_limits

from .fpu import flush_denormals, restore


def _default_threads() -> int:
    env = os.environ.get("SPIKESIM_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


_n_threads = _default_threads()
_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_depth = 0


def get_threads() -> int:
    return _n_threads


def set_threads(n: int):
    """Number of kernel threads (default: the cores this process may use, or
    ``$SPIKESIM_NUM_THREADS``). Results are deterministic for a fixed thread count."""
    global _n_threads, _pool
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"thread count must be a positive integer, got {n!r}")
    with _lock:
        _n_threads = n
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None


def n_chunks(rows: int) -> int:
    """How many chunks to split ``rows`` into: one per thread, at most one per row."""
    return max(1, min(_n_threads, rows))


def run_chunks(kernel, n: int, *args, nch: int | None = None):
    """Call ``kernel(c, lo, hi, *args)`` for the ``nch`` chunks [lo, hi) of range(n), in
    parallel threads (the kernel must be ``nogil``)."""
    global _pool
    nch = n_chunks(n) if nch is None else nch
    spans = [(c, (c * n) // nch, ((c + 1) * n) // nch) for c in range(nch)]
    old = flush_denormals()             # the calling thread takes the first chunk
    try:
        if nch == 1:
            kernel(0, 0, n, *args)
            return
        with _lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=_n_threads, thread_name_prefix="spikesim",
                                           initializer=flush_denormals)
            pool = _pool
        futures = [pool.submit(kernel, c, lo, hi, *args) for c, lo, hi in spans[1:]]
        c, lo, hi = spans[0]
        kernel(c, lo, hi, *args)
        for f in futures:
            f.result()
    finally:
        restore(old)


@contextlib.contextmanager
def compute_threads(n: int | None = None):
    """Limit BLAS to one thread (and optionally set the kernel thread count). Re-entrant."""
    global _depth
    old = _n_threads
    if n is not None:
        set_threads(n)
    try:
        if _depth:
            _depth += 1
            yield
        else:
            with threadpool_limits(limits=1, user_api="blas"):
                _depth += 1
                yield
    finally:
        _depth -= 1
        if n is not None:
            set_threads(old)
