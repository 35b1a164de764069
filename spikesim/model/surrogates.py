"""Spike function and surrogate gradients (docs/model.md section 2), as scalar functions.

The forward pass uses the Heaviside step H(x), x = u_t - theta_t; the backward pass replaces dH/dx
by gamma * f(x). The ``smooth`` mode instead uses sigmoid(k x) forward and its exact derivative
backward, so the same kernels compute true gradients that finite differences can check.

Kernels receive the surrogate as a tuple ``sp`` of scalars already converted to the kernel's
dtype (see :func:`surrogate_consts`): Numba promotes float32 arithmetic with Python float
literals to float64, so the equations use no float literals at all.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit

from .config import SurrogateConfig
from .primitives import fexp, select_gt, where_gt

GAUSSIAN, MULTI_GAUSSIAN, LINEAR, SLAYER, SMOOTH = 0, 1, 2, 3, 4
CODES = {"gaussian": GAUSSIAN, "multi_gaussian": MULTI_GAUSSIAN, "linear": LINEAR,
         "slayer": SLAYER, "smooth": SMOOTH}


class SurrogateConsts(NamedTuple):
    """A surrogate's constants, as the kernels receive them (all but ``code`` in the kernel's
    dtype; see ``surrogate_consts``)."""
    code: int        # GAUSSIAN, MULTI_GAUSSIAN, LINEAR, SLAYER or SMOOTH
    a0: float        # height of the central Gaussian
    a1: float        # height of each side Gaussian (multi-Gaussian)
    c0: float        # 1 / (2 sigma^2) (Gaussians); the decay rate (slayer)
    c1: float        # 1 / (2 (scale sigma)^2) of the side Gaussians
    mu: float        # offset of the side Gaussians
    gamma: float     # overall scale
    k: float         # steepness of the smooth mode's sigmoid
    one: float
    zero: float


def surrogate_consts(cfg: SurrogateConfig, dtype) -> SurrogateConsts:
    """The surrogate's constants in ``dtype``:

    gaussian:        gamma * a0' exp(-c0 x^2)                   with a0 = gamma / (sqrt(2 pi) sigma)
    multi_gaussian:  a0 exp(-c0 x^2) - a1 exp(-c1 (x-mu)^2) - a1 exp(-c1 (x+mu)^2)
    linear:          gamma * max(0, 1 - |x|)
    slayer:          gamma * exp(-c0 |x|), c0 = 5
    smooth:          k sig(k x) (1 - sig(k x))
    """
    code = CODES[cfg.name]
    g, s, h, sc = cfg.gamma, cfg.sigma, cfg.h, cfg.scale
    root = math.sqrt(2.0 * math.pi)
    a0 = a1 = c0 = c1 = mu = 0.0
    if code == GAUSSIAN:
        a0, c0 = g / (root * s), 1.0 / (2 * s * s)
    elif code == MULTI_GAUSSIAN:
        a0, c0 = g * (1 + h) / (root * s), 1.0 / (2 * s * s)
        a1, c1, mu = g * h / (root * sc * s), 1.0 / (2 * (sc * s) ** 2), s
    elif code == SLAYER:
        c0 = 5.0
    d = np.dtype(dtype).type
    return SurrogateConsts(code, d(a0), d(a1), d(c0), d(c1), d(mu), d(g), d(cfg.k), d(1.0),
                           d(0.0))


@njit(inline="always")
def _sigmoid(kx, one):
    """sigmoid(kx), stable for both signs and branch-free (it runs on 16-lane vectors): with
    e = exp(-|kx|), 1 / (1 + e) for kx > 0 and e / (1 + e) otherwise."""
    e = fexp(-abs(kx))
    return select_gt(kx, one - one, one, e) / (one + e)


@njit(inline="always")
def heaviside(x, sp):
    """H(x): 1 where x > 0 strictly (as torch's gt(0)), else 0 (scalars or vectors)."""
    return where_gt(x, sp.zero, sp.one)


@njit(inline="always")
def smooth_spike(x, sp):
    """The smooth mode's spike: sigmoid(k x)."""
    return _sigmoid(sp.k * x, sp.one)


@njit(inline="always")
def sg_multi_gaussian(x, sp):
    xm = x - sp.mu
    xp = x + sp.mu
    return sp.a0 * fexp(-sp.c0 * x * x) - sp.a1 * (fexp(-sp.c1 * xm * xm) + fexp(-sp.c1 * xp * xp))


@njit(inline="always")
def sg_gaussian(x, sp):
    return sp.a0 * fexp(-sp.c0 * x * x)


@njit(inline="always")
def sg_linear(x, sp):
    return sp.gamma * max(sp.zero, sp.one - abs(x))


@njit(inline="always")
def sg_slayer(x, sp):
    return sp.gamma * fexp(-sp.c0 * abs(x))


@njit(inline="always")
def sg_smooth(x, sp):
    """Exact derivative of the smooth mode's sigmoid(k x)."""
    s = _sigmoid(sp.k * x, sp.one)
    return sp.k * s * (sp.one - s)
