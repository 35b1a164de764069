"""The CPU backend's trace: what one forward pass keeps for its backward pass, in the kernels'
format (lists for spikes and inputs, the membrane in full, the adaptation trace every CHECK
steps), with the dense arrays that plots and spike readouts need built on first use."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..base import StepViews
from .lists import Lists, lists_sum, lists_to_dense
from .neuron_rows import adaptation_trace


@dataclass
class LayerTrace(StepViews):
    """What one layer's forward pass keeps for its backward pass.

    ``x_lists``: the non-zeros of each input row r = t*B + b of the layer's input (data or the
    previous layer's spikes); ``s_lists`` the same for the layer's own spikes over all T + 1
    slots (row t*B + b is slot t). ``u_full`` (T+1,B,N) holds the initial membrane in slot 0 and
    the one after step t in slot t+1; of the adaptation trace only every ``layers.CHECK``-th
    slot is kept (``b_check``), and the state after the last step (``s_last``, ``b_last``). The
    dense ``s_full`` and ``bt_full`` are built from these on first use (None for the integrator).
    """
    x_lists: Lists
    s_lists: Lists | None
    n_in: int
    u_full: np.ndarray
    b_check: np.ndarray | None = None
    s_last: np.ndarray | None = None
    b_last: np.ndarray | None = None
    rho: np.ndarray | None = None       # per-neuron rho, 1 - rho, to rebuild bt_full
    omr: np.ndarray | None = None
    _s: np.ndarray | None = field(default=None, repr=False)
    _bt: np.ndarray | None = field(default=None, repr=False)

    @property
    def spiking(self) -> bool:
        return self.s_lists is not None

    @property
    def s_full(self) -> np.ndarray | None:
        """Spikes (T+1,B,N), slot 0 the initial ones; built from the lists on first use."""
        if self.spiking and self._s is None:
            S, B, N = self.u_full.shape
            self._s = np.empty((S, B, N), self.u_full.dtype)
            lists_to_dense(0, B, B, *self.s_lists, self._s)
        return self._s

    @property
    def bt_full(self) -> np.ndarray | None:
        """Adaptation trace (T+1,B,N), rebuilt from its checkpoints and the spikes on first use."""
        if self.spiking and self._bt is None:
            s = self.s_full
            self._bt = np.empty_like(s)
            adaptation_trace(s, self.b_check[0], self.rho, self.omr, self._bt)
        return self._bt

    def spike_sums(self) -> float:
        """Sum of all spikes of slots 1..T (from the lists, without building s_full)."""
        batch = self.u_full.shape[1]
        return lists_sum(self.s_lists.p0[batch:], self.s_lists.p1[batch:], self.s_lists.val)


@dataclass
class Trace:
    """The forward pass of a network: one LayerTrace per layer, time-major. ``nch``: the
    number of batch chunks the forward ran in; the backward runs in the same chunks (the
    kernels rely on each chunk's list entries lying one after the other)."""
    layers: list = field(default_factory=list)
    nch: int = 1

    @property
    def output_mem(self) -> np.ndarray:
        return self.layers[-1].u

    @property
    def output_spikes(self) -> np.ndarray | None:
        return self.layers[-1].s

    def final_state(self, cfg) -> dict:
        """State after the last step, copied: the initial state of the next truncated chunk."""
        out = {}
        for layer, tr in zip(cfg.layers, self.layers):
            u = tr.u_full[-1].copy()
            s = tr.s_last.copy() if tr.spiking else np.zeros_like(u)
            b = tr.b_last.copy() if tr.spiking else np.full_like(u, layer.b_j0)
            out[layer.name] = (u, s, b)
        return out

    def activity(self) -> list:
        """Per layer, a ``base.Activity``: the entries of its input and spike lists, per row."""
        from ..base import Activity
        out = []
        for tr in self.layers:
            S, B, _ = tr.u_full.shape
            T = S - 1
            vals, n = _row_entries(tr.x_lists, T * B)
            spikes = None
            if tr.spiking:
                spikes = _row_sums(*_row_entries(tr.s_lists, S * B)).reshape(S, B)
            out.append(Activity(n.reshape(T, B), _row_sums(vals, n).reshape(T, B),
                                bool(np.all(vals == 1)), spikes))
        return out

    def firing_rates(self) -> list:
        """Mean spikes per neuron per step of each spiking layer (None for the integrator)."""
        return [tr.spike_sums() / tr.u.size if tr.spiking else None for tr in self.layers]



def _row_entries(lists, rows: int):
    """(values of the entries of rows 0..rows-1, in row order; the number of entries of each
    row). Only the rows' own entries are read: the rest of the list arrays is not initialised."""
    p0, p1 = lists.p0[:rows], lists.p1[:rows]
    n = (p1 - p0).astype(np.int64)
    total = int(n.sum())
    first = np.concatenate(([0], np.cumsum(n)[:-1]))
    idx = np.repeat(p0 - first, n) + np.arange(total)
    return lists.val[idx], n


def _row_sums(vals, n) -> np.ndarray:
    """The sum of each row's entries (float64), from ``_row_entries``."""
    out = np.zeros(len(n))
    full = n > 0
    if full.any():
        starts = np.concatenate(([0], np.cumsum(n)[:-1]))[full]
        out[full] = np.add.reduceat(vals.astype(np.float64), starts)
    return out
