"""A synthetic temporal task that ships with the package: the delayed cue.

Input channels are split into one group per class. During the first ``cue_steps`` steps the
group of the sample's class fires at ``rate_cue``; afterwards every channel fires only at the
background ``rate_noise``. The class is read out after a silent delay, from step
``read_from`` on, so the network must hold the cue in its state for tens of steps: longer than
a membrane time constant of 20 steps lets a feed-forward LIF layer do, which is what recurrence
and slow adaptation thresholds are for.
"""
from __future__ import annotations

import numpy as np


def delayed_cue(n: int = 512, n_classes: int = 4, n_in: int = 16, T: int = 60, cue_steps: int = 20,
                read_from: int = 40, rate_cue: float = 0.3, rate_noise: float = 0.01,
                seed: int = 0):
    """Returns x (n, T, n_in) float32 spikes in {0, 1} and labels (n,) int64."""
    if n_in < n_classes:
        raise ValueError(f"need at least one input channel per class ({n_classes}), got {n_in}")
    if not 0 < cue_steps < read_from < T:
        raise ValueError("need 0 < cue_steps < read_from < T")
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n)
    group = np.arange(n_in) * n_classes // n_in                  # class of each channel
    rate = np.full((n, T, n_in), rate_noise)
    cue = group[None, :] == labels[:, None]                      # (n, n_in)
    rate[:, :cue_steps, :] = np.where(cue[:, None, :], rate_cue, rate_noise)
    x = (rng.random((n, T, n_in)) < rate).astype(np.float32)
    return x, labels.astype(np.int64)
