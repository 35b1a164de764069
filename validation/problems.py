"""The benchmark problems: one training step of a network on synthetic input (network, batch,
steps, input, input gains), the dense FLOP count of a step, and a timer. Shared by the
benchmark (``validation.bench``, ``validation.bench_study``) and the PyTorch reference
(``validation.torch_reference``).

Two kinds of problem, both described by a :class:`ProblemSpec`:

- the three paper configurations (``configs()``: shd, ecg, smnist), whose input gains put the
  firing rates near 10 %; ``make_problem(name)`` builds them exactly as the benchmark always
  has (the same arrays, bit for bit);
- any other shape: ``custom_spec`` from a layer string such as ``rec:256,rec:256,dense:10``
  (kinds of ``spikesim.model.config.LAYER_KINDS``), and ``with_overrides`` to change batch,
  steps, width, input density, dtype or loss of any spec (the scaling sweeps do this).
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import numpy as np

from spikesim.model.config import LAYER_KINDS, LOSSES, LayerConfig, LossConfig, NetworkConfig
from spikesim.model.presets import shd_config
from spikesim.network import Network

DTYPES = ("float32", "float64")


def configs() -> dict:
    """name -> (network config, batch, steps, input kind, input gain). The gains on W_in put the
    firing rates near 10 %, the rate the benchmark's numbers assume (the sparse paths get
    slower with more)."""
    L = LayerConfig
    return {
        "shd": (shd_config(), 64, 250, "binary:0.02", 10.0),
        "ecg": (NetworkConfig(4, [L(36, "rec", beta=0.0, b_j0=0.1, tau_adp=7.0, name="hidden"),
                                  L(6, "dense", b_j0=0.1, tau_adp=100.0, name="out")],
                              LossConfig("nll_per_step", 10)), 64, 1301, "binary:0.1", 9.0),
        "smnist": (NetworkConfig(80, [L(64, "rec", tau_adp=(200, 25), tau_m=(20, 5)),
                                      L(256, "rec", tau_adp=(200, 25), tau_m=(20, 5)),
                                      L(10, "dense", tau_adp=(200, 25), tau_m=(20, 5))],
                                 LossConfig("ce_sum_spike", 0)), 256, 784, "rbf", 12.0),
    }


@dataclass
class ProblemSpec:
    """One benchmark problem. ``gains``: the factor on each layer's W_in after initialisation
    (one per layer); ``input``: ``binary:P`` (each input element 1 with probability P) or
    ``rbf`` (the S-MNIST population code of random pixels); ``target_rate``: the firing rate
    the gains were (or are to be) searched for, None where the gains are fixed."""
    name: str
    cfg: NetworkConfig
    batch: int
    steps: int
    input: str
    gains: list
    dtype: str = "float32"
    seed: int = 0
    target_rate: float | None = None

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        for k in ("batch", "steps"):
            v = getattr(self, k)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{k} must be a positive integer, got {v!r}")
        if len(self.gains) != len(self.cfg.layers):
            raise ValueError(f"{len(self.gains)} gains for {len(self.cfg.layers)} layers")
        if not (self.input == "rbf" or self.input.startswith("binary:")):
            raise ValueError(f"input must be 'binary:P' or 'rbf', got {self.input!r}")
        if self.input.startswith("binary:") and not 0 <= self.density <= 1:
            raise ValueError(f"input density must lie in [0, 1], got {self.density}")
        if self.target_rate is not None and not 0 < self.target_rate < 1:
            raise ValueError(f"target firing rate must lie in (0, 1), got {self.target_rate}")

    @property
    def density(self) -> float | None:
        """The binary input's density (None for the RBF code)."""
        return float(self.input.split(":")[1]) if self.input.startswith("binary:") else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["cfg"] = self.cfg.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ProblemSpec":
        d = dict(d)
        d["cfg"] = NetworkConfig.from_dict(d["cfg"])
        return cls(**d)


def named_spec(name: str) -> ProblemSpec:
    """The spec of paper configuration ``name`` (one gain for every layer, as always)."""
    if name not in configs():
        raise ValueError(f"unknown configuration {name!r}; choose one of {', '.join(configs())}")
    cfg, B, T, kind, gain = configs()[name]
    return ProblemSpec(name, cfg, B, T, kind, [float(gain)] * len(cfg.layers))


def parse_layers(text: str) -> list:
    """``kind:size,kind:size,...`` -> LayerConfigs (kinds: rec, dense, integrator), named
    l0, l1, ... A size alone means ``rec``."""
    layers = []
    for i, item in enumerate(p.strip() for p in str(text).split(",")):
        if not item:
            raise ValueError(f"empty layer in {text!r}")
        kind, _, size = item.rpartition(":")
        kind = kind or "rec"
        if kind not in LAYER_KINDS:
            raise ValueError(f"unknown layer kind {kind!r} in {item!r}; choose one of "
                             f"{', '.join(LAYER_KINDS)}")
        try:
            n = int(size)
        except ValueError:
            raise ValueError(f"layer size must be an integer in {item!r}") from None
        layers.append(LayerConfig(n, kind, name=f"l{i}"))
    return layers


def custom_spec(layers: str, n_in: int, loss: str = "nll_per_step", batch: int = 32,
                steps: int = 200, density: float = 0.05, dtype: str = "float32",
                seed: int = 0) -> ProblemSpec:
    """A network of the given layers on binary input of ``density`` (gains 1 until a target
    rate is searched for, ``validation.bench_rate``)."""
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    cfg = NetworkConfig(int(n_in), parse_layers(layers), LossConfig(loss, 0))
    return ProblemSpec("custom", cfg, batch, steps, f"binary:{density:g}", [1.0] * len(cfg.layers),
                       dtype=dtype, seed=seed)


def with_overrides(spec: ProblemSpec, batch=None, steps=None, width=None, density=None,
                   dtype=None, loss=None, target_rate=None, gains=None, seed=None) -> ProblemSpec:
    """A copy of ``spec`` with the given fields changed. ``width``: every layer but the last
    gets that many neurons (the readout keeps its classes); ``density``: binary input of that
    density (also for the RBF-coded smnist); ``loss``: the loss kind (its start kept, clipped
    to the steps)."""
    cfg = NetworkConfig.from_dict(spec.cfg.to_dict())
    if width is not None:
        for layer in cfg.layers[:-1]:
            layer.size = int(width)
        cfg = NetworkConfig.from_dict(cfg.to_dict())      # validates the new sizes
    T = spec.steps if steps is None else int(steps)
    if loss is not None or cfg.loss.start >= T:
        kind = cfg.loss.kind if loss is None else loss
        cfg = dataclasses.replace(cfg, loss=LossConfig(kind, min(cfg.loss.start, T - 1)))
    return dataclasses.replace(
        spec, cfg=cfg, batch=spec.batch if batch is None else int(batch), steps=T,
        input=spec.input if density is None else f"binary:{float(density):g}",
        dtype=spec.dtype if dtype is None else dtype,
        target_rate=spec.target_rate if target_rate is None else float(target_rate),
        gains=list(spec.gains if gains is None else gains),
        seed=spec.seed if seed is None else int(seed))


def build(spec: ProblemSpec, gains=None):
    """(net, x, labels) of ``spec``: a fresh network (seed ``spec.seed``) with each layer's
    W_in multiplied by its gain (``gains`` overrides ``spec.gains``), its input and labels.
    ``net.reuse_buffers`` is on, as in training."""
    cfg, B, T = spec.cfg, spec.batch, spec.steps
    dtype = np.dtype(spec.dtype)
    rng = np.random.default_rng(spec.seed)
    net = Network(cfg, seed=spec.seed, dtype=dtype)
    net.reuse_buffers = True
    for layer, g in zip(cfg.layers, spec.gains if gains is None else gains):
        net.params[f"{layer.name}.W_in"] *= dtype.type(g)
    if spec.input.startswith("binary"):
        x = (rng.random((B, T, cfg.n_in)) < spec.density).astype(dtype)
    else:   # RBF population code of random pixel values, as the ICONS S-MNIST input
        from spikesim.data.encoders import rbf_encode
        pix = (rng.random((B, T)) ** 3 * 255).astype(np.uint8)
        x = rbf_encode(pix.reshape(B, T), n_fields=cfg.n_in).reshape(B, T, cfg.n_in)
        x = x.astype(dtype, copy=False)
    labels = (rng.integers(0, cfg.n_out, (B, T)) if cfg.loss.kind == "nll_per_step"
              else rng.integers(0, cfg.n_out, B))
    return net, x, labels


def make_problem(name: str, seed: int = 0):
    """(net, x, labels) of paper configuration ``name`` in float32."""
    return build(dataclasses.replace(named_spec(name), seed=seed))


def dense_gflop(cfg: NetworkConfig, B: int, T: int) -> float:
    """2 x multiply-adds of every matrix product of a training step, all operands dense."""
    mac, n_prev = 0, cfg.n_in
    for i, layer in enumerate(cfg.layers):
        n = layer.size
        mac += n * n_prev * (2 if i == 0 else 3)          # forward, dW (and dX below layer 0)
        if layer.recurrent:
            mac += 3 * n * n                               # forward, backward, dW
        n_prev = n
    return 2.0 * mac * B * T / 1e9


def time_step(fn, repeats: int, warmup: int = 2) -> list:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return ts
