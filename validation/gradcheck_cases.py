"""The networks and problems ``spikesim gradcheck`` checks (docs/validation.md).

- ``fd_cases``: float64 networks in the smooth mode (sigmoid spikes, their exact derivative),
  whose gradients finite differences can check: narrow ones (every element of every tensor) and
  wide ones that run the kernels' vector paths as training does (widths that are not multiples
  of 16 and wider than 128, two batch chunks of several neuron blocks, several checkpoint spans
  of the adaptation trace, every layer kind).
- ``reference_cases``: float64 networks in the surrogate mode (Heaviside spikes), checked
  against the plain-NumPy reference: every task network (from ``spikesim.model.presets``, at
  reduced width where it is large), a wide one, and one network per surrogate function with
  every layer kind.

Every problem is built so that each spiking layer fires on at least ``ACTIVITY_FLOOR`` of its
neuron-steps (the reset and adaptation terms are then exercised); the checks fail otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikesim.model import presets
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig, SurrogateConfig
from spikesim.network import Network, initial_state

ACTIVITY_FLOOR = 0.02       # least mean spikes per neuron-step of every checked spiking layer
SURROGATES = ("multi_gaussian", "gaussian", "linear", "slayer")


@dataclass
class Problem:
    """A float64 network with its input, labels and initial state."""
    net: Network
    x: np.ndarray
    labels: np.ndarray
    state: dict


# ----------------------------------------------------------------------------------------------
# finite-difference cases (smooth mode)
# ----------------------------------------------------------------------------------------------
@dataclass
class FdCase:
    config: NetworkConfig
    batch: int
    steps: int
    wide: bool = False          # checked on a sample of each tensor's elements


def fd_cases(quick: bool = False) -> dict:
    """name -> FdCase. Narrow networks (3-5 neurons, every element checked) and wide ones."""
    sm = SurrogateConfig(name="smooth", k=1.5)
    taus = dict(tau_m=(4.0, 1.0), tau_adp=(6.0, 1.0))

    def rec(n, **kw):
        return LayerConfig(n, "rec", b_j0=0.1, surrogate=sm, **{**taus, **kw})

    def dense(n, **kw):
        return LayerConfig(n, "dense", b_j0=0.1, surrogate=sm, **{**taus, **kw})

    def integ(n):
        return LayerConfig(n, "integrator", tau_m=(3.0, 0.5))

    def net(n_in, layers, loss, start):
        return NetworkConfig(n_in=n_in, layers=layers, loss=LossConfig(loss, start))

    T = 8 if quick else 12
    cases = {
        "rec ALIF -> integrator, ce_sum_softmax":
            FdCase(net(3, [rec(5), integ(3)], "ce_sum_softmax", 2), 3, T),
        "rec LIF -> dense ALIF, nll_per_step (masked)":
            FdCase(net(3, [rec(5, beta=0.0), dense(3)], "nll_per_step", 1), 3, T),
        "rec ALIF -> dense ALIF, ce_sum_spike":
            FdCase(net(3, [rec(4), dense(3, dt=0.7)], "ce_sum_spike", 0), 3, T),
        "rec -> rec -> ALIF out, nll_per_step":
            FdCase(net(3, [rec(4), rec(4), dense(3)], "nll_per_step", 2), 3, T),
        "rec -> rec -> integrator, ce_sum_softmax":
            FdCase(net(3, [rec(4), rec(3), integ(3)], "ce_sum_softmax", 3), 3, T),
        "dense ALIF -> integrator, nll_per_step":
            FdCase(net(3, [dense(4), integ(3)], "nll_per_step", 0), 3, T),
        # the vector paths: 137 and 141 neurons (a full 128-lane gather block and a masked
        # rest; 16-lane loops with a masked last vector), 32 rows in two batch chunks of two
        # neuron blocks each (layers.BLOCK), 20 steps = two full and one partial checkpoint
        # span of b (layers.CHECK = 8), every layer kind
        "wide: rec ALIF 137 -> rec LIF 21 -> integrator":
            FdCase(net(24, [rec(137, tau_m=(20.0, 5.0), tau_adp=(30.0, 5.0)),
                            rec(21, beta=0.0), integ(7)], "ce_sum_softmax", 3), 32, 20, True),
        "wide: dense ALIF 141 -> rec ALIF 33 -> dense LIF 19":
            FdCase(net(12, [dense(141), rec(33), dense(19, beta=0.0)], "nll_per_step", 2),
                   32, 20, True),
    }
    if quick:
        keep = ["rec ALIF -> integrator, ce_sum_softmax", "rec ALIF -> dense ALIF, ce_sum_spike",
                "rec -> rec -> ALIF out, nll_per_step",
                "wide: rec ALIF 137 -> rec LIF 21 -> integrator",
                "wide: dense ALIF 141 -> rec ALIF 33 -> dense LIF 19"]
        cases = {k: cases[k] for k in keep}
    return cases


def fd_problem(case: FdCase, seed: int) -> Problem:
    """Random float64 network, input, labels (20 % of per-step labels masked) and a non-zero
    initial state."""
    cfg = case.config
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in") or k.endswith("W_rec"):
            v *= 2.0
        elif k.endswith("b_in"):
            v += rng.normal(0, 0.3, v.shape)
    B, T = case.batch, case.steps
    x = rng.random((B, T, cfg.n_in))
    if cfg.loss.kind == "nll_per_step":
        labels = rng.integers(0, cfg.n_out, (B, T))
        labels[rng.random((B, T)) < 0.2] = -1
    else:
        labels = rng.integers(0, cfg.n_out, B)
    state = initial_state(cfg, B, np.float64, "random", rng=rng, scale=0.5, spikes=True)
    return Problem(net, x, labels, state)


# ----------------------------------------------------------------------------------------------
# reference cases (surrogate mode)
# ----------------------------------------------------------------------------------------------
def _all_kinds(surrogate: str) -> NetworkConfig:
    """One network with every layer kind, all spiking layers using ``surrogate``."""
    sg = SurrogateConfig(surrogate)
    common = dict(b_j0=0.1, surrogate=sg, tau_m=(20.0, 5.0), tau_adp=(150.0, 10.0))
    L = LayerConfig
    return NetworkConfig(10, [L(37, "rec", name="recALIF", **common),
                              L(19, "rec", name="recLIF", beta=0.0, **common),
                              L(23, "dense", name="denseALIF", **common),
                              L(13, "dense", name="denseLIF", beta=0.0, **common),
                              L(5, "integrator", name="out", tau_m=(20.0, 5.0))],
                         LossConfig("ce_sum_softmax", 4))


def reference_cases() -> dict:
    """name -> NetworkConfig: the task networks (docs/model.md section 5) from their presets,
    a wide network, and one network of every layer kind per surrogate."""
    mg = SurrogateConfig("multi_gaussian")
    L = LayerConfig
    cases = {
        "ecg": presets.ecg_config(b_j0=0.1),
        "ecg-icons": presets.ecg_config(b_j0=0.01, surrogate="gaussian", fixed_tau_m=20.0),
        "shd": presets.shd_config(n_in=40, hidden=(37, 29), n_classes=5),
        "smnist-nmi": presets.smnist_nmi_config(k=4, hidden=(8, 16, 16)),
        "smnist-icons": presets.smnist_icons_config(n_fields=20, hidden=(37, 21)),
        # wide layers: gathered recurrent input (136 = a full 128-lane block and a masked
        # rest), weight-gradient scatters grouped by column (gather_scatter.GROUP_N and up,
        # four or more entries per column and step), and a layer at least eight times narrower
        # than its input (it sends dL/dI down: gx_mode 2)
        "wide": NetworkConfig(8, [L(136, "rec", b_j0=0.01, beta=0.1, tau_m=(20, 5),
                                    tau_adp=(150, 10), surrogate=mg),
                                  L(8, "dense", b_j0=0.02, tau_m=(20, 5), tau_adp=(150, 10),
                                    surrogate=mg)],
                              LossConfig("ce_sum_spike", 5)),
    }
    for s in SURROGATES:
        cases[f"surrogate {s}"] = _all_kinds(s)
    return cases


#: per case: input density, whether the input is binary, the factor on W_in (chosen so that
#: every spiking layer fires on 3-30 % of its neuron-steps)
_DRIVE = {"ecg": (0.3, True, 8.0), "ecg-icons": (0.3, True, 3.0), "shd": (0.3, True, 3.0),
          "wide": (1.0, False, 3.0), "smnist-icons": (0.3, False, 10.0),
          **{f"surrogate {s}": (0.3, False, 8.0) for s in SURROGATES}}


def reference_problem(name: str, cfg: NetworkConfig, quick: bool = False) -> Problem:
    """The float64 network, input, labels and random initial state of one reference check."""
    rng = np.random.default_rng(7)
    net = Network(cfg, seed=3, dtype=np.float64)
    density, binary, gain = _DRIVE.get(name, (0.3, False, 3.0))
    for k, v in net.params.items():
        if k.endswith("W_in"):
            v *= gain
        elif k.endswith("W_rec") and not np.any(v):
            v += rng.normal(0, 0.3, v.shape)
    B, T = (32 if name == "wide" else 8), 30 if quick else 60
    x = (rng.random((B, T, cfg.n_in)) < density) * (1.0 if binary
                                                     else rng.random((B, T, cfg.n_in)))
    labels = (rng.integers(0, cfg.n_out, (B, T)) if cfg.loss.kind == "nll_per_step"
              else rng.integers(0, cfg.n_out, B))
    state = initial_state(cfg, B, np.float64, "random", rng=rng, spikes=True)
    return Problem(net, x, labels, state)
