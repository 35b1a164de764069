"""Every CUDA kernel compiled to PTX without a GPU (``numba.cuda.compile_ptx``, with the
argument types of the backend's launches), so that CI fails on a kernel that the simulator runs
but the CUDA compiler rejects (tests/test_cuda_backend.py)."""
from __future__ import annotations

from . import _target_device, layers, losses, optim, require_numba_cuda


def kernel_modules() -> list:
    """The modules holding kernels (each with ``KERNELS``: name -> Python function, and
    ``signature(name, dtype, sp_type)``: the argument types of the backend's launches)."""
    return [layers, losses, optim]


def kernel_names() -> list:
    return [name for m in kernel_modules() for name in m.KERNELS]


def compile_kernel(name: str, dtype, cc=(8, 0)) -> str:
    """PTX of kernel ``name`` (``kernel_names``) for ``dtype`` (float32 or float64) and compute
    capability ``cc``, by ``numba.cuda.compile_ptx``: no GPU needed, and it fails on what the
    simulator accepts but the CUDA compiler does not (Python objects, untyped constructs...)."""
    from numba import typeof

    from ...model.config import SurrogateConfig
    from ...model.surrogates import surrogate_consts
    cuda = require_numba_cuda()
    module = next(m for m in kernel_modules() if name in m.KERNELS)
    sp_type = typeof(surrogate_consts(SurrogateConfig(), dtype))
    with _target_device(cc):
        ptx, _ = cuda.compile_ptx(module.KERNELS[name], module.signature(name, dtype, sp_type),
                                  cc=cc)
    return ptx
