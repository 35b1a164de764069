"""The CUDA backend's trace: what one forward pass keeps for its backward pass, on the device,
with host copies made on first use (the readout for the loss, plots, the final state).

Unlike the CPU's trace (spikes as lists, the adaptation trace every 8 steps), every array is
dense and kept in full: u, s and b (T + 1, B, N) per spiking layer, slot 0 the initial state.
On the GPU memory is plentiful next to the cost of rebuilding, and the backward reads them
directly. The host views have the names and meanings of the CPU trace's (``u_full``, ``s_full``,
``bt_full``, ``u``, ``s``, ``bt``, ``output_mem``, ``output_spikes``, ``final_state``,
``activity``, ``firing_rates``), so the code above the backends reads either.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..base import StepViews


@dataclass
class CudaLayerTrace(StepViews):
    """One layer: ``x`` (T, B, N_in) its input on the device (the data, or slots 1..T of the
    layer below's spikes); ``u_dev``, ``s_dev``, ``b_dev`` (T + 1, B, N) on the device (s and b
    None for the integrator)."""
    x: object
    n_in: int
    u_dev: object
    s_dev: object = None
    b_dev: object = None
    _host: dict = field(default_factory=dict, repr=False)

    @property
    def spiking(self) -> bool:
        return self.s_dev is not None

    def _copy(self, key, dev):
        if dev is None:
            return None
        if key not in self._host:
            self._host[key] = dev.copy_to_host()
        return self._host[key]

    @property
    def u_full(self) -> np.ndarray:
        return self._copy("u", self.u_dev)

    @property
    def s_full(self) -> np.ndarray | None:
        return self._copy("s", self.s_dev)

    @property
    def bt_full(self) -> np.ndarray | None:
        return self._copy("b", self.b_dev)

    @property
    def x_host(self) -> np.ndarray:
        return self._copy("x", self.x)


@dataclass
class CudaTrace:
    """The forward pass of a network: one ``CudaLayerTrace`` per layer. ``column_sums``: the
    backend's sums over the rows of a device array (R, n) -> host (n,), for ``firing_rates``."""
    layers: list = field(default_factory=list)
    column_sums: object = None

    @property
    def output_mem(self) -> np.ndarray:
        return self.layers[-1].u

    @property
    def output_spikes(self) -> np.ndarray | None:
        return self.layers[-1].s

    @property
    def output_mem_device(self):
        """The last layer's membrane (T, B, C) on the device (a view of slots 1..T)."""
        return self.layers[-1].u_dev[1:]

    @property
    def output_spikes_device(self):
        last = self.layers[-1]
        return last.s_dev[1:] if last.spiking else None

    def final_state(self, cfg) -> dict:
        """State after the last step, copied: the initial state of the next truncated chunk."""
        out = {}
        for layer, tr in zip(cfg.layers, self.layers):
            T = tr.u_dev.shape[0] - 1       # slot T: the state after the last step
            u = tr.u_dev[T].copy_to_host()
            s = tr.s_dev[T].copy_to_host() if tr.spiking else np.zeros_like(u)
            b = tr.b_dev[T].copy_to_host() if tr.spiking else np.full_like(u, layer.b_j0)
            out[layer.name] = (u, s, b)
        return out

    def activity(self) -> list:
        """Per layer, a ``base.Activity`` counted from the dense arrays (host copies)."""
        from ..base import Activity
        out = []
        for tr in self.layers:
            x = tr.x_host
            nz = x != 0
            spikes = tr.s_full.sum(2, dtype=np.float64) if tr.spiking else None
            out.append(Activity(nz.sum(2), x.sum(2, dtype=np.float64),
                                bool(np.all(x[nz] == 1)), spikes))
        return out

    def firing_rates(self) -> list:
        """Mean spikes per neuron per step of each spiking layer (None for the integrator):
        counted on the device where the backend gave ``column_sums`` (per-neuron counts, exact
        in float32 below 2^24 spikes, come back, not the spikes), else on host copies."""
        out = []
        for tr in self.layers:
            if not tr.spiking:
                out.append(None)
                continue
            T1, B, N = tr.s_dev.shape
            if self.column_sums is None:
                count = float(tr.s.sum(dtype=np.float64))
            else:
                count = float(self.column_sums(tr.s_dev[1:].reshape((T1 - 1) * B, N))
                              .sum(dtype=np.float64))
            out.append(count / ((T1 - 1) * B * N))
        return out
