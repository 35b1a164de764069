"""What the losses read from the last layer, in plain NumPy (docs/model.md section 3):
softmax and log-softmax over the classes, and the running sum of a summed readout.

The backends compute the losses themselves (``Network.loss``); these functions are for the code
above them that needs the same quantities outside a loss (per-step accuracy curves, analyses).
"""
from __future__ import annotations

import numpy as np


def softmax(z, axis: int = -1) -> np.ndarray:
    """exp(z) / sum exp(z) along ``axis``, computed as exp(z - max z) (no overflow), in z's
    dtype."""
    z = np.asarray(z)
    e = np.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def log_softmax(z, axis: int = -1) -> np.ndarray:
    """log softmax(z) along ``axis``: z - max z - log sum exp(z - max z), in z's dtype."""
    z = np.asarray(z)
    shifted = z - z.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def running_sum(out, readout: str, carry=None) -> np.ndarray:
    """The summed readout after every step: z_t = carry + sum over t' <= t of f(out_t'), for
    ``out`` (T, B, C) time-major; f = softmax over the classes for the membrane readout
    (``readout="mem"``, ``ce_sum_softmax``), the spikes themselves, in float64, for
    ``readout="spike"`` (``ce_sum_spike``). ``carry`` (B, C): the sum's starting value."""
    out = np.asarray(out)
    if readout == "spike":
        run = np.cumsum(out.astype(np.float64), axis=0)
    elif readout == "mem":
        run = np.cumsum(softmax(out, -1), axis=0)
    else:
        raise ValueError(f"unknown readout {readout!r}; choose 'spike' or 'mem'")
    if carry is not None:
        run = run + carry[None]
    return run
