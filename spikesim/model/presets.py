"""The task networks of docs/model.md section 5, with the official initialisations, in one
place.

The task modules (``spikesim.tasks.ecg``, ``spikesim.tasks.smnist``, ``spikesim.tasks.shd``)
import their networks from here. ``PRESETS`` names them all.
"""
from __future__ import annotations

from .config import LayerConfig, LossConfig, NetworkConfig

#: ECG (QTDB): input channels, hidden neurons, classes (output neurons), first step of the loss
ECG_N_IN, ECG_N_HIDDEN, ECG_N_CLASSES, ECG_START = 4, 36, 6, 10
#: (P)S-MNIST: classes (output neurons)
SMNIST_N_CLASSES = 10


def shd_config(n_in: int = 700, hidden=(128, 128), n_classes: int = 20, b_j0: float = 0.01,
               surrogate: str = "multi_gaussian") -> NetworkConfig:
    """700 -> 128 rec ALIF -> 128 rec ALIF -> 20 integrator; output = sum over t > 10 of
    softmax(u_t) with cross-entropy on it. Init: W_rec orthogonal, others xavier-uniform,
    biases 0, tau_adp ~ N(150, 10), tau_m ~ N(20, 5)."""
    common = dict(beta=1.8, b_j0=b_j0, surrogate=surrogate, w_in_init="xavier_uniform",
                  w_rec_init="orthogonal", tau_m=(20.0, 5.0), tau_adp=(150.0, 10.0))
    return NetworkConfig(n_in, [LayerConfig(hidden[0], "rec", name="h1", **common),
                                LayerConfig(hidden[1], "rec", name="h2", **common),
                                LayerConfig(n_classes, "integrator", name="o",
                                            tau_m=(20.0, 5.0))],
                         LossConfig("ce_sum_softmax", start=11))


def ecg_config(b_j0: float = 0.01, surrogate: str = "multi_gaussian",
               fixed_tau_m: float | None = None) -> NetworkConfig:
    """4 -> 36 recurrent LIF (beta 0, "hidden") -> 6 dense ALIF (beta 1.8, "out"); loss
    ``nll_per_step`` from step 10. Init (docs/model.md section 5): W_rec orthogonal, W_in
    xavier-uniform, biases 0, tau_adp 7 (hidden) / 100 (out), tau_m 20. ``fixed_tau_m``: tau_m
    set to that value and not trained (the ICONS checkpoint: 20)."""
    tm = 20.0 if fixed_tau_m is None else float(fixed_tau_m)
    train_tm = fixed_tau_m is None
    common = dict(b_j0=float(b_j0), surrogate=surrogate, w_in_init="xavier_uniform",
                  w_rec_init="orthogonal", tau_m=(tm, 0.0), train_tau_m=train_tm)
    return NetworkConfig(
        n_in=ECG_N_IN,
        layers=[LayerConfig(ECG_N_HIDDEN, "rec", name="hidden", beta=0.0, tau_adp=(7.0, 0.0),
                            **common),
                LayerConfig(ECG_N_CLASSES, "dense", name="out", beta=1.8, tau_adp=(100.0, 0.0),
                            **common)],
        loss=LossConfig("nll_per_step", start=ECG_START))


def smnist_nmi_config(k: int = 4, b_j0: float = 0.01, surrogate: str = "multi_gaussian",
                      hidden=(64, 256, 256), tau_m=(20.0, 5.0), tau_adp=(200.0, 25.0),
                      w_rec_init: str = "zeros", loss_start: int = 1,
                      readout: str = "ce_sum_spike") -> NetworkConfig:
    """The NMI (P)S-MNIST network: k -> r1 (rec) -> r2 (rec) -> d1 (dense) -> o (10, dense ALIF).

    Defaults are the later script's: recurrent weights zero, xavier-uniform input weights, zero
    biases, tau_m ~ N(20, 5), tau_adp ~ N(200, 25), cross-entropy of the output spikes summed
    over t > 0 (``loss_start=1``; the 2020 checkpoint sums over t >= 0, ``loss_start=0``).
    ``readout="ce_sum_softmax"`` reads the output layer's membrane instead (the sum over t of
    its softmax, as the ICONS network).
    """
    h1, h2, h3 = hidden
    common = dict(beta=1.8, b_j0=b_j0, surrogate=surrogate, tau_m=tau_m, tau_adp=tau_adp,
                  w_in_init="xavier_uniform", w_rec_init=w_rec_init)
    return NetworkConfig(
        n_in=int(k),
        layers=[LayerConfig(h1, "rec", name="r1", **common),
                LayerConfig(h2, "rec", name="r2", **common),
                LayerConfig(h3, "dense", name="d1", **common),
                LayerConfig(SMNIST_N_CLASSES, "dense", name="o", **common)],
        loss=LossConfig(readout, start=loss_start))


def smnist_icons_config(n_fields: int = 80, hidden=(256, 128), b_j0: float = 0.1,
                        surrogate: str = "gaussian", tau_m=(20.0, 5.0),
                        tau_adp=(200.0, 25.0)) -> NetworkConfig:
    """The ICONS S-MNIST network: RBF fields -> 256 rec ALIF -> 128 rec ALIF -> 10 dense ALIF,
    readout "adp-mem" = cross-entropy of the sum over t of softmax(u_out) (``ce_sum_softmax``).

    Choice: the output is a dense *ALIF* layer whose membrane is read (as the ICONS code's
    adaptive output neurons), not a non-spiking integrator. Recurrent weights orthogonal.
    """
    common = dict(beta=1.8, b_j0=b_j0, surrogate=surrogate, tau_m=tau_m, tau_adp=tau_adp,
                  w_in_init="xavier_uniform", w_rec_init="orthogonal")
    return NetworkConfig(
        n_in=int(n_fields),
        layers=[LayerConfig(hidden[0], "rec", name="r1", **common),
                LayerConfig(hidden[1], "rec", name="r2", **common),
                LayerConfig(SMNIST_N_CLASSES, "dense", name="o", **common)],
        loss=LossConfig("ce_sum_softmax", start=0))


PRESETS = {"ecg": ecg_config, "shd": shd_config, "smnist-nmi": smnist_nmi_config,
           "smnist-icons": smnist_icons_config}
