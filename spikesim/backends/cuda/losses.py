"""Readouts, losses and their gradients for the CUDA backend: for now computed on the host by
the CPU backend's loss kernels (``spikesim.backends.cpu.losses``), on the readout copied from
the device; the gradient dL/d(readout) goes back to the device in ``CudaBackend.backward``.

Why this is acceptable for a first step: the readout is (T, B, C) with C <= 35 classes in every
task, a small fraction of the layers' state (T, B, N), and the losses are a few flops per value.
Their own kernels (one block per sample, a softmax per step) are still to come (docs/
architecture.md, "CUDA backend"). One definition of each loss, so the two backends agree.
"""
from __future__ import annotations

from ..cpu import losses as _cpu


def compute(kind: str, out, labels, start=0, carry=None, grad=True, work=None):
    """The loss ``kind`` on the host readout ``out`` (T, B, C): ``cpu.losses.compute``."""
    return _cpu.compute(kind, out, labels, start, carry=carry, grad=grad, work=work)
