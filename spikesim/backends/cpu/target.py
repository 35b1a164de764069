"""The CPU the kernels are compiled for, and the widest vector extension its code may use.

Numba compiles for this host's CPU and features unless ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` say otherwise (``NUMBA_CPU_NAME=generic`` sets the features to ""). With
an empty feature list LLVM takes the named CPU's own features: ``NUMBA_CPU_NAME=haswell
NUMBA_CPU_FEATURES=`` gives AVX2-only code on an AVX-512 machine, while ``NUMBA_CPU_NAME=haswell``
alone keeps the host's AVX-512. The kernels choose their list builder by the target
(``LIST_BUILDER``, used by ``simd.compress16``), and every run records :func:`kernel_target`.
"""
from __future__ import annotations

import platform

from llvmlite import binding as llvm
from numba.core import config

#: the widest vector extension of common LLVM CPU names, for an empty feature list
NAMED_CPU_VECTOR = {
    "generic": "none", "x86-64": "none", "x86-64-v2": "none", "x86-64-v3": "avx2",
    "x86-64-v4": "avx512f", "haswell": "avx2", "broadwell": "avx2", "skylake": "avx2",
    "znver1": "avx2", "znver2": "avx2", "znver3": "avx2", "znver4": "avx512f",
    "znver5": "avx512f", "skylake-avx512": "avx512f", "cascadelake": "avx512f",
    "icelake-server": "avx512f", "sapphirerapids": "avx512f"}


def kernel_target() -> dict:
    """``cpu_name`` (``NUMBA_CPU_NAME``, else LLVM's name of this host's CPU), ``vector``:
    avx512f, avx2, neon or none (None: a CPU name this module's table does not know), and
    ``list_builder`` (:func:`list_builder`)."""
    name = config.CPU_NAME or llvm.get_host_cpu_name()
    if config.CPU_FEATURES == "":           # the named CPU's own features
        vector = NAMED_CPU_VECTOR.get(name)
    else:
        feats = (config.CPU_FEATURES.split(",") if config.CPU_FEATURES is not None else
                 [("+" if v else "-") + k for k, v in llvm.get_host_cpu_features().items()])
        on = {f[1:] for f in feats if f.startswith("+")}
        vector = next((v for v in ("avx512f", "avx2", "neon") if v in on), "none")
    if vector == "none" and platform.machine() in ("aarch64", "arm64"):
        vector = "neon"           # every 64-bit ARM core has it; LLVM need not list it
    return {"cpu_name": name, "vector": vector, "list_builder": list_builder(name, vector)}


def list_builder(cpu_name: str, vector: str | None) -> str:
    """How the kernels append the non-zeros of 16 lanes to a list: "vcompress" (one AVX-512
    compress store) on Intel AVX-512 CPUs, where the kernels were tuned, else "bits" (a loop
    over the set bits). Without AVX-512 LLVM expands a compress store into a test and a branch
    per lane; on AMD Zen 4 and 5 the compress store to memory is microcoded: building the shd
    benchmark's input lists took 13.1-13.3 ms per chunk with it and 4.7-5.2 ms with the bit
    loop (validation/bench_list_probe.py, docs/benchmarks.md)."""
    if vector == "avx512f" and not str(cpu_name).startswith("znver"):
        return "vcompress"
    return "bits"


def vector_code(cpu_name: str, vector: str | None) -> dict:
    """Every choice the vector primitives (``simd.py``) make by the target, so that two targets
    with equal choices get the same LLVM IR from Numba: ``list_builder``; ``cheap_masked``,
    whether masked loads and stores are single cheap instructions (AVX-512's k-masks);
    ``masked_load``, whether the CPU has a masked load instruction at all (AVX-512, AVX2; not
    NEON, not x86-64 without AVX)."""
    return {"list_builder": list_builder(cpu_name, vector),
            "cheap_masked": vector == "avx512f",
            "masked_load": vector in ("avx512f", "avx2")}


#: this process's kernel target (read once: Numba's cache keys its compiled code by the same
#: CPU name and features, so a cached kernel always matches it)
TARGET = kernel_target()
VECTOR, LIST_BUILDER = TARGET["vector"], TARGET["list_builder"]
CODE = vector_code(TARGET["cpu_name"], VECTOR)
