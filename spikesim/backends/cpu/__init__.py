"""The CPU backend: Numba kernels on explicit 16-lane vectors, run on a thread pool."""
