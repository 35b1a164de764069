"""The machine a benchmark ran on, and its ceilings: memory bandwidth and sgemm peak.

Both ceilings are measured in the run, because this VM's speed drifts and its two cores are
shared with other work (``os.getloadavg`` is recorded with each result for that reason):

- bandwidth: ``np.copyto`` of a ``COPY_BYTES`` float32 array, bytes read + written per
  second (a STREAM "copy"; the write-allocate read is not counted), best of a few, on one
  thread and on all cores at once (one slice per thread; NumPy releases the GIL in the copy);
- sgemm peak: a float32 2048^3 NumPy product on all BLAS threads (2 n^3 flops).

``run_meta`` folds in ``spikesim.train.manifest``: date, command, commit and dirty flag,
package versions, machine (CPU model, cores, vector extensions), kernel threads.
"""
from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from spikesim.train import manifest

COPY_BYTES = 256 * 2 ** 20


def vector_line(machine: dict) -> str:
    """One line saying which vector code the kernels run: the CPU they were compiled for, its
    widest vector extension and the list builder, and what the CPU itself offers."""
    kt = machine.get("kernel_target") or {}
    flags = machine.get("vector_flags") or {}
    has = ", ".join(k for k, v in flags.items() if v) or "unknown"
    return (f"kernels compiled for {kt.get('cpu_name')} ({kt.get('vector')} vectors, "
            f"{kt.get('list_builder')} list builder); the CPU has {has}")


def sgemm_peak(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of a float32 n^3 matrix product with BLAS on all its threads."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / min(ts) / 1e9


def copy_bandwidth(threads: int = 1, nbytes: int = COPY_BYTES, repeats: int = 5) -> float:
    """GB/s (1e9 bytes) read + written by ``np.copyto`` of an ``nbytes`` array split over
    ``threads`` threads; the best of ``repeats``."""
    n = nbytes // 4
    src = np.ones(n, np.float32)
    dst = np.zeros(n, np.float32)
    cuts = [(i * n) // threads for i in range(threads + 1)]
    parts = [(dst[lo:hi], src[lo:hi]) for lo, hi in zip(cuts[:-1], cuts[1:])]
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats + 1):              # the first pass touches the pages
            t = time.perf_counter()
            list(pool.map(lambda p: np.copyto(*p), parts))
            best = min(best, time.perf_counter() - t)
    return 2.0 * n * 4 / best / 1e9


def ceilings(quick: bool = False) -> dict:
    """{sgemm_peak_gflops, copy_gbs_1thread, copy_gbs_all, cores}; ``quick``: smaller
    arrays and products (tests)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    nbytes = 16 * 2 ** 20 if quick else COPY_BYTES
    return {"sgemm_peak_gflops": sgemm_peak(512 if quick else 2048),
            "copy_gbs_1thread": copy_bandwidth(1, nbytes),
            "copy_gbs_all": copy_bandwidth(max(1, cores), nbytes), "cores": cores}


def loadavg():
    """os.getloadavg() as a list (None where the platform has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def run_meta() -> dict:
    """What every benchmark record carries: the manifest of this run (date, command, commit,
    dirty flag, versions, kernel threads, machine) and the load average now."""
    m = manifest.collect()
    m.pop("resumes", None)
    m["kernel_threads"] = m.pop("threads")
    m["loadavg"] = loadavg()
    return m
