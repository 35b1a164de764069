"""Numba CPU kernels: sequence-level forward and backward of each layer kind, and the
input projections and weight gradients around them.

Layout: time-major and C-contiguous. Layer state arrays u, s, bt have T + 1 time slots: slot 0
holds the initial state and slot t + 1 the state after step t, so step t reads slot t and
writes slot t + 1 with no special case for the first step. Currents and gradients (I, gI,
external gradients) have T slots. A (T, B, N) array is also seen as (T*B, N) rows.

Parallelism: every kernel is serial and releases the GIL; it works on one chunk ``c`` of the
batch (or of the rows), [lo, hi), and ``spikesim.kernels.threads.run_chunks`` runs the chunks
on a thread pool. (Numba's ``prange`` compiled these loops several times slower.) Chunks keep
private partial sums (a leading chunk axis, summed by the caller), so results are
deterministic for a given thread count. BLAS runs single-threaded (``compute_threads``).

The neuron arithmetic lives in ``spikesim.model.neurons`` and ``spikesim.model.surrogates``;
the kernels only loop. The surrogate is chosen once per row, outside the neuron loop, so each
neuron loop is branch-free and vectorises. Products with a binary (or mostly-zero) operand are
gathers over its non-zero entries, scaled by the value, so they are exact for any values,
smooth spikes included.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..model.neurons import alif_step, alif_step_backward, integrator_step, integrator_step_backward
from ..model.surrogates import (GAUSSIAN, LINEAR, MULTI_GAUSSIAN, SLAYER, SMOOTH, heaviside,
                                sg_gaussian, sg_linear, sg_multi_gaussian, sg_slayer, sg_smooth,
                                smooth_spike)

_opts = dict(fastmath=True, cache=True, nogil=True)


@njit(inline="always")
def _spike_row(x, s, t1, b, N, sp):
    """s[t1, b, :] = spike(x): Heaviside, or the sigmoid of the smooth mode."""
    if sp[0] == SMOOTH:
        for j in range(N):
            s[t1, b, j] = smooth_spike(x[j], sp)
    else:
        for j in range(N):
            s[t1, b, j] = heaviside(x[j], sp)


@njit(inline="always")
def _surrogate_row(x, sg, N, sp):
    """sg[j] = surrogate derivative at x[j], one vectorisable loop per surrogate."""
    code = sp[0]
    if code == MULTI_GAUSSIAN:
        for j in range(N):
            sg[j] = sg_multi_gaussian(x[j], sp)
    elif code == GAUSSIAN:
        for j in range(N):
            sg[j] = sg_gaussian(x[j], sp)
    elif code == LINEAR:
        for j in range(N):
            sg[j] = sg_linear(x[j], sp)
    elif code == SLAYER:
        for j in range(N):
            sg[j] = sg_slayer(x[j], sp)
    else:
        for j in range(N):
            sg[j] = sg_smooth(x[j], sp)


# ----------------------------------------------------------------------------------------------
# Spiking layer (ALIF; LIF is beta = 0), optionally recurrent
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def alif_forward(c, lo, hi, I, WrecT, rec, alpha, oma, rho, omr, beta, b0, dt, sp, u, s, bt):
    """Run a spiking layer over T steps for batch rows [lo, hi).

    I (T,B,N): feed-forward current on entry (W_in x_t + biases); the recurrent input
    W_rec s_{t-1} is added in place (a gather of rows of WrecT = W_rec^T over the neurons that
    spiked), so on exit I holds the total current I_t, which the backward needs.
    u, s, bt (T+1,B,N): slot 0 holds the initial state; slots 1..T are written.
    """
    T, B, N = I.shape
    x = np.empty(N, u.dtype)
    for t in range(T):
        for b in range(lo, hi):
            if rec:
                for i in range(N):
                    si = s[t, b, i]
                    if si != 0:
                        for j in range(N):
                            I[t, b, j] += si * WrecT[i, j]
            for j in range(N):
                u[t + 1, b, j], bt[t + 1, b, j], x[j] = alif_step(
                    u[t, b, j], s[t, b, j], bt[t, b, j], I[t, b, j], alpha[j], oma[j], rho[j], omr[j],
                    beta, b0, dt)
            _spike_row(x, s, t + 1, b, N, sp)


@njit(**_opts)
def alif_backward(c, lo, hi, g_ext, ext_on_u, I, u, s, bt, Wrec, rec, alpha, oma, rho, omr,
                  beta, b0, dt, sp, gI, galpha, grho):
    """Backward through time of a spiking layer for batch rows [lo, hi).

    g_ext (T,B,N): the gradient arriving from outside the layer: dL/du_t of a membrane readout
    when ``ext_on_u`` is 1, else dL/ds_t (next layer, spike readout). A layer never has both.
    Writes gI (T,B,N) = dL/dI_t and adds chunk partial sums to galpha[c], grho[c] (N,).
    The recurrent path W_rec^T gI_{t+1} is one small dense BLAS product per step and chunk.
    """
    T, B, N = I.shape
    nb = hi - lo
    dtype = u.dtype
    gu_n = np.zeros((nb, N), dtype)      # dL/du_{t+1}
    gb_n = np.zeros((nb, N), dtype)      # dL/db_{t+1}
    gs_c = np.zeros((nb, N), dtype)      # terms of dL/ds_t produced by step t+1
    rbuf = np.zeros((nb, N), dtype)
    x = np.empty(N, dtype)
    sg = np.empty(N, dtype)
    gI2 = gI.reshape(T * B, N)
    fu = dtype.type(ext_on_u)
    fs = dtype.type(1 - ext_on_u)
    for t in range(T - 1, -1, -1):
        if rec and t + 1 < T:
            r0 = (t + 1) * B + lo
            np.dot(gI2[r0:r0 + nb], Wrec, rbuf)
            gs_c += rbuf
        for b in range(lo, hi):
            k = b - lo
            for j in range(N):
                x[j] = u[t + 1, b, j] - (b0 + beta * bt[t + 1, b, j])
            _surrogate_row(x, sg, N, sp)
            for j in range(N):
                ge = g_ext[t, b, j]
                gu, gb, gi, gal, grh, gsp = alif_step_backward(
                    fs * ge + gs_c[k, j], sg[j], fu * ge, gu_n[k, j], gb_n[k, j],
                    u[t, b, j], s[t, b, j], bt[t + 1, b, j], bt[t, b, j], I[t, b, j],
                    alpha[j], oma[j], rho[j], omr[j], beta, b0, dt)
                gI[t, b, j] = gi
                galpha[c, j] += gal
                grho[c, j] += grh
                gu_n[k, j] = gu
                gb_n[k, j] = gb
                gs_c[k, j] = gsp


# ----------------------------------------------------------------------------------------------
# Non-spiking readout integrator
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def integrator_forward(c, lo, hi, I, alpha, oma, u):
    """u_t = alpha u_{t-1} + (1 - alpha) I_t over T steps; I (T,B,N), u (T+1,B,N)."""
    T, B, N = I.shape
    for t in range(T):
        for b in range(lo, hi):
            for j in range(N):
                u[t + 1, b, j] = integrator_step(u[t, b, j], I[t, b, j], alpha[j], oma[j])


@njit(**_opts)
def integrator_backward(c, lo, hi, gu_ext, I, u, alpha, oma, gI, galpha):
    """Backward of the integrator: writes gI (T,B,N), adds partial sums to galpha[c]."""
    T, B, N = I.shape
    gu_n = np.zeros((hi - lo, N), u.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(lo, hi):
            k = b - lo
            for j in range(N):
                gu, gi, gal = integrator_step_backward(gu_ext[t, b, j], gu_n[k, j], u[t, b, j],
                                                       I[t, b, j], alpha[j], oma[j])
                gu_n[k, j] = gu
                gI[t, b, j] = gi
                galpha[c, j] += gal


# ----------------------------------------------------------------------------------------------
# Projections: out = X W^T + bias, gradients dW = G^T X and dX = G W
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def project_sparse(c, lo, hi, X, WT, bias, out):
    """out[r] = bias + sum_i X[r, i] WT[i] for rows [lo, hi): a gather of weight rows over
    the non-zeros of X."""
    Nin = X.shape[1]
    N = out.shape[1]
    for r in range(lo, hi):
        for j in range(N):
            out[r, j] = bias[j]
        for i in range(Nin):
            xi = X[r, i]
            if xi != 0:
                for j in range(N):
                    out[r, j] += xi * WT[i, j]


@njit(**_opts)
def matmul_rows(c, lo, hi, A, Bm, bias, out):
    """out[lo:hi] = A[lo:hi] @ Bm + bias: one BLAS product, or plain loops when the inner
    dimension is too small for BLAS to pay off (the 6 outputs of the ECG network)."""
    K = A.shape[1]
    N = out.shape[1]
    if hi <= lo:
        return
    if K > 16:
        np.dot(A[lo:hi], Bm, out[lo:hi])
        for r in range(lo, hi):
            for j in range(N):
                out[r, j] += bias[j]
    else:
        for r in range(lo, hi):
            for j in range(N):
                out[r, j] = bias[j]
            for k in range(K):
                a = A[r, k]
                for j in range(N):
                    out[r, j] += a * Bm[k, j]


@njit(**_opts)
def weight_grad_sparse(c, lo, hi, G, X, parts):
    """parts[c] += sum over rows [lo, hi) of outer(X[r], G[r]): dW^T as a scatter-add of rows
    of G over the non-zeros of X."""
    N = G.shape[1]
    Nin = X.shape[1]
    for r in range(lo, hi):
        for i in range(Nin):
            xi = X[r, i]
            if xi != 0:
                for j in range(N):
                    parts[c, i, j] += xi * G[r, j]


@njit(**_opts)
def weight_grad_dense(c, lo, hi, G, X, parts):
    """Dense counterpart of ``weight_grad_sparse``: parts[c] += X[lo:hi]^T G[lo:hi] by BLAS."""
    if hi > lo:
        parts[c] += np.dot(X[lo:hi].T, G[lo:hi])
