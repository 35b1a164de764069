"""The CPU backend: arranges the arrays of a forward or backward pass and hands each thread its
chunk of the batch for every layer at once.

No time loop runs in Python. Data enter as (B, T, n_in) and are read in place; every layer's
kernels for one chunk run in one hand-off to the thread pool (``_run_calls``): a chunk's rows
depend on nothing outside the chunk, and each hand-off costs a thread wake-up.
"""
from __future__ import annotations

import time

import numpy as np

from ...model.surrogates import surrogate_consts
from ..base import Backend
from ..kernel_args import BackwardWeights, ExternalGrad, ForwardWeights, GradAccumulators
from . import losses
from .layers import CHECK, alif_backward, alif_forward, integrator_backward, integrator_forward
from .lists import Lists, input_lists
from .threads import compute_threads, n_chunks, run_chunks
from .trace import LayerTrace, Trace
from .workspace import work_array

#: Optional timing hook, None by default (training never sets it). When set, ``_run_calls``
#: calls ``kernel_timer(chunk, index, kernel_name, seconds)`` after each kernel call with the
#: call's ``time.perf_counter`` span, from the thread that ran the chunk; ``index`` is the
#: call's place in the pass (forward: 0 = input lists, i = layer i - 1; backward: 0 = the last
#: layer, downwards). The kernels, their arguments and their order are the same either way,
#: so results are bit-identical; with the hook off the only cost is one test per pass.
#: ``validation/bench_breakdown.py`` uses it for the per-kernel breakdown of a step.
kernel_timer = None


def _run_calls(c, lo, hi, calls):
    """kernel(c, lo, hi, *args) for each (kernel, args) of ``calls`` in order: one chunk's share
    of several kernels in a single hand-off to the thread pool."""
    timer = kernel_timer
    if timer is None:
        for kernel, args in calls:
            kernel(c, lo, hi, *args)
        return
    for i, (kernel, args) in enumerate(calls):
        t0 = time.perf_counter()
        kernel(c, lo, hi, *args)
        timer(c, i, kernel.__name__, time.perf_counter() - t0)


class CpuBackend(Backend):
    name = "cpu"

    def __init__(self, dtype):
        super().__init__(dtype)
        self._ws: dict = {}

    def session(self):
        """Kernel threads with denormals flushed, BLAS single-threaded (``threads.py``)."""
        return compute_threads()

    # -- work arrays ---------------------------------------------------------------------------
    def _buf(self, key, shape) -> np.ndarray:
        """A work array, 64-byte aligned (the forward streams the membrane into it with aligned
        non-temporal stores): reused across calls when ``reuse_buffers`` is on (fresh multi-MB
        arrays per step cost page faults), else freshly allocated."""
        return work_array(self._ws if self.reuse_buffers else None, key, shape, self.dtype)

    def _list_buf(self, key, n, dtype) -> np.ndarray:
        """A 1D work array for lists, reused when ``reuse_buffers`` is on. Lists are allocated
        at full capacity (every element non-zero); only the pages they reach are touched."""
        if not self.reuse_buffers:
            return np.empty(n, dtype)
        a = self._ws.get(key)
        if a is None or a.shape[0] < n or a.dtype != dtype:
            a = self._ws[key] = np.empty(n, dtype)
        return a[:n]

    def _lists(self, prefix, rows, capacity) -> Lists:
        return Lists(self._list_buf(f"{prefix}.p0", rows, np.int64),
                     self._list_buf(f"{prefix}.p1", rows, np.int64),
                     self._list_buf(f"{prefix}.col", capacity, np.int32),
                     self._list_buf(f"{prefix}.val", capacity, self.dtype))

    # -- forward -------------------------------------------------------------------------------
    def forward(self, cfg, params, consts, x, state) -> Trace:
        with compute_threads():
            return self._forward(cfg, params, consts, x, state)

    def _forward(self, cfg, p, consts, x, state) -> Trace:
        B, T, n_in = x.shape
        trace = Trace(nch=n_chunks(B))
        bad = np.zeros(trace.nch, np.int64)           # per chunk: NaN/inf found in the input
        lists = self._lists("x", T * B, T * B * n_in)
        calls = [(input_lists, (x, *lists, bad))]
        for li, (layer, k) in enumerate(zip(cfg.layers, consts)):
            n, N = layer.name, layer.size
            bias = p[f"{n}.b_in"]
            if layer.recurrent:
                bias = bias + p[f"{n}.b_rec"]
            WrecT = (np.ascontiguousarray(p[f"{n}.W_rec"].T) if layer.recurrent
                     else np.zeros((1, 1), self.dtype))
            w = ForwardWeights(np.ascontiguousarray(p[f"{n}.W_in"].T), bias, WrecT, layer.recurrent)
            u_init, s_init, b_init = state[n]
            u = self._buf(f"{li}.u", (T + 1, B, N))
            u[0] = u_init
            if layer.spiking:
                bchk = self._buf(f"{li}.bchk", (T // CHECK + 1, B, N))
                s_last, b_last = np.empty((B, N), self.dtype), np.empty((B, N), self.dtype)
                R = (T + 1) * B         # capacity: every neuron of every slot (smooth spikes)
                s_lists = self._lists(str(li), R, R * N)
                sp = surrogate_consts(layer.surrogate, self.dtype)
                calls.append((alif_forward, (lists, w, k, sp, u, s_init, b_init, bchk, s_last,
                                             b_last, s_lists)))
                trace.layers.append(LayerTrace(lists, s_lists, n_in, u, bchk, s_last, b_last,
                                               k.rho, k.omr))
                lists, n_in = s_lists.rows_from(B), N   # the next layer reads slots 1..T
            else:
                calls.append((integrator_forward, (lists, w, k, u)))
                trace.layers.append(LayerTrace(lists, None, n_in, u))
        run_chunks(_run_calls, B, calls, nch=trace.nch)
        if bad.any():
            raise ValueError("input contains NaN or inf")
        for layer, ltr in zip(cfg.layers, trace.layers):
            if not np.isfinite(ltr.u_full[-1]).all():   # NaN/inf persist in the membrane
                raise ValueError(f"layer {layer.name!r} produced NaN or inf")
        return trace

    # -- backward ------------------------------------------------------------------------------
    def backward(self, cfg, params, consts, trace, g_out) -> dict:
        with compute_threads():
            return self._backward(cfg, params, consts, trace, g_out)

    def _backward(self, cfg, p, consts, trace, g_out) -> dict:
        """All layers' backward kernels for one chunk run in one hand-off to the thread pool
        (as in ``_forward``); the chunks' partial sums are reduced after, in chunk order."""
        d = self.dtype
        g_ext = np.ascontiguousarray(g_out, dtype=d)
        ext = ExternalGrad(g_ext, np.zeros((1, 1), d), False, int(cfg.loss.readout == "mem"))
        calls, sums = [], []
        B = g_ext.shape[1]
        nch = trace.nch                 # the forward's chunks, even if the thread count changed
        for li in range(len(cfg.layers) - 1, -1, -1):
            layer, tr, k = cfg.layers[li], trace.layers[li], consts[li]
            T, B, N = tr.u.shape
            Nin = tr.n_in
            W_in = np.ascontiguousarray(p[f"{layer.name}.W_in"])
            # what the layer below gets: dL/dx (T,B,Nin), or dL/dI (T,B,N) when that is smaller
            # (less memory traffic: the layer below then forms the product per step)
            gx_mode = 0 if li == 0 else (2 if N < Nin else 1)
            gx = (self._buf(f"{li}.gx", (T, B, N if gx_mode == 2 else Nin)) if gx_mode
                  else np.zeros((1, 1, 1), d))
            rec_shape = (nch, N, N) if layer.recurrent else (nch, 1, 1)
            acc = GradAccumulators(np.zeros((nch, Nin, N), d), np.zeros((nch, N), d),
                                   np.zeros(rec_shape if layer.spiking else (nch, 1, 1), d),
                                   np.zeros((nch, N), d), np.zeros((nch, N), d))
            if layer.spiking:
                W_rec = (np.ascontiguousarray(p[f"{layer.name}.W_rec"]) if layer.recurrent
                         else np.zeros((1, 1), d))
                w = BackwardWeights(W_in, W_rec, layer.recurrent)
                sp = surrogate_consts(layer.surrogate, d)
                calls.append((alif_backward, (ext, tr.u_full, tr.b_check, tr.x_lists, tr.s_lists,
                                              w, gx, gx_mode, k, sp, acc)))
            else:
                w = BackwardWeights(W_in, np.zeros((1, 1), d), False)
                calls.append((integrator_backward, (ext.g, tr.u_full, tr.x_lists, w, gx, gx_mode,
                                                    k, acc)))
            sums.append((layer, acc))
            ext = ExternalGrad(gx, W_in, gx_mode == 2, 0)
        run_chunks(_run_calls, B, calls, nch=nch)
        grads = {}
        for layer, acc in sums:
            n = layer.name
            grads[f"{n}.W_in"] = np.ascontiguousarray(acc.W_in_T.sum(0).T)
            grads[f"{n}.b"] = acc.bias.sum(0)
            grads[f"{n}.alpha"] = acc.alpha.sum(0)
            if layer.spiking:
                grads[f"{n}.rho"] = acc.rho.sum(0)
                if layer.recurrent:
                    grads[f"{n}.W_rec"] = np.ascontiguousarray(acc.W_rec_T.sum(0).T)
        return grads

    # -- loss ------------------------------------------------------------------------------------
    def loss(self, kind, out, labels, start, carry=None, grad=False):
        return losses.compute(kind, out, labels, start, carry=carry, grad=grad,
                              work=self._ws if self.reuse_buffers else None)
