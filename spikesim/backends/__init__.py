"""Backends: the kernels that run a network on one kind of hardware, behind one interface
(``base.Backend``). ``get_backend(name)`` returns the class of a backend by name."""
from __future__ import annotations

BACKENDS = ("cpu", "cuda")


def get_backend(name: str):
    """The backend class named ``name`` ("cpu", or "cuda": needs numba-cuda and a GPU, or the
    CUDA simulator; its constructor says which is missing)."""
    if name == "cpu":
        from .cpu.backend import CpuBackend
        return CpuBackend
    if name == "cuda":
        from .cuda.backend import CudaBackend
        return CudaBackend
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def check_backend(name: str) -> None:
    """Whether the backend ``name`` can run here: returns, or raises what its constructor raises
    (the CUDA backend: ImportError naming numba-cuda, RuntimeError without a GPU)."""
    get_backend(name)("float32")
