"""Initial states of a network: the deterministic one and the random ones of the official
scripts, and one registry of named presets (``INITIAL_STATES``) that every task and the
trainer use: :func:`preset_state` builds a preset's state for a batch."""
from __future__ import annotations

import numpy as np

from .config import NetworkConfig

#: name -> how a sequence starts: the ``initial_state`` keyword arguments and, with
#: ``random_sum``, a summed readout (the ``ce_sum_*`` losses) that starts at uniform[0,1)
#: values instead of 0. b = b_j0 always.
INITIAL_STATES = {
    # u = 0, s = 0
    "zeros": {"mode": "zeros"},
    # the NMI ECG script: u ~ U[0,1) * b_j0, s = 0
    "random-nmi": {"mode": "random", "scale": "b_j0", "spikes": False},
    # the later (P)S-MNIST script: s = u ~ U[0,1) * b_j0 (the same values) in every hidden
    # layer; the output layer as random-nmi
    "random-nmi-smnist": {"mode": "random", "scale": "b_j0", "spikes": "hidden-same"},
    # the ICONS notebook (ECG): u, s ~ U[0,1)
    "random-icons": {"mode": "random", "scale": 1.0, "spikes": True},
    # the NMI 2020 S-MNIST notebook: u, s ~ U[0,1), and the output spike sum too
    "random-nmi2020": {"mode": "random", "scale": 1.0, "spikes": True, "random_sum": True},
}

_DEFAULTS = {"mode": "zeros", "scale": "b_j0", "spikes": False, "random_sum": False}


def _preset(name: str) -> dict:
    if not isinstance(name, str) or name not in INITIAL_STATES:
        raise ValueError(f"unknown initial state {name!r}; choose one of "
                         f"{', '.join(INITIAL_STATES)}")
    return INITIAL_STATES[name]


def state_spec(name: str) -> dict:
    """The ``initial_state`` keyword arguments of the preset ``name`` (a copy)."""
    return {k: v for k, v in _preset(name).items() if k != "random_sum"}


def random_sum(name: str) -> bool:
    """Whether the preset ``name`` starts a summed readout at uniform[0,1) values."""
    return bool(_preset(name).get("random_sum", False))


def state_name(spec) -> str:
    """The preset name of ``spec``: a name (checked and returned) or a dict of ``initial_state``
    keyword arguments, the form older checkpoints and results store (``{"mode": "zeros"}``,
    ``{"mode": "random", "scale": "b_j0"}``, ...)."""
    if isinstance(spec, str):
        _preset(spec)
        return spec
    if not isinstance(spec, dict):
        raise TypeError(f"an initial state is a preset name or a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(_DEFAULTS))
    if unknown:
        raise ValueError(f"initial state {spec!r}: unknown keys {unknown}")
    full = {**_DEFAULTS, **spec}
    if full["mode"] == "zeros" and not full["random_sum"]:
        return "zeros"
    for name, preset in INITIAL_STATES.items():
        if {**_DEFAULTS, **preset} == full:
            return name
    raise ValueError(f"initial state {spec!r} is none of the presets "
                     f"{', '.join(INITIAL_STATES)}")


def initial_state(cfg: NetworkConfig, batch: int, dtype=np.float32, mode: str = "zeros",
                  rng: np.random.Generator | None = None, scale="b_j0",
                  spikes: bool = False) -> dict:
    """Initial (u, s, b) per layer, each (batch, N).

    ``zeros``: u = 0, s = 0, b = b_j0 (deterministic). ``random``: the official scripts' state,
    u ~ uniform[0,1) * scale with scale = b_j0 (NMI scripts) or a number (1.0: ICONS notebook),
    and ``spikes``: False: s = 0; True: s drawn the same way, after u, in every spiking layer
    (S-MNIST 2020 / ICONS); "hidden-same": s = u (the same values) in every layer but the last
    (the later S-MNIST script). b = b_j0 always.
    """
    if spikes not in (False, True, "hidden-same"):
        raise ValueError(f"unknown spikes setting {spikes!r}; choose False, True or "
                         "'hidden-same'")
    if mode not in ("zeros", "random"):
        raise ValueError(f"unknown initial state mode {mode!r}; choose 'zeros' or 'random'")
    if mode == "random" and rng is None:
        raise ValueError("a random initial state needs an rng (numpy Generator)")
    state = {}
    for layer in cfg.layers:
        shape = (batch, layer.size)
        u = np.zeros(shape, dtype)
        s = np.zeros(shape, dtype)
        if mode == "random":
            k = layer.b_j0 if scale == "b_j0" else float(scale)
            u[...] = rng.random(shape) * k
            if spikes == "hidden-same":
                if layer is not cfg.layers[-1]:
                    s[...] = u
            elif spikes and layer.spiking:
                s[...] = rng.random(shape) * k
        b = np.full(shape, layer.b_j0, dtype)
        state[layer.name] = (u, s, b)
    return state


def preset_state(cfg: NetworkConfig, name, batch: int, dtype=np.float32,
                 rng: np.random.Generator | None = None) -> tuple:
    """The initial state of the preset ``name`` (or an older dict spec, see
    :func:`state_name`) for ``batch`` sequences: (state, carry). ``state`` as
    :func:`initial_state`; ``carry`` the starting value (batch, n_out) of a summed readout
    (float64, for ``Network.loss(carry=...)``), or None where it starts at 0. The random
    numbers come from ``rng``: the state's first, then the sum's."""
    name = state_name(name)
    state = initial_state(cfg, batch, dtype, rng=rng, **state_spec(name))
    carry = None
    if random_sum(name) and cfg.loss.kind != "nll_per_step":
        if rng is None:
            raise ValueError("a random readout sum needs an rng (numpy Generator)")
        carry = rng.random((batch, cfg.n_out))
    return state, carry
