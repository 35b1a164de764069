"""Truncated BPTT, checked chunk by chunk.

A truncated training step (``spikesim.train.trainer.train_step`` with ``tbptt``) cuts the
sequence into chunks; each chunk starts from the state the previous one ended in (held fixed:
no gradient flows back into it) and, for the summed readouts, from the previous chunks' running
sum (a constant), and ends with a parameter update. The step is run as training runs it, with a
plain gradient-descent update, recording what each chunk was given and what it computed. Then:

- **finite differences** (smooth mode): each chunk's gradient against finite differences of
  that chunk's loss with its carried-in state and sum held fixed, at the parameters it saw;
- **reference** (surrogate mode): the whole step against the plain-NumPy reference, which
  carries its *own* state and running sum from chunk to chunk (computed from its own forward
  pass), at the parameters each chunk saw. A fault in what is carried or detached between
  chunks changes the kernels' chunks but not the reference's, and fails this check.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from spikesim.model import presets
from spikesim.model.config import LossConfig, SurrogateConfig
from spikesim.model.readout import softmax
from spikesim.network import Network, initial_state
from spikesim.train.trainer import train_step

LR = 1e-3       # the plain gradient-descent step between chunks (the parameters must change)


@dataclass
class TbpttCase:
    config: object      # NetworkConfig
    batch: int
    steps: int
    chunk: int


def tbptt_cases(surrogate: str | SurrogateConfig = "multi_gaussian") -> dict:
    """The three loss kinds, each over three chunks (two full, one short), in networks of the
    task presets at reduced width. ``surrogate``: "smooth" for the finite-difference check."""
    sg = surrogate if isinstance(surrogate, SurrogateConfig) else SurrogateConfig(surrogate)
    cases = {
        "smnist-nmi (ce_sum_spike, carried sum)": TbpttCase(
            presets.smnist_nmi_config(k=4, hidden=(21, 19, 17), w_rec_init="orthogonal"),
            8, 40, 16),
        "ecg (nll_per_step)": TbpttCase(presets.ecg_config(b_j0=0.1), 8, 40, 16),
        "shd (ce_sum_softmax, carried sum)": TbpttCase(
            presets.shd_config(n_in=30, hidden=(19, 17), n_classes=5), 8, 40, 16),
    }
    for case in cases.values():
        layers = [dataclasses.replace(l, surrogate=sg) if l.spiking else l
                  for l in case.config.layers]
        case.config = dataclasses.replace(case.config, layers=layers)
    return cases


@dataclass
class Chunk:
    """What one chunk of a truncated step was given and computed."""
    t0: int
    x: np.ndarray
    labels: np.ndarray
    state: dict
    carry: np.ndarray | None
    start: int
    params: dict
    loss: float = float("nan")
    grads: dict | None = None
    rates: list | None = None


class _RecordingSGD:
    """Gradient descent that records the gradients it is given and the parameters before it."""

    def __init__(self, params, chunks):
        self.params, self.chunks = params, chunks

    def step(self, grads):
        self.chunks[-1].grads = {k: g.copy() for k, g in grads.items()}
        for k, g in grads.items():
            self.params[k] -= LR * g


def problem(case: TbpttCase, seed: int = 0):
    """A float64 network (input weights scaled so that every layer fires), input, labels and a
    random initial state."""
    cfg = case.config
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in"):
            v *= 5.0
    B, T = case.batch, case.steps
    x = (rng.random((B, T, cfg.n_in)) < 0.4).astype(np.float64)
    labels = (rng.integers(0, cfg.n_out, (B, T)) if cfg.loss.kind == "nll_per_step"
              else rng.integers(0, cfg.n_out, B))
    state = initial_state(cfg, B, np.float64, "random", rng=rng, spikes=True)
    return net, x, labels, state


def run_recorded(net: Network, x, labels, state, chunk: int, step=train_step) -> list:
    """Run ``step`` (the trainer's ``train_step``) as training does and return its chunks."""
    chunks: list = []
    forward, loss = net.forward, net.loss

    def rec_forward(xc, st):
        t0 = chunks[-1].t0 + chunks[-1].x.shape[1] if chunks else 0
        chunks.append(Chunk(t0, xc.copy(), None, {k: tuple(a.copy() for a in v)
                                                  for k, v in st.items()},
                            None, 0, {k: v.copy() for k, v in net.params.items()}))
        tr = forward(xc, st)
        chunks[-1].rates = tr.firing_rates()
        return tr

    def rec_loss(trace, ys, carry=None, grad=False, start=None):
        c = chunks[-1]
        c.labels, c.start = np.array(ys, copy=True), start
        c.carry = None if carry is None else np.array(carry, copy=True)
        res = loss(trace, ys, carry=carry, grad=grad, start=start)
        c.loss = res.loss
        return res

    net.forward, net.loss = rec_forward, rec_loss
    try:
        step(net, _RecordingSGD(net.params, chunks), x, labels, state, tbptt=chunk)
    finally:
        del net.forward, net.loss
    return chunks       # (a chunk that ends before the loss's first step has grads None)


def chunk_loss(net: Network, c: Chunk):
    """The loss of chunk ``c`` as a function of ``net.params`` (carried state and sum fixed)."""
    return lambda: net.loss(net.forward(c.x, c.state), c.labels, carry=c.carry,
                            start=c.start).loss


def reference_chain(cfg, chunks: list, state: dict):
    """The reference's own truncated step over the recorded chunks: yields (chunk, loss,
    grads) for each chunk with a loss, carrying the reference's final state and running
    readout sum from chunk to chunk."""
    from validation.reference_numpy import forward, reference_loss_and_grads
    carry = None
    last = cfg.layers[-1]
    for c in chunks:
        ccfg = dataclasses.replace(cfg, loss=LossConfig(cfg.loss.kind, c.start))
        if c.grads is not None:
            loss, grads = reference_loss_and_grads(ccfg, c.params, c.x, c.labels, state, carry)
            yield c, loss, grads
        out = forward(ccfg, c.params, c.x, state)
        state = {}
        for layer in cfg.layers:
            o = out[layer.name]
            u = o["u"][-1]
            s = o["s"][-1] if layer.spiking else np.zeros_like(u)
            b = o["b"][-1] if layer.spiking else np.full_like(u, layer.b_j0)
            state[layer.name] = (u, s, b)
        if cfg.loss.kind != "nll_per_step" and c.grads is not None:    # the readout's sum
            o = out[last.name]
            z = o["s"] if cfg.loss.kind == "ce_sum_spike" else softmax(o["u"])
            z = z[c.start:].sum(axis=0)
            carry = z if carry is None else carry + z
