"""The CUDA backend (``backend.CudaBackend``, ``Network(cfg, backend="cuda")``) and the CUDA
target's view of the model's equations.

The kernels (``layers.py``: ``alif_forward``, ``alif_backward``, ``integrator_forward``,
``integrator_backward``, as on the CPU, plus ``matmul``, ``column_sums``, ``sum_splits``
and ``fill``) are Numba CUDA kernels that call the scalar equations of ``spikesim.model``
unchanged: ``register_equations``
teaches the CUDA target the model's primitives, ``compile_equation`` compiles one equation to
PTX and ``ptx.compile_kernel`` one kernel, without a GPU (tests/test_equations_ptx.py,
tests/test_cuda_backend.py). Without a GPU the kernels run in the CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1`` before numba is imported; tests/test_cuda_sim.py compares them with
the CPU backend there). The losses (``losses.py``) run on the device from the backend's
``readout``, or on the host by the CPU's kernels from a host readout; the optimiser's update
and what is derived from parameters kept on the device in ``optim.py``. The design is in
docs/architecture.md, "CUDA backend". Needs the optional package ``numba-cuda``
(``pip install -e ".[cuda]"``).
"""
from __future__ import annotations

import contextlib
import types as pytypes

_registered: set = set()     # the primitives registered with the CUDA target so far


def require_numba_cuda():
    """``numba.cuda`` with the primitives registered, or a clear error naming what is missing."""
    try:
        from numba import cuda
        from numba.cuda.extending import overload
    except ImportError as e:       # numba-cuda not installed
        raise ImportError("the CUDA target needs the package numba-cuda: "
                          "pip install -e \".[cuda]\"") from e
    from ...model import neurons  # noqa: F401  (its host_and_kernel functions join PRIMITIVES)
    register_equations(overload)
    return cuda


def register_equations(cuda_overload) -> None:
    """Register the model's primitives (``spikesim.model.primitives``) with the CUDA target's
    ``overload``, each once; one added to ``PRIMITIVES`` later is registered by the next call."""
    from ...model.primitives import PRIMITIVES
    for fn, typer in PRIMITIVES:
        if fn not in _registered:
            cuda_overload(fn, inline="always")(typer)
            _registered.add(fn)


@contextlib.contextmanager
def _target_device(cc):
    """Compile for compute capability ``cc`` without a GPU. ``compile_ptx`` takes the target
    from its ``cc`` argument, but an ``overload`` met during typing compiles its implementation
    for the *current* device, which it asks the driver for; where no driver is present, this
    answers with ``cc`` for the duration of the compilation."""
    import numba.cuda.dispatcher as dispatcher
    real = dispatcher.get_current_device
    try:
        real()
        have_device = True
    except Exception:          # no driver or no GPU: CudaSupportError and friends
        have_device = False
    if not have_device:
        dispatcher.get_current_device = lambda: pytypes.SimpleNamespace(compute_capability=cc)
    try:
        yield
    finally:
        dispatcher.get_current_device = real


def _caller(fn, n_args: int):
    """A function that calls ``fn`` with its n arguments: compiled as the root, it makes ``fn``
    resolve as compiled code does (a primitive through its overload, not its Python body)."""
    names = ", ".join(f"a{i}" for i in range(n_args))
    scope = {"fn": fn}
    exec(f"def call({names}):\n    return fn({names})\n", scope)
    return scope["call"]


def compile_equation(fn, argtypes, cc=(8, 0)) -> tuple:
    """PTX of the scalar equation ``fn`` (a ``spikesim.model`` function) called as a CUDA device
    function with the Numba types ``argtypes``; returns (ptx, return type)."""
    cuda = require_numba_cuda()
    with _target_device(cc):
        return cuda.compile_ptx(_caller(fn, len(argtypes)), tuple(argtypes), device=True, cc=cc)

