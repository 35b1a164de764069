"""The built-in demo task: the delayed cue (``spikesim.data.synthetic``) on a small SRNN."""
from __future__ import annotations

from ..model.config import LayerConfig, LossConfig, NetworkConfig
from ..train.trainer import ArrayDataset, TrainConfig

N_CLASSES, N_IN, T, READ_FROM = 4, 16, 60, 40


def network_config(hidden: int = 48) -> NetworkConfig:
    return NetworkConfig(
        n_in=N_IN,
        layers=[LayerConfig(hidden, "rec", name="hidden", tau_m=(20.0, 5.0), tau_adp=(200.0, 25.0)),
                LayerConfig(N_CLASSES, "integrator", name="out", tau_m=(20.0, 0.0))],
        loss=LossConfig("ce_sum_softmax", start=READ_FROM))


def train_config(epochs: int = 10, seed: int = 0) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=32, lr=5e-3, optimizer="adam",
                       lr_mult={"*.tau_*": 2.0},
                       schedule={"kind": "step", "step_size": 10, "gamma": 0.5},
                       seed=seed)


def datasets(n_train: int = 1024, n_test: int = 512, seed: int = 0):
    from ..data.synthetic import delayed_cue
    kw = dict(n_classes=N_CLASSES, n_in=N_IN, T=T, read_from=READ_FROM)
    tr = delayed_cue(n_train, seed=seed, **kw)
    te = delayed_cue(n_test, seed=seed + 1000, **kw)
    return ArrayDataset(*tr), ArrayDataset(*te)
