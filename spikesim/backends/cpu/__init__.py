"""The CPU backend: Numba kernels on explicit 16-lane vectors, run on a thread pool."""
from ..compile_notice import register as _register_compile_notice

_register_compile_notice()
