"""Backends: the kernels that run a network on one kind of hardware, behind one interface
(``base.Backend``). ``get_backend(name)`` returns the class of a backend by name."""
from __future__ import annotations

BACKENDS = ("cpu",)


def get_backend(name: str):
    """The backend class named ``name`` ("cpu")."""
    if name == "cpu":
        from .cpu.backend import CpuBackend
        return CpuBackend
    if name == "cuda":
        raise ValueError("backend 'cuda' is not available yet in this version of spikesim; "
                         "use backend='cpu'")
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
