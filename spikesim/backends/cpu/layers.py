"""The layer kernels: the forward and the backward pass of each layer kind over a whole
sequence, with the input projection fused into the forward and the weight gradients and the
gradient to the layer below fused into the backward.

Why fused: these loops are bound by memory traffic, not arithmetic (a neuron step does ~10
flops per 4-byte value it touches; the bandwidths measured on the reference machine are in
docs/benchmarks.md). Fusing removes the input-current and current-gradient arrays (T, B, N)
altogether: the current is formed row by row from the input's non-zeros, and each row of dL/dI
is used for the weight gradients while it is still in cache.

Layout: time-major, C-contiguous. The membrane u has T + 1 time slots: slot 0 holds the
initial state and slot t + 1 the state after step t, so step t reads slot t and writes slot
t + 1 with no special case. The spikes are kept only as lists (``lists.py``), written by the
forward kernel as it produces them; the adaptation trace b only every CHECK slots, rebuilt by
the backward. So input projections, recurrent inputs and the weight gradients are gathers and
scatter-adds over what fired (``gather_scatter.py``), exact for any values (smooth spikes,
analog data, a random initial state) and cheap for sparse ones.

Parallelism: every kernel is serial and releases the GIL; it works on chunk ``c`` of the batch,
rows [lo, hi), and ``threads.run_chunks`` runs the chunks on a thread pool. (Numba's ``prange``
compiled these loops several times slower.) Chunks keep private partial sums (a leading chunk
axis, reduced by the caller in a fixed order), so results are deterministic for a given thread
count. BLAS runs single-threaded (``threads.compute_threads``).

The neuron arithmetic lives in ``spikesim.model`` (equations) and runs in ``neuron_rows.py``
(loops); the kernels here only arrange the time loop. Inside the time loops there are no array
views: each kernel makes its flat views once, and everything in the loop takes flat arrays and
integer offsets (a view costs atomic reference-count updates and a call; see
docs/architecture.md). Constants and arrays that belong together travel as named tuples
(``spikesim.backends.kernel_args``, ``lists.Lists``): unpacked once at the top of each kernel.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ...model.neurons import spike_argument
from ...model.surrogates import SMOOTH
from .blas import matmul
from .flat import reciprocal, tile_rows, vcopy
from .gather_scatter import (
    add_neuron_sums,
    add_private_rows,
    external_grad,
    input_current,
    input_grad,
    private_copy,
    private_rows,
    scatter_work,
    weight_grads,
)
from .lists import append_spike_lists, dense_slot, spike_list_work
from .neuron_rows import (
    adapt_rows,
    alif_rows,
    alif_rows_backward,
    integrator_rows,
    integrator_rows_backward,
    lif_rows_backward,
    smooth_spikes,
    surrogate_rows,
)
from .simd import LANES, at, empty64, is_aligned64, prefetch, store_fence, zeros64

_opts = dict(fastmath=True, cache=True, nogil=True, error_model="numpy")
BLOCK = 2048          # neurons per block of the backward's neuron loops (about 8 KB per array)
CHECK = 8             # the adaptation trace b is kept every CHECK steps and recomputed in between


@njit(**_opts)
def alif_forward(c, lo, hi, xs, w, k, sp, u, s_init, b_init, bchk, s_last, b_last, ss):
    """Run a spiking layer over T steps for batch rows [lo, hi).

    The input current I_t = W_in x_t + bias + W_rec s_{t-1} is formed per row from the input's lists
    ``xs`` and the layer's own spike lists ``ss`` (``Lists``); ``w``: ``ForwardWeights`` (transposed
    weights), ``k``: ``LayerConsts``, ``sp``: ``SurrogateConsts``. What is kept for the backward
    pass, and why so little: these loops are bound by memory traffic, so of the state only
    u (T+1,B,N) is stored in full (slot 0 = the initial state). The spikes are kept as their lists
    (rows slot * B + b, all T + 1 slots; the chunk owns the capacity
    [lo * (T+1) * N, hi * (T+1) * N) of ss.col, ss.val), and the adaptation trace b every CHECK
    slots in bchk (T // CHECK + 1, B, N). The state after the last step goes to s_last,
    b_last (B, N).
    """
    xp0, xp1, xcol, xval = xs
    lp0, lp1, lcol, lval = ss
    WinT, bias, WrecT, rec = w
    alpha, oma, rho, omr, beta, b_j0, dt = k
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA, R, OR = tile_rows(alpha, nb), tile_rows(oma, nb), tile_rows(rho, nb), tile_rows(omr, nb)
    x = empty64(n, u.dtype)
    Ib = empty64(n, u.dtype)
    lw = spike_list_work(nb, N)
    ur = empty64(2 * n, u.dtype).reshape((2, n))   # u, s and b of the previous and current step
    sr = empty64(2 * n, u.dtype).reshape((2, n))
    br = empty64(2 * n, u.dtype).reshape((2, n))
    ur[0] = u[0, lo:hi].reshape(-1)
    sr[0] = s_init[lo:hi].reshape(-1)
    br[0] = b_init[lo:hi].reshape(-1)
    bchk[0, lo:hi] = b_init[lo:hi]
    # flat views, made once: a view made inside the time loop costs two atomic reference-count
    # updates and a call that spills the vector registers (a tenth of the step's time)
    uf, urf, sf, bf = u.reshape(-1), ur.reshape(-1), sr.reshape(-1), br.reshape(-1)
    cf = bchk.reshape(-1)
    Wi, Wr = WinT.reshape(-1), WrecT.reshape(-1)
    # u is written once here and read back only by the backward pass, long after: stream it to
    # memory (non-temporal stores skip reading each line into the cache first; a fifth of the
    # ECG forward's time went to that). Every step's rows start 64-byte aligned when slot 0 of
    # the chunk does and a slot is a whole number of vectors.
    stream = is_aligned64(uf, off) and (B * N) % LANES == 0
    p = append_spike_lists(0, lo, hi, B, N, sf, 0, lo * (T + 1) * N, lp0, lp1, lcol, lval, lw)
    for t in range(T):
        cur, nxt = (t % 2) * n, ((t + 1) % 2) * n
        input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wr, rec, lp0, lp1,
                       lcol, lval, Ib)
        alif_rows(n, uf, (t + 1) * B * N + off, urf, sf, bf, cur, nxt, Ib, A, OA, R, OR, beta,
                   b_j0, dt, x, sp, stream)
        if sp.code == SMOOTH:
            smooth_spikes(x, sf, nxt, n, sp)
        p = append_spike_lists(t + 1, lo, hi, B, N, sf, nxt, p, lp0, lp1, lcol, lval, lw)
        if (t + 1) % CHECK == 0:
            vcopy(cf, (t + 1) // CHECK * B * N + off, bf, nxt, n)
    store_fence()
    s_last[lo:hi] = sr[T % 2].reshape(nb, N)
    b_last[lo:hi] = br[T % 2].reshape(nb, N)


@njit(**_opts)
def alif_backward(c, lo, hi, ext, u, bchk, xs, ss, w, gx, gx_mode, k, sp, acc):
    """Backward through time of a spiking layer for batch rows [lo, hi).

    ``ext`` (``ExternalGrad``): the gradient arriving from outside the layer, g (T,B,N): dL/du_t
    of a membrane readout when ``on_u`` is 1, else dL/ds_t (next layer, spike readout); a layer
    never has both. With ``prod`` it is (T,B,M) dL/dI of the layer above, times W (M,N) per
    step. ``w``: ``BackwardWeights``; ``xs``, ``ss``, ``k``, ``sp`` as in ``alif_forward``.
    Adds the chunk's parameter gradients to ``acc`` (``GradAccumulators``): W_in_T[c] (N_in,N),
    bias[c], W_rec_T[c] (N,N), alpha[c], rho[c]; writes gx for the layer below as
    ``input_grad`` says.
    The spikes come from the lists and b from its checkpoints: going down through each span of
    CHECK steps, b and s of the span are first rebuilt (``adapt_step``, as in the forward).
    The recurrent path W_rec^T dL/dI_{t+1} is one small dense product per step and chunk.
    """
    g_ext, W_ext, ext_prod, ext_on_u = ext
    xp0, xp1, xcol, xval = xs
    lp0, lp1, lcol, lval = ss
    Win, Wrec, rec = w
    alpha, oma, rho, omr, beta, b_j0, dt = k
    dWinT, db, dWrecT, galpha, grho = acc
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    dtype = u.dtype
    rb = max(1, min(nb, BLOCK // N))   # rows per block: a block's temporaries stay in cache
    m = rb * N
    A, OA, R, OR = tile_rows(alpha, rb), tile_rows(oma, rb), tile_rows(rho, rb), tile_rows(omr, rb)
    IOA = reciprocal(OA)
    gu_n = zeros64(n, dtype)           # dL/du_{t+1}
    gb_n = zeros64(n, dtype)           # dL/db_{t+1}
    gs_c = zeros64(n, dtype)           # terms of dL/ds_t produced by step t+1
    gI = zeros64(n, dtype)             # dL/dI_t of the chunk (after the step: dL/dI_{t+1})
    ga = zeros64(m, dtype)             # dL/dalpha and dL/drho, per position in a block
    gr = zeros64(m, dtype)
    rflat = zeros64(n, dtype)          # W_rec^T dL/dI_{t+1}
    x = empty64(m, dtype)
    sg = empty64(m, dtype)
    ebf = empty64(n, dtype)            # the external gradient, when formed here
    xwork = scatter_work(dWinT.shape[1], nb, dtype)
    lwork = scatter_work(dWrecT.shape[1], nb, dtype)
    srows = np.empty(n + 1, np.int64)   # the row of each entry of a slot (``dense_slot``)
    dWin_l, db_l, dWrec_l = private_rows(dWinT), private_copy(db), private_rows(dWrecT)
    fu = dtype.type(ext_on_u)
    fs = dtype.type(1 - ext_on_u)
    segb = zeros64((CHECK + 1) * n, dtype)  # b of slots k*CHECK .. k*CHECK + CHECK (flat)
    segs = empty64(CHECK * n, dtype)        # s of slots k*CHECK .. k*CHECK + CHECK - 1
    # flat views, made once (see alif_forward)
    uf, cf, gef = u.reshape(-1), bchk.reshape(-1), g_ext.reshape(-1)
    Wif, Wrf, Wef = Win.reshape(-1), Wrec.reshape(-1), W_ext.reshape(-1)
    ge = ebf if ext_prod else gef       # the external gradient's array (``external_grad``)
    dWin_f, dWrec_f, db_f, gxf = dWin_l.reshape(-1), dWrec_l.reshape(-1), db_l[0], gx.reshape(-1)
    for t in range(T - 1, -1, -1):
        k0s = (t // CHECK) * CHECK
        if t == T - 1 or t % CHECK == CHECK - 1:       # rebuild the span [k0s, t + 1]
            if beta != 0:                  # (LIF: b never enters, and stays 0 here)
                vcopy(segb, 0, cf, t // CHECK * B * N + off, n)
            for j in range(t + 1 - k0s):
                dense_slot(k0s + j, lo, hi, B, N, lp0, lp1, lcol, lval, segs, j * n, srows)
                if beta == 0:
                    continue
                for k0 in range(0, nb, rb):
                    q0, q1 = k0 * N, min(nb, k0 + rb) * N
                    adapt_rows(q1 - q0, segb, j * n + q0, segs, j * n + q0, R, OR,
                                (j + 1) * n + q0)
        if rec and t + 1 < T:
            matmul(gI, 0, Wrf, rflat, 0, nb, N, N)  # W_rec^T dL/dI_{t+1}, added in the rows below
        if t >= 2:                  # u_{t-2}'s rows, read two steps on, from memory (the forward
            for q in range(0, n, LANES):        # streamed them there; docs/benchmarks.md)
                prefetch(uf, (t - 2) * B * N + off + q)
        oe = external_grad(t, lo, hi, g_ext, gef, Wef, ext_prod, ebf)
        j = t - k0s
        for k0 in range(0, nb, rb):
            q0, q1 = k0 * N, min(nb, k0 + rb) * N
            mq, ou0, ou1 = q1 - q0, t * B * N + off + q0, (t + 1) * B * N + off + q0
            ob0, ob1 = j * n + q0, (j + 1) * n + q0
            for q in range(mq):     # (left to LLVM's vectoriser: a Vec16 form rounds differently)
                x[q] = spike_argument(at(uf, ou1 + q), at(segb, ob1 + q), b_j0, beta)
            surrogate_rows(x, sg, mq, sp)
            if beta == 0:
                lif_rows_backward(mq, ge, oe + q0, fs, fu, sg, uf, ou1, ou0, segs, ob0, segb,
                                   ob1, A, OA, IOA, beta, b_j0, dt, q0, gs_c, rflat, gu_n, gI, ga)
            else:
                alif_rows_backward(mq, ge, oe + q0, fs, fu, sg, uf, ou1, ou0, segs, ob0, segb,
                                    ob1, ob0, A, OA, IOA, R, OR, beta, b_j0, dt, q0, gs_c, rflat,
                                    gu_n, gb_n, gI, ga, gr)
        weight_grads(0, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWin_f, db_f, rec, lp0, lp1,
                      lcol, lval, dWrec_f, xwork, lwork)
        input_grad(t, lo, hi, gI, Wif, gx, gxf, gx_mode)
    add_neuron_sums(c, galpha, ga, rb, N)
    add_neuron_sums(c, grho, gr, rb, N)
    add_private_rows(c, dWinT, dWin_l)
    db[c] += db_l[0]
    add_private_rows(c, dWrecT, dWrec_l)


@njit(**_opts)
def integrator_forward(c, lo, hi, xs, w, k, u):
    """u_t = alpha u_{t-1} + (1 - alpha) I_t, I_t = W_in x_t + bias; u (T+1,B,N)."""
    xp0, xp1, xcol, xval = xs
    WinT, bias = w.W_in_T, w.bias
    alpha, oma = k.alpha, k.oma
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA = tile_rows(alpha, nb), tile_rows(oma, nb)
    Ib = empty64(n, u.dtype)
    uf, Wi = u.reshape(-1), WinT.reshape(-1)
    for t in range(T):
        input_current(t, lo, hi, B, N, xp0, xp1, xcol, xval, Wi, bias, Wi, False, xp0, xp1,
                       xcol, xval, Ib)
        integrator_rows(n, uf, t * B * N + off, (t + 1) * B * N + off, Ib, A, OA)


@njit(**_opts)
def integrator_backward(c, lo, hi, gu_ext, u, xs, w, gx, gx_mode, k, acc):
    """Backward of the integrator, with its weight gradients and dL/dx fused in (gu_ext: dL/du_t
    of the readout; the arguments as in ``alif_backward``)."""
    xp0, xp1, xcol, xval = xs
    Win = w.W_in
    alpha, oma = k.alpha, k.oma
    dWinT, db, galpha = acc.W_in_T, acc.bias, acc.alpha
    T = u.shape[0] - 1
    B, N = u.shape[1], u.shape[2]
    nb = hi - lo
    n, off = nb * N, lo * N
    A, OA = tile_rows(alpha, nb), tile_rows(oma, nb)
    IOA = reciprocal(OA)
    gu_n = zeros64(n, u.dtype)
    gI = zeros64(n, u.dtype)
    ga = zeros64(n, u.dtype)
    xwork = scatter_work(dWinT.shape[1], nb, u.dtype)
    dWin_l, db_l = private_rows(dWinT), private_copy(db)
    uf, gef, dWin_f, db_f, gxf, Wif = (u.reshape(-1), gu_ext.reshape(-1), dWin_l.reshape(-1),
                                       db_l[0], gx.reshape(-1), Win.reshape(-1))
    for t in range(T - 1, -1, -1):
        integrator_rows_backward(n, gef, t * B * N + off, uf, (t + 1) * B * N + off,
                                  t * B * N + off, A, OA, IOA, gu_n, gI, ga)
        weight_grads(0, t, lo, hi, B, N, gI, xp0, xp1, xcol, xval, dWin_f, db_f, False, xp0, xp1,
                      xcol, xval, dWin_f, xwork, xwork)
        input_grad(t, lo, hi, gI, Wif, gx, gxf, gx_mode)
    add_neuron_sums(c, galpha, ga, nb, N)
    add_private_rows(c, dWinT, dWin_l)
    db[c] += db_l[0]

