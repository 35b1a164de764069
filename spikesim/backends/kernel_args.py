"""The named tuples in which the layer kernels receive their arguments, shared by the backends.

A kernel unpacks them once at its top; Numba passes a named tuple of arrays and scalars as its
fields, so nothing changes in the compiled loops. Per-neuron arrays are (N,), in the kernel's
dtype; scalars are of that dtype too (Numba would promote float32 arithmetic with a Python float
to float64).
"""
from __future__ import annotations

from typing import Any, NamedTuple


class LayerConsts(NamedTuple):
    """A layer's constants for one pass: the decays from its time constants and the scalars of
    its neuron model (``spikesim.model.neurons``)."""
    alpha: Any      # (N,) exp(-dt / tau_m)
    oma: Any        # (N,) 1 - alpha
    rho: Any        # (N,) exp(-dt / tau_adp); zeros for the integrator
    omr: Any        # (N,) 1 - rho
    beta: Any       # adaptation strength (0: LIF)
    b_j0: Any       # baseline threshold
    dt: Any         # time step


class ForwardWeights(NamedTuple):
    W_in_T: Any     # (N_in, N) the input weights, transposed: a gathered row per input entry
    bias: Any       # (N,) the input bias (plus the recurrent bias of a recurrent layer)
    W_rec_T: Any    # (N, N) the recurrent weights, transposed; (1, 1) unused if not recurrent
    recurrent: bool


class BackwardWeights(NamedTuple):
    W_in: Any       # (N, N_in)
    W_rec: Any      # (N, N); (1, 1) unused if not recurrent
    recurrent: bool


class ExternalGrad(NamedTuple):
    """The gradient that reaches a spiking layer from outside it."""
    g: Any          # (T, B, N) dL/du_t (readout) or dL/ds_t; with ``prod``, (T, B, M) dL/dI above
    W: Any          # (M, N) the weights of the layer above (used with ``prod``), else (1, 1)
    prod: bool      # g is dL/dI of the layer above, to be multiplied by W per step
    on_u: int       # 1: g is dL/du_t (a membrane readout); 0: dL/ds_t


class GradAccumulators(NamedTuple):
    """Per-chunk partial sums of a layer's gradients (leading axis: the chunk), reduced by the
    caller in a fixed order."""
    W_in_T: Any     # (chunks, N_in, N)
    bias: Any       # (chunks, N)
    W_rec_T: Any    # (chunks, N, N), or (chunks, 1, 1)
    alpha: Any      # (chunks, N) dL/dalpha
    rho: Any        # (chunks, N) dL/drho
