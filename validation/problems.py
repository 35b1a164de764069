"""The benchmark problems: one training step of the three paper configurations (network,
batch, steps, input), the dense FLOP count of a step, and a timer. Shared by the benchmark
(``validation.bench``) and the PyTorch reference (``validation.torch_reference``)."""
from __future__ import annotations

import time

import numpy as np

from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
from spikesim.model.presets import shd_config
from spikesim.network import Network


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


def make_problem(name: str, seed: int = 0):
    cfg, B, T, kind, gain = configs()[name]
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float32)
    net.reuse_buffers = True
    for k, v in net.params.items():
        if k.endswith(".W_in"):
            v *= gain
    if kind.startswith("binary"):
        x = (rng.random((B, T, cfg.n_in)) < float(kind.split(":")[1])).astype(np.float32)
    else:   # RBF population code of random pixel values, as the ICONS S-MNIST input
        from spikesim.data.encoders import rbf_encode
        pix = (rng.random((B, T)) ** 3 * 255).astype(np.uint8)
        x = rbf_encode(pix.reshape(B, T), n_fields=cfg.n_in).reshape(B, T, cfg.n_in)
    labels = (rng.integers(0, cfg.n_out, (B, T)) if cfg.loss.kind == "nll_per_step"
              else rng.integers(0, cfg.n_out, B))
    return net, x, labels


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
