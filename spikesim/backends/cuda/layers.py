"""The CUDA layer kernels: the forward and the backward pass of each layer kind over a whole
sequence, with the same names as the CPU's (``spikesim/backends/cpu/layers.py``), and the
tiled matrix product that forms the input currents, the weight gradients and the gradient to
the layer below.

Design, and why:

- **One launch per layer, the time loop inside it** (a persistent kernel): a launch per step
  would cost a launch latency (microseconds) per step and layer, more than a step's work at the
  sizes of the task networks (N <= 256 neurons, B <= 256 samples).
- **One thread per (sample b, neuron j)**; a block holds one sample (blockIdx.x = b), each thread
  owning the neurons j = threadIdx.x, threadIdx.x + blockDim.x, ... (a strided loop), so a
  layer wider than a block still has a whole sample in one block. A recurrent layer needs that:
  the recurrent product of step t reads every spike of step t-1 of its sample, so the block
  synchronises once per step (``cuda.syncthreads``). Feed-forward layers and the integrator
  have no coupling between neurons: they also split a sample over blockIdx.y tiles.
- **The recurrent product inside the time loop.** The spikes of step t-1 sit in shared memory
  (a two-slot ring: step t reads slot t % 2 and writes the other, so one barrier per step
  suffices); W_rec^T (k, j) is copied to shared memory at the start when it fits
  (``w_shared``), else read from global memory, neurons j contiguous so that a warp's reads are
  coalesced. A silent neuron k adds nothing, and the test ``s_k != 0`` is uniform across the
  warp (all threads read the same s_k), so sparse spikes skip whole rows without divergence.
- **The input projection before the time loop**: I_t = W_in x_t + bias for all t at once is one
  (T B, N_in) x (N_in, N) product (``matmul``, 16 x 16 tiles in shared memory), a dense GEMM
  that runs at the GPU's arithmetic rate, instead of a product per step inside the loop.
- **Coalesced layouts**: every state array is time-major (T + 1, B, N) or (B, N), neurons
  contiguous; consecutive threads touch consecutive addresses. Slot 0 of u, s and b holds the
  initial state and slot t + 1 the state after step t, as on the CPU.
- **The backward reads what the forward saved.** Memory is plentiful on the GPU next to the
  cost of recomputing, so the forward keeps u, s and b of every slot (the CPU keeps s as lists
  and b every 8 steps, being bound by memory traffic). The backward is the same loop reversed:
  the recurrent path W_rec^T dL/dI_{t+1} is formed from dL/dI_{t+1} in shared memory (W_rec
  (i, j), neurons j contiguous). It writes dL/dI (T, B, N) in full, and the weight gradients
  and the gradient to the layer below are then products over it (``matmul``): dW_in = dI^T x,
  dW_rec = dI^T s_{t-1}, dx = dI W_in, bias gradient = column sums. No atomics, so results are
  deterministic; dL/dalpha and dL/drho are per-sample partials (B, N), summed by
  ``column_sums`` in a fixed order.

The neuron arithmetic is that of ``spikesim.model`` (``alif_step``, ``alif_step_backward``,
``integrator_step(_backward)``, the spike function and surrogates), compiled for the CUDA target
through ``require_numba_cuda``; ``neuron_forward`` / ``neuron_backward`` only choose the
surrogate and chain the calls. No equation is written here.

Invariant of every kernel body, for the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, how the
tests run without a GPU): every value handed to an equation comes from an array, a kernel
argument or arithmetic on these in the kernel body, and every result of an equation is stored
into an array before it is used again. The simulator runs the kernel body in Python (NumPy
scalars keep their dtype) and the equations as Numba CPU functions, which box a float32 result
as a Python float; stored into a float32 array it is exact again, but handed on directly it
would make the next equation compile for float64. On the GPU these stores go to the thread's
own neurons' lines, which stay in L1.

Constants arrive in the kernel's dtype (``zero``, ``beta``, ``b_j0``, ``dt``, the surrogate's
``sp``): a float literal would promote float32 arithmetic to float64.
"""
from __future__ import annotations

import numpy as np
from numba import njit, types

from ...model.neurons import (
    alif_step,
    alif_step_backward,
    integrator_step,
    integrator_step_backward,
    spike_argument,
)
from ...model.surrogates import (
    GAUSSIAN,
    LINEAR,
    MULTI_GAUSSIAN,
    SLAYER,
    SMOOTH,
    heaviside,
    sg_gaussian,
    sg_linear,
    sg_multi_gaussian,
    sg_slayer,
    sg_smooth,
    smooth_spike,
)
from . import require_numba_cuda

cuda = require_numba_cuda()

TILE = 16                  # matmul on a GPU: a block computes a TILE x TILE tile of C
SHARED_BYTES = 48 * 1024   # the shared memory a block may use without opting in (every cc >= 5)


# -- the neuron, composed from the model's equations ------------------------------------------
@njit(inline="always")
def spike(x, sp):
    """The forward spike at x = u - theta: H(x), or the smooth mode's sigmoid(k x)."""
    if sp.code == SMOOTH:
        return smooth_spike(x, sp)
    return heaviside(x, sp)


@njit(inline="always")
def surrogate(x, sp):
    """The surrogate derivative at x (the branch is uniform: one surrogate per layer)."""
    c = sp.code
    if c == MULTI_GAUSSIAN:
        return sg_multi_gaussian(x, sp)
    if c == GAUSSIAN:
        return sg_gaussian(x, sp)
    if c == LINEAR:
        return sg_linear(x, sp)
    if c == SLAYER:
        return sg_slayer(x, sp)
    return sg_smooth(x, sp)


@njit(inline="always")
def neuron_forward(u_prev, s_prev, b_prev, I, alpha, oma, rho, omr, beta, b_j0, dt, sp):
    """One ALIF/LIF step: (u_t, b_t, s_t)."""
    u, b, x = alif_step(u_prev, s_prev, b_prev, I, alpha, oma, rho, omr, beta, b_j0, dt)
    return u, b, spike(x, sp)


@njit(inline="always")
def neuron_backward(gs, gu_ext, gu_next, gb_next, u, u_prev, s_prev, b, b_prev, alpha, oma,
                    ioma, rho, omr, beta, b_j0, dt, sp):
    """One backward step: (gu, gb, gI, galpha, grho, gs_prev) (``alif_step_backward``), the
    surrogate taken at x = u_t - theta_t. LIF (beta = 0) runs the same code: gb stays exactly 0
    (it starts at 0 and gains beta * gtheta), so grho is 0 and b never enters."""
    sg = surrogate(spike_argument(u, b, b_j0, beta), sp)
    return alif_step_backward(gs, sg, gu_ext, gu_next, gb_next, u, u_prev, s_prev, b, b_prev,
                              alpha, oma, ioma, rho, omr, beta, b_j0, dt)


# -- layer kernels ----------------------------------------------------------------------------
def _alif_forward(I, WrecT, rec, w_shared, u, s, b, alpha, oma, rho, omr, beta, b_j0, dt, sp):
    """A spiking layer over T steps. Grid (B, tiles): block x runs sample x; a recurrent layer
    has one tile (the whole sample in one block), threads striding over its N neurons.

    I (T, B, N): the input current W_in x_t + bias (``matmul``); WrecT (N, N) W_rec^T, read only
    when ``rec``; u, s, b (T + 1, B, N): slot 0 holds the initial state, slot t + 1 receives the
    state after step t. Dynamic shared memory: 2 N values (the spike ring), plus N N for W_rec^T
    when ``w_shared``.
    """
    sh = cuda.shared.array(0, dtype=u.dtype)
    T, N = I.shape[0], I.shape[2]
    bi = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    j0, stride = cuda.blockIdx.y * nt + tid, nt * cuda.gridDim.y
    zero = dt - dt
    W0 = 2 * N                          # W_rec^T's offset in shared memory
    if rec:
        for j in range(tid, N, nt):
            sh[j] = s[0, bi, j]         # ring slot 0: s_{-1}, the initial spikes
        if w_shared:
            for q in range(tid, N * N, nt):
                sh[W0 + q] = WrecT[q // N, q % N]
        cuda.syncthreads()
    for t in range(T):
        cur = (t % 2) * N               # ring slot of s_{t-1}; step t writes s_t to the other
        nxt = N - cur
        for j in range(j0, N, stride):
            rec_in = zero
            if rec:
                for k in range(N):
                    sk = sh[cur + k]
                    if sk != zero:      # uniform across the warp: every thread reads s_k
                        if w_shared:
                            rec_in += sh[W0 + k * N + j] * sk
                        else:
                            rec_in += WrecT[k, j] * sk
            uu, bb, ss = neuron_forward(u[t, bi, j], s[t, bi, j], b[t, bi, j],
                                        I[t, bi, j] + rec_in, alpha[j], oma[j], rho[j], omr[j],
                                        beta, b_j0, dt, sp)
            u[t + 1, bi, j] = uu
            b[t + 1, bi, j] = bb
            s[t + 1, bi, j] = ss
            if rec:
                sh[nxt + j] = s[t + 1, bi, j]
        if rec:
            cuda.syncthreads()          # s_t complete in the ring before step t + 1 reads it


def _alif_backward(g_ext, fs, fu, u, s, b, Wrec, rec, w_shared, alpha, oma, ioma, rho, omr, beta,
                   b_j0, dt, sp, gI, gu_n, gb_n, gs_c, ga, gr):
    """Backward through time of a spiking layer; grid and threads as in ``_alif_forward``.

    g_ext (T, B, N): the gradient from outside the layer, dL/du_t times ``fu`` plus dL/ds_t
    times ``fs`` (a membrane readout: fu = 1, fs = 0; the next layer or a spike readout: fu = 0,
    fs = 1). u, s, b (T + 1, B, N) as the forward left them; Wrec (N, N) = W_rec (i, j).
    Writes gI (T, B, N) = dL/dI_t. Work arrays (B, N), zero on entry: gu_n, gb_n = dL/du_{t+1},
    dL/db_{t+1}, gs_c = the terms of dL/ds_t produced by step t + 1; ga, gr receive each
    sample's sums over t of dL/dalpha and dL/drho. Dynamic shared memory: 2 N (the dL/dI ring),
    plus N N for W_rec when ``w_shared``.
    """
    sh = cuda.shared.array(0, dtype=u.dtype)
    T, N = g_ext.shape[0], g_ext.shape[2]
    bi = cuda.blockIdx.x
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    j0, stride = cuda.blockIdx.y * nt + tid, nt * cuda.gridDim.y
    zero = dt - dt
    W0 = 2 * N
    if rec and w_shared:
        for q in range(tid, N * N, nt):
            sh[W0 + q] = Wrec[q // N, q % N]
        cuda.syncthreads()
    for t in range(T - 1, -1, -1):
        cur = (t % 2) * N               # ring slot that receives dL/dI_t; dL/dI_{t+1} in the other
        nxt = N - cur
        for j in range(j0, N, stride):
            grec = zero                 # W_rec^T dL/dI_{t+1}: s_t's share of the next current
            if rec and t + 1 < T:
                for i in range(N):
                    if w_shared:
                        grec += sh[W0 + i * N + j] * sh[nxt + i]
                    else:
                        grec += Wrec[i, j] * sh[nxt + i]
            e = g_ext[t, bi, j]
            gu, gb, gi, gal, grh, gsp = neuron_backward(
                fs * e + gs_c[bi, j] + grec, fu * e, gu_n[bi, j], gb_n[bi, j], u[t + 1, bi, j],
                u[t, bi, j], s[t, bi, j], b[t + 1, bi, j], b[t, bi, j], alpha[j], oma[j], ioma[j],
                rho[j], omr[j], beta, b_j0, dt, sp)
            gI[t, bi, j] = gi
            gu_n[bi, j] = gu
            gb_n[bi, j] = gb
            gs_c[bi, j] = gsp
            ga[bi, j] += gal
            gr[bi, j] += grh
            if rec:
                sh[cur + j] = gI[t, bi, j]
        if rec:
            cuda.syncthreads()          # dL/dI_t complete before step t - 1 reads it


def _integrator_forward(I, u, alpha, oma):
    """u_t = alpha u_{t-1} + (1 - alpha) I_t; I (T, B, N), u (T + 1, B, N). Grid (B, tiles),
    threads striding over the neurons; no coupling between neurons, so no barrier."""
    T, N = I.shape[0], I.shape[2]
    bi = cuda.blockIdx.x
    nt = cuda.blockDim.x
    j0, stride = cuda.blockIdx.y * nt + cuda.threadIdx.x, nt * cuda.gridDim.y
    for t in range(T):
        for j in range(j0, N, stride):
            u[t + 1, bi, j] = integrator_step(u[t, bi, j], I[t, bi, j], alpha[j], oma[j])


def _integrator_backward(g_ext, u, alpha, oma, ioma, gI, gu_n, ga):
    """Backward of the integrator: g_ext (T, B, N) = dL/du_t of the readout; writes gI (T, B, N);
    gu_n (B, N) work (zero on entry); ga (B, N) each sample's dL/dalpha."""
    T, N = g_ext.shape[0], g_ext.shape[2]
    bi = cuda.blockIdx.x
    nt = cuda.blockDim.x
    j0, stride = cuda.blockIdx.y * nt + cuda.threadIdx.x, nt * cuda.gridDim.y
    for t in range(T - 1, -1, -1):
        for j in range(j0, N, stride):
            gu, gi, gal = integrator_step_backward(g_ext[t, bi, j], gu_n[bi, j], u[t + 1, bi, j],
                                                   u[t, bi, j], alpha[j], oma[j], ioma[j])
            gI[t, bi, j] = gi
            gu_n[bi, j] = gu
            ga[bi, j] += gal


# -- products and reductions ------------------------------------------------------------------
def _matmul(A, B, P, ta, tb, bias, add_bias, zero, kchunk):
    """P[z] (M, N) = op(A) op(B) over the z-th span of kchunk values of the sum's axis K
    (z = blockIdx.z; ``sum_splits`` adds the spans up), plus bias (N,) when ``add_bias`` (one
    span only). op(A) (M, K) = A or A^T (``ta``), op(B) (K, N) = B or B^T (``tb``).
    A square block of tile = blockDim.x threads a side (``TILE`` on a GPU; smaller under the
    simulator, which runs a thread per Python thread) computes a tile of P[z]: x along its
    columns (coalesced stores), y along its rows; the span goes through shared memory a tile of
    each factor at a time (dynamic shared memory: 2 tile^2 values), padded with zeros at the
    edges. Why spans (split-K): a weight gradient is a small matrix summed over T B rows (dW_rec
    (N, N) over ~10^4-10^5 rows), which in one span would keep a handful of blocks busy."""
    sh = cuda.shared.array(0, dtype=P.dtype)
    M, N = P.shape[1], P.shape[2]
    K = A.shape[0] if ta else A.shape[1]
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    tile = cuda.blockDim.x
    z = cuda.blockIdx.z
    k_lo = z * kchunk
    k_hi = min(K, k_lo + kchunk)
    m0, n0 = cuda.blockIdx.y * tile, cuda.blockIdx.x * tile
    m, n = m0 + ty, n0 + tx             # this thread's P[z, m, n]
    B0 = tile * tile
    acc = zero
    for k0 in range(k_lo, k_hi, tile):
        # sh[r * tile + c] = op(A)[m0 + r, k0 + c], sh[B0 + r * tile + c] = op(B)[k0 + r, n0 + c];
        # consecutive threads (x) read consecutive addresses of A and B in every case: a
        # transposed factor is read along its rows and stored transposed
        if ta:
            v = A[k0 + ty, m0 + tx] if k0 + ty < k_hi and m0 + tx < M else zero
            sh[tx * tile + ty] = v
        else:
            v = A[m0 + ty, k0 + tx] if m0 + ty < M and k0 + tx < k_hi else zero
            sh[ty * tile + tx] = v
        if tb:
            v = B[n0 + ty, k0 + tx] if n0 + ty < N and k0 + tx < k_hi else zero
            sh[B0 + tx * tile + ty] = v
        else:
            v = B[k0 + ty, n0 + tx] if k0 + ty < k_hi and n0 + tx < N else zero
            sh[B0 + ty * tile + tx] = v
        cuda.syncthreads()
        for kk in range(tile):
            acc += sh[ty * tile + kk] * sh[B0 + kk * tile + tx]
        cuda.syncthreads()
    if m < M and n < N:
        if add_bias:
            P[z, m, n] = acc + bias[n]
        else:
            P[z, m, n] = acc


def _column_sums(A, P, rows, zero):
    """P[z, j] = sum of A[r, j] over the z-th span of ``rows`` rows (z = blockIdx.y), in row
    order; one thread per column (coalesced), ``sum_splits`` adds the spans up."""
    j = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
    z = cuda.blockIdx.y
    if j < A.shape[1]:
        acc = zero
        for r in range(z * rows, min(A.shape[0], (z + 1) * rows)):
            acc += A[r, j]
        P[z, j] = acc


def _sum_splits(P, C):
    """C[m, n] = sum over z of P[z, m, n], in z order (one thread per element): the spans of
    ``matmul`` or ``column_sums`` added up in a fixed order, so results are deterministic."""
    i = cuda.grid(1)
    M, N = C.shape
    if i < M * N:
        m, n = i // N, i % N
        acc = P[0, m, n]
        for z in range(1, P.shape[0]):
            acc += P[z, m, n]
        C[m, n] = acc


def _fill(a, value):
    """a[i] = value for every element of the 1-D array a, one thread per element: the zeros of
    the backward's accumulators, written on the device rather than copied from the host."""
    i = cuda.grid(1)
    if i < a.shape[0]:
        a[i] = value


KERNELS = {"alif_forward": _alif_forward, "alif_backward": _alif_backward,
           "integrator_forward": _integrator_forward, "integrator_backward": _integrator_backward,
           "matmul": _matmul, "column_sums": _column_sums, "sum_splits": _sum_splits,
           "fill": _fill}

alif_forward = cuda.jit(_alif_forward)
alif_backward = cuda.jit(_alif_backward)
integrator_forward = cuda.jit(_integrator_forward)
integrator_backward = cuda.jit(_integrator_backward)
matmul = cuda.jit(_matmul)
column_sums = cuda.jit(_column_sums)
sum_splits = cuda.jit(_sum_splits)
fill = cuda.jit(_fill)


def signature(name: str, dtype, sp_type) -> tuple:
    """The Numba argument types with which the backend launches kernel ``name`` in ``dtype``
    (``sp_type``: the type of the surrogate's ``SurrogateConsts``), for ``compile_ptx``."""
    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    a1, a2, a3 = (types.Array(f, d, "C") for d in (1, 2, 3))
    bo = types.boolean
    sigs = {
        "alif_forward": (a3, a2, bo, bo, a3, a3, a3, a1, a1, a1, a1, f, f, f, sp_type),
        "alif_backward": (a3, f, f, a3, a3, a3, a2, bo, bo, a1, a1, a1, a1, a1, f, f, f, sp_type,
                          a3, a2, a2, a2, a2, a2),
        "integrator_forward": (a3, a3, a1, a1),
        "integrator_backward": (a3, a3, a1, a1, a1, a3, a2, a2),
        "matmul": (a2, a2, a3, bo, bo, a1, bo, f, types.int64),
        "column_sums": (a2, a2, types.int64, f),
        "sum_splits": (a3, a2),
        "fill": (a1, f),
    }
    return sigs[name]

