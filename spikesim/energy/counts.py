"""Operations of a spiking network, counted from a real run.

Per layer (N neurons, n_in inputs), summed over samples and steps:

- synaptic operations of the input weights: one per non-zero input and target neuron, an
  accumulate (AC) when the input is a spike (every non-zero input is 1) and a
  multiply-accumulate (MAC) otherwise (analog inputs such as pixel intensities);
- of the recurrent weights (recurrent layers): one AC per spike of the layer's previous step
  and neuron of the layer;
- bias additions: one per bias vector, neuron and step;
- the neuron update of ``spikesim.model.neurons``, per neuron and step, counted from the
  equations as written (``NEURON_OPS``).

The counts come from the backend's sparse lists of each batch (``trace.activity()``), the
lists the kernels themselves ran on; nothing is recomputed densely.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..network import Network
from ..train.evaluate import evaluate

#: operations per neuron and step of each neuron model, from the equations
#: (docs/model.md section 1), as (multiplications, additions) with comparisons as additions:
#:   ALIF: b = rho b + (1 - rho) s           2 mul, 1 add
#:         theta = b_j0 + beta b             1 mul, 1 add
#:         u = alpha u + (1 - alpha) I - theta s dt   3 mul (4 with dt != 1), 2 add
#:         s = H(u - theta)                  1 add, 1 compare
#:   LIF (beta = 0): the membrane and the spike only (theta = b_j0 is constant)
#:   integrator: u = alpha u + (1 - alpha) I   2 mul, 1 add
NEURON_OPS = {"alif": (6, 6), "lif": (3, 4), "integrator": (2, 1)}


def neuron_kind(layer) -> str:
    if not layer.spiking:
        return "integrator"
    return "alif" if layer.beta != 0 else "lif"


@dataclass
class LayerCounts:
    """One layer's activity and operations, summed over the samples and steps counted."""
    name: str
    kind: str                   # rec | dense | integrator
    neuron: str                 # alif | lif | integrator
    size: int
    n_in: int
    input_events: float = 0.0   # non-zero inputs
    input_binary: bool = True   # every non-zero input was 1
    spikes: float = 0.0         # spikes emitted at steps 0..T-1
    rec_events: float = 0.0     # spikes read by the recurrence (previous step's)

    def ops(self, neuron_steps: float, dt: float = 1.0) -> dict:
        """Operations: ``ac``, ``mac``, ``mul``, ``add`` (totals over what was counted)."""
        syn_in = self.input_events * self.size
        mul, add = NEURON_OPS[self.neuron]
        if self.neuron != "integrator" and dt != 1.0:
            mul += 1
        biases = 2 if self.kind == "rec" else 1
        return {"ac": (syn_in if self.input_binary else 0.0) + self.rec_events * self.size,
                "mac": 0.0 if self.input_binary else syn_in,
                "mul": mul * neuron_steps,
                "add": (add + biases) * neuron_steps}


@dataclass
class NetworkCounts:
    """Counts of a network over a data set."""
    layers: list
    samples: int
    steps: int
    accuracy: float | None = None
    info: dict = field(default_factory=dict)

    def neuron_steps(self, layer: LayerCounts) -> float:
        return float(layer.size) * self.samples * self.steps

    def layer_ops(self, cfg=None) -> dict:
        dts = {l.name: l.dt for l in cfg.layers} if cfg is not None else {}
        return {l.name: l.ops(self.neuron_steps(l), dts.get(l.name, 1.0)) for l in self.layers}

    def firing_rates(self) -> dict:
        return {l.name: l.spikes / self.neuron_steps(l) for l in self.layers
                if l.neuron != "integrator"}


def count_network(net: Network, dataset, batch_size: int = 64, init_state: str = "zeros",
                  seed: int = 0, progress: bool = False) -> NetworkCounts:
    """Run ``net`` over ``dataset`` (``spikesim.train.evaluate.evaluate``) and count what each
    layer received and emitted, batch by batch."""
    cfg = net.config
    layers = [LayerCounts(l.name, l.kind, neuron_kind(l), l.size,
                          cfg.n_in if i == 0 else cfg.layers[i - 1].size)
              for i, l in enumerate(cfg.layers)]
    steps = {"T": None}

    def on_batch(b):
        for lc, act, layer in zip(layers, b.trace.activity(), cfg.layers):
            T = act.inputs.shape[0]
            steps["T"] = T
            lc.input_events += float(act.inputs.sum())
            lc.input_binary &= act.binary
            if act.spikes is not None:
                lc.spikes += float(act.spikes[1:].sum())
                if layer.recurrent:
                    lc.rec_events += float(act.spikes[:-1].sum())

    r = evaluate(net, dataset, batch_size, init_state, seed, progress=progress,
                 on_batch=on_batch, desc="counting")
    return NetworkCounts(layers, r["n_samples"], steps["T"], r["accuracy"])
