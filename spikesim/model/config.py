"""Network configuration: a small, JSON-serialisable description of a spiking network.

A network is a chain of layers. Layer 0 reads the input x_t; layer l reads the spikes of
layer l-1 at the same step t. Layer kinds (docs/model.md section 1):

- ``rec``        recurrent ALIF/LIF: I_t = W_in x_t + b_in + W_rec s_{t-1} + b_rec
- ``dense``      feed-forward ALIF/LIF: I_t = W_in x_t + b_in
- ``integrator`` non-spiking leaky readout: u_t = alpha u_{t-1} + (1 - alpha) I_t,
  I_t = W_in x_t + b_in

LIF is ALIF with beta = 0. The loss reads the last layer: its membrane (``nll_per_step``,
``ce_sum_softmax``) or its spikes (``ce_sum_spike``).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

LAYER_KINDS = ("rec", "dense", "integrator")
SURROGATES = ("gaussian", "multi_gaussian", "linear", "slayer", "smooth")
LOSSES = ("nll_per_step", "ce_sum_softmax", "ce_sum_spike")
W_INITS = ("xavier_uniform", "orthogonal", "zeros", "kaiming_uniform")
SURROGATE_ALIASES = {"g": "gaussian", "mg": "multi_gaussian", "gauss": "gaussian",
                     "multi-gaussian": "multi_gaussian", "multigaussian": "multi_gaussian"}


@dataclass
class SurrogateConfig:
    """Which pseudo-derivative replaces dH/dx in the backward pass (docs/model.md section 2).

    ``smooth`` is not a surrogate: the forward pass becomes sigmoid(k x) and the backward pass
    its exact derivative, so the whole model is differentiable and finite differences apply.
    """
    name: str = "multi_gaussian"
    gamma: float = 0.5
    sigma: float = 0.5
    h: float = 0.15
    scale: float = 6.0
    k: float = 4.0          # slope of the smooth mode's sigmoid

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"surrogate name must be a string, got {type(self.name).__name__}")
        self.name = SURROGATE_ALIASES.get(self.name.lower(), self.name.lower())
        if self.name not in SURROGATES:
            raise ValueError(
                f"unknown surrogate {self.name!r}; choose one of {', '.join(SURROGATES)}")
        for f in ("gamma", "sigma", "h", "scale", "k"):
            _check_number(f"surrogate.{f}", getattr(self, f))
        if self.sigma <= 0 or self.scale <= 0 or self.k <= 0:
            raise ValueError("surrogate sigma, scale and k must be positive")


@dataclass
class LayerConfig:
    """One layer: kind, size, neuron constants, surrogate and initialisation."""
    size: int
    kind: str = "rec"
    name: str = ""
    beta: float = 1.8
    b_j0: float = 0.01
    dt: float = 1.0
    surrogate: SurrogateConfig = field(default_factory=SurrogateConfig)
    w_in_init: str = "xavier_uniform"
    w_rec_init: str = "orthogonal"
    tau_m: tuple = (20.0, 0.0)       # (mean, std) of the normal initialisation; std 0: constant
    tau_adp: tuple = (200.0, 0.0)
    train_tau_m: bool = True
    train_tau_adp: bool = True

    def __post_init__(self):
        if isinstance(self.surrogate, dict):
            self.surrogate = SurrogateConfig(**self.surrogate)
        elif isinstance(self.surrogate, str):
            self.surrogate = SurrogateConfig(name=self.surrogate)
        if not isinstance(self.size, int) or isinstance(self.size, bool) or self.size <= 0:
            raise ValueError(f"layer size must be a positive integer, got {self.size!r}")
        if self.kind not in LAYER_KINDS:
            raise ValueError(
                f"unknown layer kind {self.kind!r}; choose one of {', '.join(LAYER_KINDS)}")
        for f in ("beta", "b_j0", "dt"):
            _check_number(f"layer.{f}", getattr(self, f))
        if self.dt <= 0:
            raise ValueError("dt must be positive")
        for f in ("w_in_init", "w_rec_init"):
            if getattr(self, f) not in W_INITS:
                raise ValueError(
                    f"unknown {f} {getattr(self, f)!r}; choose one of {', '.join(W_INITS)}")
        self.tau_m = _tau_pair("tau_m", self.tau_m)
        self.tau_adp = _tau_pair("tau_adp", self.tau_adp)

    @property
    def spiking(self) -> bool:
        return self.kind != "integrator"

    @property
    def recurrent(self) -> bool:
        return self.kind == "rec"


@dataclass
class LossConfig:
    """The readout and loss applied to the last layer, from step ``start`` on (inclusive)."""
    kind: str = "ce_sum_spike"
    start: int = 0

    def __post_init__(self):
        if self.kind not in LOSSES:
            raise ValueError(f"unknown loss {self.kind!r}; choose one of {', '.join(LOSSES)}")
        if not isinstance(self.start, int) or self.start < 0:
            raise ValueError(f"loss start must be a non-negative integer, got {self.start!r}")

    @property
    def readout(self) -> str:
        """'mem' when the loss reads membranes, 'spike' when it reads spikes."""
        return "spike" if self.kind == "ce_sum_spike" else "mem"


@dataclass
class NetworkConfig:
    """A chain of layers on an input of ``n_in`` channels, with its loss."""
    n_in: int
    layers: list
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if not isinstance(self.n_in, int) or isinstance(self.n_in, bool) or self.n_in <= 0:
            raise ValueError(f"n_in must be a positive integer, got {self.n_in!r}")
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        self.layers = [LayerConfig(**l) if isinstance(l, dict) else l for l in self.layers]
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        names = set()
        for i, layer in enumerate(self.layers):
            if not layer.name:
                layer.name = f"layer{i}"
            if layer.name in names:
                raise ValueError(f"duplicate layer name {layer.name!r}")
            names.add(layer.name)
            if layer.kind == "integrator" and i != len(self.layers) - 1:
                raise ValueError(f"layer {layer.name!r}: an integrator can only be the last layer")
        if self.loss.readout == "spike" and not self.layers[-1].spiking:
            raise ValueError(
                f"loss {self.loss.kind!r} reads spikes but the last layer is an integrator")

    @property
    def n_out(self) -> int:
        return self.layers[-1].size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NetworkConfig":
        if not isinstance(d, dict):
            raise TypeError(f"a network config must be a dict, got {type(d).__name__}")
        unknown = set(d) - {"n_in", "layers", "loss"}
        if unknown:
            raise ValueError(f"unknown network config keys: {sorted(unknown)}")
        layers = []
        for l in d.get("layers", []):
            l = dict(l)
            bad = set(l) - {f.name for f in dataclasses.fields(LayerConfig)}
            if bad:
                raise ValueError(f"unknown layer config keys: {sorted(bad)}")
            layers.append(LayerConfig(**l))
        return cls(n_in=d.get("n_in"), layers=layers, loss=LossConfig(**d.get("loss", {})))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def param_names(cfg: NetworkConfig) -> list:
    """Names of the trainable arrays, in a fixed order: '<layer>.W_in', '.b_in', '.W_rec', ..."""
    names = []
    for layer in cfg.layers:
        n = layer.name
        names += [f"{n}.W_in", f"{n}.b_in"]
        if layer.recurrent:
            names += [f"{n}.W_rec", f"{n}.b_rec"]
        names.append(f"{n}.tau_m")
        if layer.spiking:
            names.append(f"{n}.tau_adp")
    return names


def param_shapes(cfg: NetworkConfig) -> dict:
    """Expected shape of every parameter (PyTorch Linear layout: out x in)."""
    shapes, n_prev = {}, cfg.n_in
    for layer in cfg.layers:
        n, m = layer.name, layer.size
        shapes[f"{n}.W_in"] = (m, n_prev)
        shapes[f"{n}.b_in"] = (m,)
        if layer.recurrent:
            shapes[f"{n}.W_rec"] = (m, m)
            shapes[f"{n}.b_rec"] = (m,)
        shapes[f"{n}.tau_m"] = (m,)
        if layer.spiking:
            shapes[f"{n}.tau_adp"] = (m,)
        n_prev = m
    return shapes


def _check_number(name: str, v: Any):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(v).__name__}")
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{name} must be finite, got {v}")


def _tau_pair(name: str, v) -> tuple:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        v = (float(v), 0.0)
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{name} must be a number or a (mean, std) pair, got {v!r}")
    _check_number(f"{name} mean", v[0])
    _check_number(f"{name} std", v[1])
    if v[1] < 0:
        raise ValueError(f"{name} std must be >= 0")
    return (float(v[0]), float(v[1]))
