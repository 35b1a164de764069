"""The neuron loops of one step over a chunk's flat (b, j) index, on flat arrays from given
offsets, 16 lanes at a time: the scalar equations of ``spikesim.model`` applied unchanged to
``Vec16`` values (``simd.py`` registers the vector versions of their primitives; the last vector
is masked). The surrogate is chosen once per call, outside the loop, so the loops are
branch-free.

The vector loads and stores take computed indices; the loops left to LLVM's vectoriser stay
vectorisable by the numpy error model (no division checks), results unpacked into locals
(unpacking into array elements adds an exit branch), and indices straight from range() or
through ``simd.at`` (a computed index such as k + j makes Numba emit negative-index
wraparound, and LLVM then gives up on the loop).
"""
from __future__ import annotations

from numba import njit

from ...model.neurons import (
    adapt_step,
    alif_step,
    alif_step_backward,
    integrator_step,
    integrator_step_backward,
)
from ...model.surrogates import (
    GAUSSIAN,
    LINEAR,
    MULTI_GAUSSIAN,
    SLAYER,
    heaviside,
    sg_gaussian,
    sg_linear,
    sg_multi_gaussian,
    sg_slayer,
    sg_smooth,
    smooth_spike,
)
from .flat import tile_rows
from .simd import LANES, vload, vstore, vstore16_stream

_opts = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")


@njit(**_opts)
def smooth_spikes(x, s1, o, n, sp):
    """s1[o + q] = the smooth mode's spike, sigmoid(k x[q]), for q < n, 16 lanes at a time (the
    Heaviside spikes come from ``alif_rows``)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(s1, o + q, w, smooth_spike(vload(x, q, w), sp))


@njit(**_opts)
def surrogate_rows(x, sg, n, sp):
    """sg[q] = surrogate derivative at x[q], one 16-lane loop per surrogate."""
    code = sp[0]
    if code == MULTI_GAUSSIAN:
        _map16(sg_multi_gaussian, x, sg, n, sp)
    elif code == GAUSSIAN:
        _map16(sg_gaussian, x, sg, n, sp)
    elif code == LINEAR:
        _map16(sg_linear, x, sg, n, sp)
    elif code == SLAYER:
        _map16(sg_slayer, x, sg, n, sp)
    else:
        _map16(sg_smooth, x, sg, n, sp)


@njit(inline="always")
def _map16(f, x, out, n, sp):
    """out[q] = f(x[q], sp) for q < n, 16 lanes at a time (f: a scalar function of
    ``spikesim.model`` that also takes vectors)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(out, q, w, f(vload(x, q, w), sp))


@njit(**_opts)
def alif_rows(n, uf, ou1, ur, sf, bf, o0, o1, Ib, A, OA, R, OR, beta, b_j0, dt, x, sp, stream):
    """One forward step of n neurons: u_{t-1}, s_{t-1} and b_{t-1} from the rings ur, sf, bf at
    o0; u_t, b_t into them at o1 and u_t into uf[ou1:]; x = u - B, and the Heaviside spike H(x)
    into sf[o1:] (the smooth mode's spikes are then written over it by ``smooth_spikes``). With
    ``stream`` (uf[ou1] is 64-byte aligned), full vectors go to uf as non-temporal stores, and
    u_{t-1} is read from the ring, not back from uf (which those stores left in memory)."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        uq, bq, xq = alif_step(vload(ur, o0 + q, w), vload(sf, o0 + q, w), vload(bf, o0 + q, w),
                               vload(Ib, q, w), vload(A, q, w), vload(OA, q, w), vload(R, q, w),
                               vload(OR, q, w), beta, b_j0, dt)
        if stream and w == LANES:
            vstore16_stream(uf, ou1 + q, uq)
        else:
            vstore(uf, ou1 + q, w, uq)
        vstore(ur, o1 + q, w, uq)
        vstore(bf, o1 + q, w, bq)
        vstore(x, q, w, xq)
        vstore(sf, o1 + q, w, heaviside(xq, sp))


@njit(**_opts)
def adapt_rows(n, bf, o0, sf, os, R, OR, o1):
    """bf[o1 + q] = adapt_step(bf[o0 + q], sf[os + q]) for q < n."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(bf, o1 + q, w, adapt_step(vload(bf, o0 + q, w), vload(sf, os + q, w),
                                         vload(R, q, w), vload(OR, q, w)))


@njit(**_opts)
def adaptation_trace(s, b_init, rho, omr, bt):
    """bt (S,B,N) = the adaptation trace b of every slot, from b_init (B,N) and the spikes s
    (S,B,N), by the forward's ``adapt_step`` (for a trace's dense ``bt_full``)."""
    S, B, N = s.shape
    R, OR = tile_rows(rho, B), tile_rows(omr, B)
    bt[0] = b_init
    bf, sf, n = bt.reshape(-1), s.reshape(-1), B * N
    for t in range(1, S):
        adapt_rows(n, bf, (t - 1) * n, sf, (t - 1) * n, R, OR, t * n)


@njit(**_opts)
def alif_rows_backward(n, ge, oe, fs, fu, sg, uf, ou1, ou0, sf, os, bf, ob1, ob0, A, OA, IOA, R,
                        OR, beta, b_j0, dt, o, gs_c, grec, gu_n, gb_n, gI, ga, gr):
    """One backward step of n neurons: u_t, u_{t-1} at uf[ou1:], uf[ou0:], s_{t-1} at sf[os:],
    b_t, b_{t-1} at bf[ob1:], bf[ob0:], the external gradient at ge[oe:]; the chunk's state
    gradients gs_c, grec, gu_n, gb_n, gI from offset o; sg, the constants, ga and gr per
    position in the block."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        e = vload(ge, oe + q, w)
        gu, gb, gi, gal, grh, gsp = alif_step_backward(
            fs * e + vload(gs_c, o + q, w) + vload(grec, o + q, w), vload(sg, q, w), fu * e,
            vload(gu_n, o + q, w), vload(gb_n, o + q, w), vload(uf, ou1 + q, w),
            vload(uf, ou0 + q, w), vload(sf, os + q, w), vload(bf, ob1 + q, w),
            vload(bf, ob0 + q, w), vload(A, q, w), vload(OA, q, w), vload(IOA, q, w),
            vload(R, q, w), vload(OR, q, w), beta, b_j0, dt)
        vstore(gI, o + q, w, gi)
        vstore(gs_c, o + q, w, gsp)
        vstore(ga, q, w, vload(ga, q, w) + gal)
        vstore(gr, q, w, vload(gr, q, w) + grh)
        vstore(gu_n, o + q, w, gu)
        vstore(gb_n, o + q, w, gb)


@njit(**_opts)
def lif_rows_backward(n, ge, oe, fs, fu, sg, uf, ou1, ou0, sf, os, bf, ob1, A, OA, IOA, beta, b_j0,
                       dt, o, gs_c, grec, gu_n, gI, ga):
    """``alif_rows_backward`` for beta = 0 (LIF): the same equation, without the adaptation
    trace's terms, which are then zero (dL/db and dL/drho stay 0; gb_n and gr are not touched).
    B is still formed from the (zero) b vector, and rho, 1 - rho, b_{t-1} and dL/db_{t+1} enter as
    a run-time zero, so that every result rounds exactly as in the general loop."""
    z = dt - dt
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        e = vload(ge, oe + q, w)
        gu, gb, gi, gal, grh, gsp = alif_step_backward(
            fs * e + vload(gs_c, o + q, w) + vload(grec, o + q, w), vload(sg, q, w), fu * e,
            vload(gu_n, o + q, w), z, vload(uf, ou1 + q, w), vload(uf, ou0 + q, w),
            vload(sf, os + q, w), vload(bf, ob1 + q, w), z, vload(A, q, w), vload(OA, q, w),
            vload(IOA, q, w), z, z, beta, b_j0, dt)
        vstore(gI, o + q, w, gi)
        vstore(gs_c, o + q, w, gsp)
        vstore(ga, q, w, vload(ga, q, w) + gal)
        vstore(gu_n, o + q, w, gu)


@njit(**_opts)
def integrator_rows(n, uf, ou0, ou1, Ib, A, OA):
    """u from uf[ou0:] into uf[ou1:] for n readout neurons."""
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        vstore(uf, ou1 + q, w, integrator_step(vload(uf, ou0 + q, w), vload(Ib, q, w),
                                               vload(A, q, w), vload(OA, q, w)))


@njit(**_opts)
def integrator_rows_backward(n, ge, oe, uf, ou1, ou0, A, OA, IOA, gu_n, gI, ga):
    for q in range(0, n, LANES):
        w = min(LANES, n - q)
        gu, gi, gal = integrator_step_backward(vload(ge, oe + q, w), vload(gu_n, q, w),
                                               vload(uf, ou1 + q, w), vload(uf, ou0 + q, w),
                                               vload(A, q, w), vload(OA, q, w), vload(IOA, q, w))
        vstore(gI, q, w, gi)
        vstore(gu_n, q, w, gu)
        vstore(ga, q, w, vload(ga, q, w) + gal)

