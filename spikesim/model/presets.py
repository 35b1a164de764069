"""The network topologies of SPEC section 3, with the official initialisations, in one place.

ECG and (P)S-MNIST are defined with their tasks (``spikesim.tasks``); SHD has no task module
yet (its data are not shipped here), so its network is defined here.
"""
from __future__ import annotations

from .config import LayerConfig, LossConfig, NetworkConfig


def shd_config(n_in: int = 700, hidden=(128, 128), n_classes: int = 20, b_j0: float = 0.01,
               surrogate: str = "multi_gaussian") -> NetworkConfig:
    """700 -> 128 rec ALIF -> 128 rec ALIF -> 20 integrator; output = sum over t > 10 of
    softmax(u_t) with cross-entropy on it. Init: W_rec orthogonal, others xavier-uniform,
    biases 0, tau_adp ~ N(150, 10), tau_m ~ N(20, 5)."""
    common = dict(beta=1.8, b_j0=b_j0, surrogate=surrogate, w_in_init="xavier_uniform",
                  w_rec_init="orthogonal", tau_m=(20.0, 5.0), tau_adp=(150.0, 10.0))
    return NetworkConfig(n_in, [LayerConfig(hidden[0], "rec", name="h1", **common),
                                LayerConfig(hidden[1], "rec", name="h2", **common),
                                LayerConfig(n_classes, "integrator", name="o", tau_m=(20.0, 5.0))],
                         LossConfig("ce_sum_softmax", start=11))


def ecg_config(**kw) -> NetworkConfig:
    from ..tasks.ecg import network_config
    return network_config(**kw)


def smnist_nmi_config(**kw) -> NetworkConfig:
    from ..tasks.smnist import nmi_config
    return nmi_config(**kw)


def smnist_icons_config(**kw) -> NetworkConfig:
    from ..tasks.smnist import icons_config
    return icons_config(**kw)


PRESETS = {"ecg": ecg_config, "shd": shd_config, "smnist-nmi": smnist_nmi_config,
           "smnist-icons": smnist_icons_config}
