"""The neuron equations of the adaptive LIF model (Yin, Corradi, Bohté 2020, 2021), forward and
backward, as scalar functions.

Each exists once and compiles for every target: the CPU kernels call them on scalars and on
16-lane vectors, the CUDA kernels on scalars. The kernels own the loops over time, batch and
neurons and call these per neuron and step. ``oma`` = 1 - alpha and ``omr`` = 1 - rho are
passed precomputed (alpha = exp(-dt / tau_m), rho = exp(-dt / tau_adp)).

Forward, one ALIF/LIF neuron (LIF: beta = 0):
    b_t = rho b_{t-1} + (1 - rho) s_{t-1}
    theta_t = b_j0 + beta b_t
    u_t = alpha u_{t-1} + (1 - alpha) I_t - theta_t s_{t-1} dt
    s_t = H(u_t - theta_t)

Backward, with g* the total derivative of the loss. ``gs`` arrives complete (next layer, own
recurrence, readout, and the step-(t+1) terms returned here as ``gs_prev``); ``sg`` is the
surrogate derivative at u_t - theta_t:
    gv     = gs * sg
    gu     = gu_ext + alpha gu_{t+1} + gv
    gtheta = -gv - s_{t-1} dt gu                 (theta_t enters the spike test and the reset)
    gb     = rho gb_{t+1} + beta gtheta
    gI     = (1 - alpha) gu
    galpha = gu (u_{t-1} - I_t)  = -gu (u_t - u_{t-1} + theta_t s_{t-1} dt) / (1 - alpha)
    grho   = gb (b_{t-1} - s_{t-1})
    gs_prev = (1 - rho) gb - theta_t dt gu       (s_{t-1} enters the trace and the reset)

The second form of galpha follows from the forward equation; it lets the backward pass work
without the input current I_t, which is then never stored (the kernels are bound by memory
traffic). It costs a relative rounding error of about eps * tau_m / dt per term.
"""
from numba import njit

from .primitives import exp, host_and_kernel


@host_and_kernel
def decay(tau, dt):
    """The tau-to-decay map: alpha = exp(-dt / tau_m), rho = exp(-dt / tau_adp). Also runs in the
    interpreter on parameter arrays (NumPy's exp)."""
    return exp(-dt / tau)


@host_and_kernel
def tau_gradient(g_decay, decay_value, tau, dt):
    """dL/dtau from dL/d(decay): d exp(-dt / tau) / dtau = exp(-dt / tau) dt / tau^2."""
    return g_decay * decay_value * dt / (tau * tau)


@njit(inline="always")
def threshold(b, b_j0, beta):
    """The adaptive threshold theta_t = b_j0 + beta b_t."""
    return b_j0 + beta * b


@njit(inline="always")
def spike_argument(u, b, b_j0, beta):
    """x_t = u_t - theta_t: the spike is H(x_t), its surrogate derivative is taken at x_t."""
    return u - threshold(b, b_j0, beta)


@njit(inline="always")
def adapt_step(b_prev, s_prev, rho, omr):
    """The adaptation trace: b_t = rho b_{t-1} + (1 - rho) s_{t-1}. Also used on its own by the
    backward pass, which recomputes b from checkpoints instead of storing it every step."""
    return rho * b_prev + omr * s_prev


@njit(inline="always")
def alif_step(u_prev, s_prev, b_prev, I, alpha, oma, rho, omr, beta, b_j0, dt):
    """One forward step of an ALIF neuron: returns (u_t, b_t, x_t = u_t - theta_t); the spike is
    s_t = H(x_t) (``spikesim.model.surrogates``)."""
    b = adapt_step(b_prev, s_prev, rho, omr)
    theta = threshold(b, b_j0, beta)
    u = alpha * u_prev + oma * I - theta * s_prev * dt
    return u, b, u - theta


@njit(inline="always")
def alif_step_backward(gs, sg, gu_ext, gu_next, gb_next, u, u_prev, s_prev, b, b_prev,
                       alpha, oma, ioma, rho, omr, beta, b_j0, dt):
    """One backward step, given sg = surrogate derivative at u_t - theta_t and
    ioma = 1 / (1 - alpha).
    Returns (gu, gb, gI, galpha, grho, gs_prev)."""
    theta = threshold(b, b_j0, beta)
    gv = gs * sg
    gu = gu_ext + alpha * gu_next + gv
    gtheta = -gv - s_prev * dt * gu
    gb = rho * gb_next + beta * gtheta
    gI = oma * gu
    galpha = -gu * (u - u_prev + theta * s_prev * dt) * ioma     # = gu (u_prev - I_t)
    grho = gb * (b_prev - s_prev)
    gs_prev = omr * gb - theta * dt * gu
    return gu, gb, gI, galpha, grho, gs_prev


@njit(inline="always")
def integrator_step(u_prev, I, alpha, oma):
    """Non-spiking leaky readout: u_t = alpha u_{t-1} + (1 - alpha) I_t."""
    return alpha * u_prev + oma * I


@njit(inline="always")
def integrator_step_backward(gu_ext, gu_next, u, u_prev, alpha, oma, ioma):
    """Returns (gu, gI, galpha) of the readout integrator (ioma = 1 / (1 - alpha))."""
    gu = gu_ext + alpha * gu_next
    return gu, oma * gu, -gu * (u - u_prev) * ioma         # galpha = gu (u_prev - I_t)
