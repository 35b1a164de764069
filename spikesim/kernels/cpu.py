"""Numba CPU kernels: sequence-level forward and backward of each layer kind, and the
input projections and weight gradients around them.

Layout: time-major (T, B, N), C-contiguous; a (T, B, N) array is also seen as (T*B, N) rows.
Parallelism: every kernel is serial and releases the GIL; it works on one chunk ``c`` of the
batch (or of the rows), [lo, hi), and ``spikesim.kernels.threads.run_chunks`` runs the chunks
on a thread pool. (Numba's ``prange`` compiled these loops 4-5x slower: the outlined parallel
body lost vectorisation.) Chunks keep private partial sums (a leading chunk axis, summed by the
caller), so results are deterministic for a given thread count. BLAS runs single-threaded
(``compute_threads``); the dense products are called per chunk.

The arithmetic of the neurons lives in ``spikesim.model.neurons``; the kernels only loop.
Products with a binary (or otherwise mostly-zero) operand are gathers over its non-zero
entries, scaled by the value, so they are exact for any values, smooth spikes included.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ..model.neurons import alif_step, alif_step_backward, integrator_step, integrator_step_backward

_opts = dict(fastmath=True, cache=True, nogil=True)


# ----------------------------------------------------------------------------------------------
# Spiking layer (ALIF; LIF is beta = 0), optionally recurrent
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def alif_forward(c, lo, hi, I, WrecT, rec, alpha, oma, rho, omr, beta, b0, dt, sp, u0, s0, bt0, u, s, bt):
    """Run a spiking layer over T steps.

    I (T,B,N): feed-forward current on entry (W_in x_t + biases); the recurrent input
    W_rec s_{t-1} is added in place, so on exit I holds the total current I_t (the backward
    needs it). WrecT (N,N) is W_rec transposed: row i holds the weights leaving neuron i.
    Writes u, s, bt (T,B,N): membrane, spike, adaptation trace b_t.
    """
    T, B, N = I.shape
    for t in range(T):
        for bb in range(lo, hi):
            if t == 0:
                up, spv, bp = u0[bb], s0[bb], bt0[bb]
            else:
                up, spv, bp = u[t - 1, bb], s[t - 1, bb], bt[t - 1, bb]
            Ir = I[t, bb]
            if rec:
                for i in range(N):
                    si = spv[i]
                    if si != 0:
                        w = WrecT[i]
                        for j in range(N):
                            Ir[j] += si * w[j]
            ur, sr, br = u[t, bb], s[t, bb], bt[t, bb]
            for j in range(N):
                ur[j], sr[j], br[j] = alif_step(up[j], spv[j], bp[j], Ir[j], alpha[j], oma[j],
                                                rho[j], omr[j], beta, b0, dt, sp)


@njit(**_opts)
def alif_backward(c, lo, hi, gs_ext, gu_ext, has_gu, I, u, s, bt, Wrec, rec, alpha, oma, rho, omr,
                  beta, b0, dt, sp, u0, s0, bt0, gI, galpha, grho):
    """Backward through time of a spiking layer (see ``alif_step_backward``).

    gs_ext (T,B,N): dL/ds_t from outside the layer (next layer, spike readout).
    gu_ext (T,B,N): dL/du_t from a membrane readout (read only when has_gu).
    Writes gI (T,B,N) = dL/dI_t, and per-chunk partial sums galpha, grho (nch, N).
    The recurrent path W_rec^T gI_{t+1} is one small dense product per step and chunk.
    """
    T, B, N = u.shape
    gI2 = gI.reshape(T * B, N)
    nb = hi - lo
    gu_n = np.zeros((nb, N), u.dtype)
    gb_n = np.zeros((nb, N), u.dtype)
    gs_c = np.zeros((nb, N), u.dtype)      # terms of dL/ds_t that step t+1 produced
    rbuf = np.zeros((nb, N), u.dtype)
    ga = galpha[c]
    gr = grho[c]
    for t in range(T - 1, -1, -1):
        if rec and t + 1 < T:
            r0 = (t + 1) * B + lo
            np.dot(gI2[r0:r0 + nb], Wrec, rbuf)
            for k in range(nb):
                for j in range(N):
                    gs_c[k, j] += rbuf[k, j]
        for k in range(nb):
            bb = lo + k
            if t == 0:
                up, spv, bp = u0[bb], s0[bb], bt0[bb]
            else:
                up, spv, bp = u[t - 1, bb], s[t - 1, bb], bt[t - 1, bb]
            ur, br, Ir, gsr, gIr = u[t, bb], bt[t, bb], I[t, bb], gs_ext[t, bb], gI[t, bb]
            gun, gbn, gsc = gu_n[k], gb_n[k], gs_c[k]
            for j in range(N):
                gue = gu_ext[t, bb, j] if has_gu else gsr[j] - gsr[j]
                gu, gb, gi, gal, grh, gsp = alif_step_backward(
                    gsr[j] + gsc[j], gue, gun[j], gbn[j], ur[j], up[j], spv[j], br[j], bp[j],
                    Ir[j], alpha[j], oma[j], rho[j], omr[j], beta, b0, dt, sp)
                gIr[j] = gi
                ga[j] += gal
                gr[j] += grh
                gun[j] = gu
                gbn[j] = gb
                gsc[j] = gsp


# ----------------------------------------------------------------------------------------------
# Non-spiking readout integrator
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def integrator_forward(c, lo, hi, I, alpha, oma, u0, u):
    """u_t = alpha u_{t-1} + (1 - alpha) I_t over T steps; I, u (T,B,N)."""
    T, B, N = I.shape
    for t in range(T):
        for bb in range(lo, hi):
            up = u0[bb] if t == 0 else u[t - 1, bb]
            Ir, ur = I[t, bb], u[t, bb]
            for j in range(N):
                ur[j] = integrator_step(up[j], Ir[j], alpha[j], oma[j])


@njit(**_opts)
def integrator_backward(c, lo, hi, gu_ext, I, u, alpha, oma, u0, gI, galpha):
    """Backward of the integrator: writes gI (T,B,N) and partial sums galpha (nch, N)."""
    T, B, N = u.shape
    gu_n = np.zeros((hi - lo, N), u.dtype)
    ga = galpha[c]
    for t in range(T - 1, -1, -1):
        for k in range(hi - lo):
            bb = lo + k
            up = u0[bb] if t == 0 else u[t - 1, bb]
            Ir, gur, gIr, gun = I[t, bb], gu_ext[t, bb], gI[t, bb], gu_n[k]
            for j in range(N):
                gu, gi, gal = integrator_step_backward(gur[j], gun[j], up[j], Ir[j], alpha[j], oma[j])
                gun[j] = gu
                gIr[j] = gi
                ga[j] += gal


# ----------------------------------------------------------------------------------------------
# Projections: out = X W^T + bias, gradients dW = G^T X and dX = G W
# ----------------------------------------------------------------------------------------------
@njit(**_opts)
def project_sparse(c, lo, hi, X, WT, bias, out):
    """out[r] = bias + sum_i X[r, i] WT[i]: a gather of weight rows over the non-zeros of X."""
    R, Nin = X.shape
    N = out.shape[1]
    for r in range(lo, hi):
        o = out[r]
        for j in range(N):
            o[j] = bias[j]
        xr = X[r]
        for i in range(Nin):
            xi = xr[i]
            if xi != 0:
                w = WT[i]
                for j in range(N):
                    o[j] += xi * w[j]


@njit(**_opts)
def matmul_rows(c, lo, hi, A, Bm, bias, out):
    """out = A @ Bm + bias, one BLAS product per chunk of rows of A."""
    R = A.shape[0]
    N = out.shape[1]
    if hi > lo:
        np.dot(A[lo:hi], Bm, out[lo:hi])
        for r in range(lo, hi):
            o = out[r]
            for j in range(N):
                o[j] += bias[j]


@njit(**_opts)
def weight_grad_sparse(c, lo, hi, G, X, X0, lag, parts):
    """parts[c] += sum over rows r of chunk c of outer(x_r, G[r]), x_r = X[r - lag] (X0[r] for
    r < lag): dW^T as a scatter-add of G rows over the non-zeros of the (lagged) input.
    lag = B gives the recurrent weights' input s_{t-1} from the spikes s."""
    R, N = G.shape
    Nin = X.shape[1]
    P = parts[c]
    for r in range(lo, hi):
        xr = X[r - lag] if r >= lag else X0[r]
        g = G[r]
        for i in range(Nin):
            xi = xr[i]
            if xi != 0:
                p = P[i]
                for j in range(N):
                    p[j] += xi * g[j]


@njit(**_opts)
def weight_grad_dense(c, lo, hi, G, X, X0, lag, parts):
    """Dense counterpart of ``weight_grad_sparse``: parts[c] += X_c^T G_c by BLAS."""
    R, N = G.shape
    a = max(lo, lag)
    if hi > a:
        parts[c] += np.dot(X[a - lag:hi - lag].T, G[a:hi])
    if lo < lag:
        e = min(hi, lag)
        parts[c] += np.dot(X0[lo:e].T, G[lo:e])
