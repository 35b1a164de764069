"""The seam between the network and the hardware: what a backend implements.

``spikesim.network.Network`` keeps the configuration, the parameters, the tau chain rule and
the choice of loss; a backend runs the kernels. It owns its trace format (what the forward keeps
for the backward) and its work arrays. The CPU backend (``spikesim.backends.cpu``) and the CUDA
backend (``spikesim.backends.cuda``) implement the same methods with the same kernel names.

Arguments a backend receives:

- ``cfg``: the ``NetworkConfig``; ``params``: the parameter dict in the network's dtype;
- ``consts``: one ``kernel_args.LayerConsts`` per layer, built by the network from the time
  constants (``spikesim.model.neurons.decay``);
- ``x`` (B, T, n_in), ``state``: layer name -> (u, s, b), each (B, N).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np


class StepViews:
    """The states of steps 1..T of a layer trace: ``u``, ``s`` and ``bt`` are views of the
    trace's ``u_full``, ``s_full`` and ``bt_full`` (T+1, B, N) without slot 0, the initial
    state. ``s`` and ``bt`` are None for a non-spiking layer (``spiking`` False)."""

    @property
    def u(self) -> np.ndarray:
        return self.u_full[1:]

    @property
    def s(self) -> np.ndarray | None:
        return None if not self.spiking else self.s_full[1:]

    @property
    def bt(self) -> np.ndarray | None:
        return None if not self.spiking else self.bt_full[1:]


@dataclass
class LossResult:
    loss: float
    grad: np.ndarray | None
    pred: np.ndarray            # (B, T) per step for nll_per_step, else (B,)
    correct: int                # number of correct predictions (masked steps excluded)
    count: int                  # number of predictions counted
    logits: np.ndarray | None = None   # (B, C) the summed readout for the sum losses

    @property
    def accuracy(self) -> float:
        return self.correct / max(1, self.count)


@dataclass
class Activity:
    """What one layer received and emitted in a forward pass, per step t and sample b (counted
    from the backend's own sparse lists, as the kernels used them): ``inputs`` (T, B) non-zero
    inputs, ``input_sum`` (T, B) their sum, ``binary`` whether every non-zero input was 1;
    ``spikes`` (T + 1, B) spikes of the layer's own slots (slot 0: the initial state's, read by
    the recurrence at step 0; slot t + 1: step t's), None for a non-spiking layer."""
    inputs: np.ndarray
    input_sum: np.ndarray
    binary: bool
    spikes: np.ndarray | None


class Backend(ABC):
    """Forward, backward and loss of a configured layer chain on one kind of hardware.

    ``reuse_buffers``: when on, work arrays (and so the arrays of the last trace and loss
    result) are reused from call to call instead of freshly allocated; the trainer turns it on.
    """
    name: str = ""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)
        self.reuse_buffers = False

    @abstractmethod
    def forward(self, cfg, params: dict, consts: list, x: np.ndarray, state: dict):
        """Run every layer over the sequence; returns the backend's trace, which has at least
        ``output_mem`` (T, B, C), ``output_spikes`` (T, B, C) or None, ``final_state(cfg)``,
        ``firing_rates()`` and ``activity()`` (see ``Activity``)."""

    @abstractmethod
    def backward(self, cfg, params: dict, consts: list, trace, g_out: np.ndarray) -> dict:
        """Gradients from dL/d(readout) g_out (T, B, C): a dict with, per layer name n,
        ``n.W_in``, ``n.b``, and for spiking layers ``n.W_rec`` (recurrent ones) and
        ``n.rho``, and ``n.alpha``: dL/d(bias) and dL/d(decay), not yet dL/dtau."""

    @abstractmethod
    def loss(self, kind: str, out, labels, start: int, carry=None,
             grad: bool = False) -> LossResult:
        """The loss ``kind`` (``spikesim.model.config.LOSSES``) on the readout ``out`` (T, B, C)."""

    def readout(self, trace, kind: str):
        """The readout the loss reads: the last layer's spikes (``kind`` "spike") or membrane
        (T, B, C), in the form this backend's ``loss`` takes (the CPU: the trace's host arrays;
        the CUDA backend: device arrays, so the loss and its gradient stay on the device)."""
        return trace.output_spikes if kind == "spike" else trace.output_mem

    def session(self) -> AbstractContextManager:
        """A context in which a series of calls runs (the CPU backend sets its threads)."""
        import contextlib
        return contextlib.nullcontext()
