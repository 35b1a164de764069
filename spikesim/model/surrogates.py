"""Spike function and surrogate gradients (SPEC section 2), as scalar functions.

The forward pass uses the Heaviside step H(x), x = u_t - B_t; the backward pass replaces dH/dx
by gamma * f(x). The ``smooth`` mode instead uses sigmoid(k x) forward and its exact derivative
backward, so the same kernels compute true gradients that finite differences can check.

Kernels receive the surrogate as a tuple ``sp`` of scalars already converted to the kernel's
dtype (see :func:`surrogate_tuple`): Numba promotes float32 arithmetic with Python float
literals to float64, so the equations use no float literals at all.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ..kernels.simd import Vec16, vexp, where_gt
from .config import SurrogateConfig

GAUSSIAN, MULTI_GAUSSIAN, LINEAR, SLAYER, SMOOTH = 0, 1, 2, 3, 4
CODES = {"gaussian": GAUSSIAN, "multi_gaussian": MULTI_GAUSSIAN, "linear": LINEAR,
         "slayer": SLAYER, "smooth": SMOOTH}


def surrogate_tuple(cfg: SurrogateConfig, dtype) -> tuple:
    """(code, a0, a1, c0, c1, mu, gamma, k, one, zero) in ``dtype``: the surrogate's constants.

    gaussian:        gamma * a0' exp(-c0 x^2)                       with a0 = gamma / (sqrt(2 pi) sigma)
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
    return (code, d(a0), d(a1), d(c0), d(c1), d(mu), d(g), d(cfg.k), d(1.0), d(0.0))


def fexp(x):
    """exp(x) for x <= 0: math.exp in float64; a vectorisable polynomial in float32. Also on
    16-lane vectors (``spikesim.kernels.simd``), by the same code."""
    return math.exp(x)


@overload(fexp, inline="always")
def _fexp_impl(x):
    if (isinstance(x, types.Float) and x.bitwidth == 32) or (isinstance(x, Vec16)
                                                              and x.dtype == types.float32):
        f32 = np.float32
        # exp(x) = exp(x / 64) ** 64: a 7th-order Taylor polynomial on [-20/64, 0] and six
        # squarings, all multiply-adds, so the loops around it vectorise (no SVML here, and
        # integer exponent tricks vectorised poorly). Relative error < 1e-5, far below what
        # float32 training resolves. Below x = -20 return exactly 0 (exp(-20) = 2e-9), which
        # also keeps denormals out of the products downstream.
        def impl(x):
            r = max(x, f32(-20.0)) * f32(1.0 / 64.0)
            p = f32(1.0 / 5040.0)
            p = p * r + f32(1.0 / 720.0)
            p = p * r + f32(1.0 / 120.0)
            p = p * r + f32(1.0 / 24.0)
            p = p * r + f32(1.0 / 6.0)
            p = p * r + f32(0.5)
            p = p * r + f32(1.0)
            p = p * r + f32(1.0)
            p = p * p
            p = p * p
            p = p * p
            p = p * p
            p = p * p
            p = p * p
            return where_gt(x, f32(-20.0), p)
        return impl
    if isinstance(x, Vec16):
        return lambda x: vexp(x)
    return lambda x: math.exp(x)


@njit(inline="always")
def _sigmoid(kx, one):
    # stable for both signs; exp only of non-positive arguments
    if kx >= 0:
        return one / (one + fexp(-kx))
    e = fexp(kx)
    return e / (one + e)


@njit(inline="always")
def heaviside(x, sp):
    """H(x): 1 where x > 0 strictly (as torch's gt(0)), else 0 (scalars or vectors)."""
    return where_gt(x, sp[9], sp[8])


@njit(inline="always")
def smooth_spike(x, sp):
    """The smooth mode's spike: sigmoid(k x)."""
    return _sigmoid(sp[7] * x, sp[8])


@njit(inline="always")
def sg_multi_gaussian(x, sp):
    xm = x - sp[5]
    xp = x + sp[5]
    return sp[1] * fexp(-sp[3] * x * x) - sp[2] * (fexp(-sp[4] * xm * xm) + fexp(-sp[4] * xp * xp))


@njit(inline="always")
def sg_gaussian(x, sp):
    return sp[1] * fexp(-sp[3] * x * x)


@njit(inline="always")
def sg_linear(x, sp):
    return sp[6] * max(sp[9], sp[8] - abs(x))


@njit(inline="always")
def sg_slayer(x, sp):
    return sp[6] * fexp(-sp[3] * abs(x))


@njit(inline="always")
def sg_smooth(x, sp):
    """Exact derivative of the smooth mode's sigmoid(k x)."""
    s = _sigmoid(sp[7] * x, sp[8])
    return sp[7] * s * (sp[8] - s)
