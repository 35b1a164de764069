"""The few scalar primitives the equations are written in that depend on the type they run on:
two selects (``where_gt``, ``select_gt``), the exp of the surrogates (``fexp``) and the exp of
the tau-to-decay map (``exp``). Everything else in ``spikesim.model`` is plain arithmetic on
its arguments.

Each primitive is a plain Python function (it runs as written in the interpreter, on scalars or
NumPy arrays) with a *typer*: given the Numba types of the arguments, it returns the Python
function that implements the primitive for them, or None. A compilation target is taught the
primitives by registering the typers with its ``overload`` decorator (``register_primitives``):
Numba's CPU target here, on import; the CUDA target by the CUDA backend; the CPU backend adds
its 16-lane vector versions onto the same functions (``spikesim.backends.cpu.simd``). The
implementations are the functions below, written once, so every target computes the same thing.
(A primitive's implementation must not contain a branch written inside an ``overload`` body
itself: the CUDA target does not type comparisons there, so the implementations are ordinary
functions, returned by the typers.)
"""
from __future__ import annotations

import functools
import math

import numpy as np
from numba import types
from numba.extending import overload


def where_gt(x, lim, p):
    """p where x > lim, else 0 (in p's type)."""
    return p if x > lim else lim - lim


def select_gt(x, lim, a, b):
    """a where x > lim, else b."""
    return a if x > lim else b


def fexp(x):
    """exp(x) for x <= 0, as the surrogates use it: ``math.exp`` in float64; in float32 a
    polynomial that vectorises (``exp32``). In the interpreter: math.exp."""
    return math.exp(x)


def exp32(x):
    """exp(x) for float32 x <= 0: exp(x) = exp(x / 64) ** 64, a 7th-order Taylor polynomial on
    [-20/64, 0] and six squarings, all multiply-adds, so the loops around it vectorise (no SVML
    here, and integer exponent tricks vectorised poorly). Relative error < 1e-5, far below what
    float32 training resolves. Below x = -20 it returns exactly 0 (exp(-20) = 2e-9), which also
    keeps denormals out of the products downstream. Also runs on 16-lane vectors."""
    f32 = np.float32
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


def _exp64(x):
    return math.exp(x)


def exp(x):
    """exp elementwise: NumPy's in the interpreter (so host code on parameter arrays rounds as
    NumPy does), ``math.exp`` on compiled scalars."""
    return np.exp(x)


def _is_float(*tys):
    return all(isinstance(t, types.Float) for t in tys) and all(t == tys[0] for t in tys)


def _where_gt_typer(x, lim, p):
    if _is_float(x, lim, p):
        return where_gt


def _select_gt_typer(x, lim, a, b):
    if _is_float(x, lim, a, b):
        return select_gt


def _fexp_typer(x):
    if isinstance(x, types.Float):
        return exp32 if x.bitwidth == 32 else _exp64


def _exp_typer(x):
    if isinstance(x, types.Float):
        return _exp64


PRIMITIVES = [(where_gt, _where_gt_typer), (select_gt, _select_gt_typer), (fexp, _fexp_typer),
              (exp, _exp_typer)]


def host_and_kernel(fn):
    """Decorator: ``fn`` stays a plain Python function (the host calls it on NumPy arrays, with
    NumPy's rounding) and becomes callable from compiled code on float scalars, on every target
    that registers the primitives."""
    @functools.wraps(fn)
    def typer(*args):
        if all(isinstance(a, types.Float) for a in args):
            return fn
    PRIMITIVES.append((fn, typer))
    _cpu_overload(fn, inline="always")(typer)
    return fn


def register_primitives(overload_decorator) -> None:
    """Teach a compilation target the scalar primitives: ``overload_decorator`` is the target's
    ``overload`` (``numba.extending.overload`` for the CPU, ``numba.cuda.extending.overload``)."""
    for fn, typer in PRIMITIVES:
        overload_decorator(fn, inline="always")(typer)


def _cpu_overload(fn, **kw):
    return overload(fn, target="cpu", **kw)


register_primitives(_cpu_overload)
