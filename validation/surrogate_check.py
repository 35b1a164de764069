"""Each surrogate function of the kernels against finite differences of its own integral, and
against the plain-NumPy reference's formula.

The kernels' derivative comes from their own 16-lane loop (``neuron_rows.surrogate_rows``), in
float64. The integrals are written here in closed form from the definitions (docs/model.md
section 2), independently of the kernel constants: a Gaussian of height a and width sigma
integrates to the normal distribution function. For the smooth mode the integral is the
smooth spike itself, computed by the kernels' spike loop (``neuron_rows.smooth_spikes``).
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr

from spikesim.backends.cpu.neuron_rows import smooth_spikes, surrogate_rows
from spikesim.model.config import SurrogateConfig
from spikesim.model.surrogates import surrogate_consts
from validation.finite_diff import elementwise_error
from validation.reference_numpy import surrogate_derivative

NAMES = ("multi_gaussian", "gaussian", "linear", "slayer", "smooth")
FD_TOL = 1e-6            # kernel derivative vs finite differences of the integral (noise ~1e-7)
REF_TOL = 1e-13          # kernel derivative vs the reference's formula
H = 1e-3                 # step of the fourth-order central differences
KINKS = {"linear": (-1.0, 0.0, 1.0), "slayer": (0.0,)}   # where the derivative has a corner


def integral(cfg: SurrogateConfig, x: np.ndarray) -> np.ndarray:
    """F with F' = the surrogate derivative, in closed form (not for ``smooth``)."""
    g, s, h, sc = cfg.gamma, cfg.sigma, cfg.h, cfg.scale
    if cfg.name == "gaussian":          # gamma N(0, s^2)
        return g * ndtr(x / s)
    if cfg.name == "multi_gaussian":    # gamma [(1+h) N(0, s^2) - h N(+-s, (sc s)^2)]
        return g * ((1 + h) * ndtr(x / s) - h * ndtr((x - s) / (sc * s))
                    - h * ndtr((x + s) / (sc * s)))
    if cfg.name == "linear":            # gamma max(0, 1 - |x|)
        c = np.clip(x, -1.0, 1.0)
        return g * np.where(c < 0, (c + 1) ** 2 / 2, 1 - (1 - c) ** 2 / 2)
    if cfg.name == "slayer":            # gamma exp(-5 |x|)
        return g * np.sign(x) * (1 - np.exp(-5 * np.abs(x))) / 5
    raise ValueError(f"no closed-form integral for {cfg.name!r}")


def kernel_derivative(cfg: SurrogateConfig, x: np.ndarray, dtype=np.float64) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype)
    out = np.empty_like(x)
    surrogate_rows(x, out, x.size, surrogate_consts(cfg, dtype))
    return out


def kernel_smooth_spike(cfg: SurrogateConfig, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, np.float64)
    out = np.empty_like(x)
    smooth_spikes(x, out, 0, x.size, surrogate_consts(cfg, np.float64))
    return out


def grid(name: str) -> np.ndarray:
    """601 points over [-3, 3], away (10 steps) from the corners of the derivative."""
    x = np.linspace(-3.0, 3.0, 601) + 1e-3 / 3
    for k in KINKS.get(name, ()):
        x = x[np.abs(x - k) > 10 * H]
    return x


def check(report) -> None:
    """Add one row per surrogate and comparison to ``report`` (a ``gradcheck.Report``)."""
    for name in NAMES:
        cfg = SurrogateConfig(name, k=1.5) if name == "smooth" else SurrogateConfig(name)
        x = grid(name)
        f = kernel_smooth_spike if name == "smooth" else integral
        fd = (-f(cfg, x + 2 * H) + 8 * f(cfg, x + H) - 8 * f(cfg, x - H) + f(cfg, x - 2 * H)) \
            / (12 * H)
        g = kernel_derivative(cfg, x)
        e = elementwise_error(g, fd, 1e-6)
        what = "d/dx spike" if name == "smooth" else "d/dx integral"
        report.add("surrogate", name, what, e.err, e.err <= FD_TOL, e.describe(), FD_TOL)
        e = elementwise_error(g, surrogate_derivative(x, cfg), 1e-6)
        report.add("surrogate", name, "reference", e.err, e.err <= REF_TOL, e.describe(), REF_TOL)
