"""A model count of the bytes one training step moves to and from memory and of the flops it
does, from the network's shapes and the measured input density and firing rates.

Nothing here is measured by hardware counters (the VM has none): these are the counts a
roofline needs, derived from what the kernels do (docs/architecture.md, "Data flow of one
training step"). Per layer of N neurons reading Nin inputs of density r_in, with firing rate
r, over R = B * T rows (a row: one sequence at one step), itemsize d:

flops (2 per multiply-add, as the dense count of ``validation.problems.dense_gflop``)
  forward   gathers 2 R r_in Nin N (input) + 2 R r N N (recurrent), neuron update
            ``NEURON_FLOPS_FWD`` per neuron-step (integrator ``INTEGRATOR_FLOPS``)
  backward  recurrent product 2 R N N (dense: dL/dI is dense under the surrogates), scatters
            into dW_in 2 R r_in Nin N and dW_rec 2 R r N N, the gradient passed down 2 R N Nin
            (not for layer 0), neuron backward ``NEURON_FLOPS_BWD`` per neuron-step (the
            three-Gaussian surrogate's three exps dominate)
  loss      ``LOSS_FLOPS`` per row and class; input lists one compare per input element

bytes (only the streams of size (T, B, .), which are what exceeds the caches in the paper
  configurations; weights, their gradients and per-row state are taken to stay in cache)
  input     x read (R n_in d), its lists written (entries (4 + d) + 16 per row)
  forward   the input's lists read, u written ((T + 1) B N d), b every 8 steps, own spike
            lists written
  loss      readout read and its gradient written (R C d each)
  backward  u, b checkpoints and both lists read again, the gradient from above read, the
            gradient to the layer below written (R min(N, Nin) d: dL/dI when the layer is
            narrower than its input, else dL/dx)

The counts are a model, not a measurement: the achieved bandwidth they imply can exceed
the machine's where a small problem's arrays stay in cache, and the flop constants of the
neuron updates are estimates (stated above, exported as constants).
"""
from __future__ import annotations

from spikesim.backends.cpu.layers import CHECK
from spikesim.model.config import NetworkConfig

NEURON_FLOPS_FWD = 12
NEURON_FLOPS_BWD = 40
INTEGRATOR_FLOPS = 4
LOSS_FLOPS = 10
LIST_ROW_BYTES = 16          # p0 and p1, int64, per row


def step_counts(cfg: NetworkConfig, B: int, T: int, itemsize: int, input_density: float,
                rates) -> dict:
    """{flops, bytes, per_layer: [...]} of one training step (forward, loss, backward) over
    T steps of B sequences; ``rates``: each layer's firing rate (None: the integrator);
    ``input_density``: the fraction of non-zero input elements."""
    R = B * T
    d = itemsize
    entry = 4 + d                          # a list entry: column (int32) and value
    n_in = cfg.n_in
    flops = R * n_in                       # input lists: one compare per element
    byts = R * n_in * d + R * n_in * input_density * entry + R * LIST_ROW_BYTES
    per_layer = []
    nin, r_in = n_in, input_density
    sizes = [l.size for l in cfg.layers]
    for li, layer in enumerate(cfg.layers):
        N = layer.size
        r = rates[li] if layer.spiking and rates[li] is not None else 0.0
        in_lists = R * r_in * nin * entry + R * LIST_ROW_BYTES
        own_lists = R * r * N * entry + R * LIST_ROW_BYTES if layer.spiking else 0.0
        u_bytes = (T + 1) * B * N * d
        b_bytes = (T // CHECK + 1) * B * N * d if layer.spiking else 0.0
        f_fwd = 2 * R * r_in * nin * N + R * N * (NEURON_FLOPS_FWD if layer.spiking
                                                  else INTEGRATOR_FLOPS)
        f_bwd = 2 * R * r_in * nin * N + R * N * (NEURON_FLOPS_BWD if layer.spiking
                                                  else INTEGRATOR_FLOPS)
        if layer.recurrent:
            f_fwd += 2 * R * r * N * N
            f_bwd += 2 * R * N * N + 2 * R * r * N * N
        if li > 0:
            f_bwd += 2 * R * N * nin
        b_fwd = in_lists + u_bytes + b_bytes + own_lists
        g_above = sizes[li + 1] if li + 1 < len(sizes) and sizes[li + 1] < N else N
        b_bwd = in_lists + u_bytes + b_bytes + own_lists + R * g_above * d
        if li > 0:
            b_bwd += R * min(N, nin) * d
        per_layer.append({"layer": layer.name, "flops_forward": f_fwd, "flops_backward": f_bwd,
                          "bytes_forward": b_fwd, "bytes_backward": b_bwd,
                          "trace_bytes": u_bytes + b_bytes + own_lists})
        flops += f_fwd + f_bwd
        byts += b_fwd + b_bwd
        nin, r_in = N, r
    C = cfg.layers[-1].size
    flops += LOSS_FLOPS * R * C
    byts += 2 * R * C * d
    return {"flops": float(flops), "bytes": float(byts), "per_layer": per_layer,
            "trace_bytes": float(sum(p["trace_bytes"] for p in per_layer)
                                 + R * n_in * input_density * entry + R * LIST_ROW_BYTES)}
