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
    """exp(x) for x <= 0: math.exp in float64; a vectorisable polynomial in float32."""
    return math.exp(x)


@overload(fexp, inline="always")
def _fexp_impl(x):
    if isinstance(x, types.Float) and x.bitwidth == 32:
        f32 = np.float32
        # exp(x) = 2^-n * exp(r), n = round(-x log2 e), |r| <= ln2/2; 7th-order Taylor is
        # accurate to ~1e-8 relative there. Below x = -20 return 0: exp(-20) = 2e-9 is far
        # below float32 resolution of a surrogate of order 1, and exact zeros avoid denormals.
        def impl(x):
            xc = max(x, f32(-20.0))
            t = xc * f32(1.4426950408889634)
            n = np.int32(f32(0.5) - t)
            r = (t + f32(n)) * f32(0.6931471805599453)
            p = f32(1.0 / 5040.0)
            p = p * r + f32(1.0 / 720.0)
            p = p * r + f32(1.0 / 120.0)
            p = p * r + f32(1.0 / 24.0)
            p = p * r + f32(1.0 / 6.0)
            p = p * r + f32(0.5)
            p = p * r + f32(1.0)
            p = p * r + f32(1.0)
            # 2^-n for 0 <= n < 32, one exact factor per bit of n (arithmetic, so it vectorises)
            p *= f32(1.0) - f32(0.5) * f32(n & 1)
            p *= f32(1.0) - f32(0.75) * f32((n >> 1) & 1)
            p *= f32(1.0) - f32(1.0 - 2.0 ** -4) * f32((n >> 2) & 1)
            p *= f32(1.0) - f32(1.0 - 2.0 ** -8) * f32((n >> 3) & 1)
            p *= f32(1.0) - f32(1.0 - 2.0 ** -16) * f32((n >> 4) & 1)
            return p * f32(x > f32(-20.0))
        return impl
    return lambda x: math.exp(x)


@njit(inline="always")
def _sigmoid(kx, one):
    # stable for both signs; exp only of non-positive arguments
    if kx >= 0:
        return one / (one + fexp(-kx))
    e = fexp(kx)
    return e / (one + e)


@njit(inline="always")
def spike_fn(x, sp):
    """Forward spike: H(x) (strictly x > 0, as torch's gt(0)), or sigmoid(k x) in smooth mode."""
    if sp[0] == SMOOTH:
        return _sigmoid(sp[7] * x, sp[8])
    return sp[8] if x > sp[9] else sp[9]


@njit(inline="always")
def surrogate_grad(x, sp):
    """The pseudo-derivative gamma * f(x) of the spike function (exact in smooth mode)."""
    code = sp[0]
    if code == MULTI_GAUSSIAN:
        xm = x - sp[5]
        xp = x + sp[5]
        return sp[1] * fexp(-sp[3] * x * x) - sp[2] * (fexp(-sp[4] * xm * xm) + fexp(-sp[4] * xp * xp))
    if code == GAUSSIAN:
        return sp[1] * fexp(-sp[3] * x * x)
    if code == LINEAR:
        return sp[6] * max(sp[9], sp[8] - abs(x))
    if code == SLAYER:
        return sp[6] * fexp(-sp[3] * abs(x))
    s = _sigmoid(sp[7] * x, sp[8])
    return sp[7] * s * (sp[8] - s)
