"""Slow, plain-NumPy reference of the spiking network: forward pass, loss and hand-derived BPTT.

This module is deliberately simple: a Python loop over time steps, vectorised only over the
batch and neuron axes, every quantity stored in Python lists. It exists to check the fast Numba
kernels, so it is written straight from the model equations, without cleverness.

Model, per layer, per neuron, step t = 0..T-1 (``alpha = exp(-dt/tau_m)``,
``rho = exp(-dt/tau_adp)``):

Spiking layer (``rec``, ``dense``)::

    I_t = x_t W_in^T + b_in [+ s_{t-1} W_rec^T + b_rec]      (rec only in brackets)
    b_t = rho b_{t-1} + (1 - rho) s_{t-1}
    B_t = b_j0 + beta b_t
    u_t = alpha u_{t-1} + (1 - alpha) I_t - B_t s_{t-1} dt
    s_t = H(u_t - B_t)            (H(x) = 1 if x > 0 else 0)   or sigmoid(k (u_t - B_t)) ("smooth")

Integrator layer (last layer only)::

    I_t = x_t W_in^T + b_in
    u_t = alpha u_{t-1} + (1 - alpha) I_t

Layer 0 reads the input x_t, layer l reads the spikes s_t of layer l-1 at the same step t.

Backward pass (adjoints, written ``d<q> = dL/d<q>``, total derivatives through the future), for a
spiking layer, walking t = T-1 .. 0 with the "carried" terms coming from step t+1::

    ds_t  = dL_loss/ds_t + (next layer) dI'_t W'_in
            + (1 - rho) db_{t+1} - dt B_{t+1} du_{t+1} + [dI_{t+1} W_rec]
    dx_t  = ds_t * f(x_t)               (surrogate or exact sigmoid derivative; x_t = u_t - B_t)
    du_t  = dx_t + dL_loss/du_t + alpha du_{t+1}
    dB_t  = -dx_t - dt s_{t-1} du_t
    db_t  = beta dB_t + rho db_{t+1}
    dI_t  = (1 - alpha) du_t
    dW_in += dI_t^T x_t, db_in += sum_b dI_t, dW_rec += dI_t^T s_{t-1}, db_rec += sum_b dI_t
    dalpha += sum_b du_t (u_{t-1} - I_t),   drho += sum_b db_t (b_{t-1} - s_{t-1})
    dtau_m = dalpha * alpha dt / tau_m^2,   dtau_adp = drho * rho dt / tau_adp^2

The initial state (u_{-1}, s_{-1}, b_{-1}) is a constant: the adjoints carried past t = 0 are
dropped. Gradients are returned for every parameter, whatever ``train_tau_m``/``train_tau_adp``
say (a caller that freezes a tau simply ignores its gradient).
"""
from __future__ import annotations

import math

import numpy as np

from spikesim.model.config import NetworkConfig, param_names, param_shapes

__all__ = ["forward", "reference_loss", "reference_loss_and_grads", "surrogate_derivative",
           "default_init_state"]


# ----------------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------------

def _normal_pdf(x, mu, sd):
    return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (math.sqrt(2.0 * math.pi) * sd)


def _sigmoid(z):
    # Numerically stable logistic function, elementwise.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _softmax(z):
    """Softmax over the last axis."""
    zmax = np.max(z, axis=-1, keepdims=True)
    e = np.exp(z - zmax)
    return e / np.sum(e, axis=-1, keepdims=True)


def _logsumexp(z):
    """log(sum(exp(z))) over the last axis."""
    zmax = np.max(z, axis=-1)
    return zmax + np.log(np.sum(np.exp(z - zmax[..., None]), axis=-1))


def _spike(x, sur):
    """Forward spike function of x = u - B."""
    if sur.name == "smooth":
        return _sigmoid(sur.k * x)
    return (x > 0).astype(x.dtype)


def surrogate_derivative(x, sur):
    """The function that replaces dH/dx in the backward pass (docs/model.md section 2)."""
    name = sur.name
    if name == "smooth":
        sig = _sigmoid(sur.k * x)
        return sur.k * sig * (1.0 - sig)
    if name == "gaussian":
        f = _normal_pdf(x, 0.0, sur.sigma)
    elif name == "multi_gaussian":
        f = ((1.0 + sur.h) * _normal_pdf(x, 0.0, sur.sigma)
             - sur.h * _normal_pdf(x, sur.sigma, sur.scale * sur.sigma)
             - sur.h * _normal_pdf(x, -sur.sigma, sur.scale * sur.sigma))
    elif name == "linear":
        f = np.maximum(0.0, 1.0 - np.abs(x))
    elif name == "slayer":
        f = np.exp(-5.0 * np.abs(x))
    else:  # pragma: no cover - SurrogateConfig validates names
        raise ValueError(f"unknown surrogate {name!r}")
    return sur.gamma * f


def _dtype(params, x):
    return np.result_type(np.asarray(x).dtype, *[np.asarray(v).dtype for v in params.values()])


def default_init_state(cfg: NetworkConfig, batch: int, dtype=np.float64) -> dict:
    """u = 0, s = 0, b = b_j0 for every layer (b and s unused by the integrator)."""
    state = {}
    for layer in cfg.layers:
        shape = (batch, layer.size)
        state[layer.name] = (np.zeros(shape, dtype), np.zeros(shape, dtype),
                             np.full(shape, layer.b_j0, dtype))
    return state


def _check_params(cfg, params):
    shapes = param_shapes(cfg)
    for name in param_names(cfg):
        if name not in params:
            raise KeyError(f"missing parameter {name!r}")
        if tuple(np.shape(params[name])) != tuple(shapes[name]):
            raise ValueError(f"parameter {name!r} has shape {np.shape(params[name])}, "
                             f"expected {shapes[name]}")


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------

def _forward_lists(cfg, params, x, init_state):
    """Run the network; return, per layer, Python lists over time of every needed quantity.

    Each history list ``u``, ``s``, ``b`` has T+1 entries: index 0 is the initial state
    (u_{-1}, s_{-1}, b_{-1}), index t+1 is the value at step t. ``I`` and ``B`` have T entries.
    ``inp`` holds the layer's input at each step (x_t for layer 0, the previous layer's s_t).
    """
    _check_params(cfg, params)
    dtype = _dtype(params, x)
    x = np.asarray(x, dtype=dtype)
    if x.ndim != 3 or x.shape[2] != cfg.n_in:
        raise ValueError(f"x must have shape (B, T, {cfg.n_in}), got {x.shape}")
    batch, T, _ = x.shape
    defaults = default_init_state(cfg, batch, dtype)
    init_state = {} if init_state is None else init_state

    # The input of layer 0 at every step.
    inputs = [x[:, t, :] for t in range(T)]
    records = []
    for layer in cfg.layers:
        n = layer.name

        def p(suffix, n=n):
            return np.asarray(params[f"{n}.{suffix}"], dtype=dtype)

        W_in, b_in = p("W_in"), p("b_in")
        alpha = np.exp(-layer.dt / p("tau_m"))
        u0, s0, b0 = defaults[n]
        if n in init_state:
            given = init_state[n]
            u0 = np.asarray(given[0], dtype=dtype).copy()
            if layer.spiking:
                s0 = np.asarray(given[1], dtype=dtype).copy()
                b0 = np.asarray(given[2], dtype=dtype).copy()
        rec = {"layer": layer, "inp": inputs, "alpha": alpha, "u": [u0], "I": []}

        if not layer.spiking:
            for t in range(T):
                I_t = inputs[t] @ W_in.T + b_in
                u_t = alpha * rec["u"][-1] + (1.0 - alpha) * I_t
                rec["I"].append(I_t)
                rec["u"].append(u_t)
            records.append(rec)
            inputs = None  # an integrator is always the last layer
            continue

        rho = np.exp(-layer.dt / p("tau_adp"))
        if layer.recurrent:
            W_rec, b_rec = p("W_rec"), p("b_rec")
        rec.update({"rho": rho, "s": [s0], "b": [b0], "B": [], "x": []})
        for t in range(T):
            u_prev, s_prev, b_prev = rec["u"][-1], rec["s"][-1], rec["b"][-1]
            I_t = inputs[t] @ W_in.T + b_in
            if layer.recurrent:
                I_t = I_t + s_prev @ W_rec.T + b_rec
            b_t = rho * b_prev + (1.0 - rho) * s_prev
            B_t = layer.b_j0 + layer.beta * b_t
            u_t = alpha * u_prev + (1.0 - alpha) * I_t - B_t * s_prev * layer.dt
            x_t = u_t - B_t
            s_t = _spike(x_t, layer.surrogate)
            rec["I"].append(I_t)
            rec["b"].append(b_t)
            rec["B"].append(B_t)
            rec["u"].append(u_t)
            rec["x"].append(x_t)
            rec["s"].append(s_t)
        records.append(rec)
        inputs = rec["s"][1:]
    return records


def forward(cfg: NetworkConfig, params: dict, x, init_state=None) -> dict:
    """Forward pass.

    Returns ``{layer_name: {"u", "s", "b", "thr", "I"}}`` with (T, B, N) arrays of the membrane
    u_t, spikes s_t, adaptation trace b_t, threshold B_t and input current I_t. For the
    integrator ``s``, ``b`` and ``thr`` are None.
    """
    records = _forward_lists(cfg, params, x, init_state)
    out = {}
    for rec in records:
        layer = rec["layer"]
        d = {"u": np.stack(rec["u"][1:]), "I": np.stack(rec["I"]), "s": None, "b": None,
             "thr": None}
        if layer.spiking:
            d["s"] = np.stack(rec["s"][1:])
            d["b"] = np.stack(rec["b"][1:])
            d["thr"] = np.stack(rec["B"])
        out[layer.name] = d
    return out


# ----------------------------------------------------------------------------------------------
# loss and its gradient w.r.t. the readout
# ----------------------------------------------------------------------------------------------

def _loss_and_readout_grad(cfg, last, labels, carry, dtype):
    """Loss and dL/d(readout_t) for t = 0..T-1 (list of (B, C) arrays; zero before ``start``).

    ``last`` is the record of the last layer; the readout is its membrane u_t or spikes s_t.
    """
    kind, start = cfg.loss.kind, cfg.loss.start
    if cfg.loss.readout == "spike":
        readout = last["s"][1:]
    else:
        readout = last["u"][1:]
    T = len(readout)
    batch, C = readout[0].shape
    labels = np.asarray(labels)
    grads = [np.zeros((batch, C), dtype) for _ in range(T)]
    rows = np.arange(batch)

    if kind == "nll_per_step":
        if labels.shape != (batch, T):
            raise ValueError(f"nll_per_step labels must have shape (B, T) = {(batch, T)}, "
                             f"got {labels.shape}")
        loss = 0.0
        for t in range(start, T):
            lab = labels[:, t].astype(np.int64)
            mask = lab >= 0
            safe = np.where(mask, lab, 0)
            logp = readout[t] - _logsumexp(readout[t])[:, None]      # log_softmax
            loss += float(np.sum(np.where(mask, -logp[rows, safe], 0.0)))
            g = _softmax(readout[t])
            g[rows, safe] -= 1.0
            grads[t] = np.where(mask[:, None], g, 0.0).astype(dtype) / batch
        return loss / batch, grads

    if labels.shape != (batch,):
        raise ValueError(f"{kind} labels must have shape (B,) = {(batch,)}, got {labels.shape}")
    y = labels.astype(np.int64)

    if kind == "ce_sum_softmax":
        probs = {t: _softmax(readout[t]) for t in range(start, T)}
        z = np.zeros((batch, C), dtype) if carry is None else np.asarray(carry, dtype).copy()
        for t in range(start, T):
            z = z + probs[t]
    elif kind == "ce_sum_spike":
        z = np.zeros((batch, C), dtype) if carry is None else np.asarray(carry, dtype).copy()
        for t in range(start, T):
            z = z + readout[t]
    else:  # pragma: no cover
        raise ValueError(kind)

    loss = float(np.sum(_logsumexp(z) - z[rows, y])) / batch
    dz = _softmax(z)
    dz[rows, y] -= 1.0
    dz = dz / batch
    for t in range(start, T):
        if kind == "ce_sum_spike":
            grads[t] = dz.copy()
        else:
            # d softmax(u)_j / d u_i = p_j (delta_ij - p_i)  =>  du_i = p_i (dz_i - sum_j p_j dz_j)
            p = probs[t]
            grads[t] = p * (dz - np.sum(p * dz, axis=1, keepdims=True))
    return loss, grads


def reference_loss(cfg: NetworkConfig, params: dict, x, labels, init_state=None,
                   carry=None) -> float:
    """The loss only (used by finite differences)."""
    records = _forward_lists(cfg, params, x, init_state)
    loss, _ = _loss_and_readout_grad(cfg, records[-1], labels, carry, _dtype(params, x))
    return loss


# ----------------------------------------------------------------------------------------------
# backward through time
# ----------------------------------------------------------------------------------------------

def reference_loss_and_grads(cfg: NetworkConfig, params: dict, x, labels, init_state=None,
                             carry=None):
    """Loss and gradients of the loss w.r.t. every parameter (dict name -> array like params)."""
    dtype = _dtype(params, x)
    records = _forward_lists(cfg, params, x, init_state)
    T = len(records[0]["I"])
    loss, readout_grad = _loss_and_readout_grad(cfg, records[-1], labels, carry, dtype)
    zeros = lambda a: [np.zeros_like(a[0]) for _ in range(T)]  # noqa: E731

    # Gradient arriving at each layer's output, per step: dL/du_t (membrane readout, last layer
    # only) and dL/ds_t (spike readout, or the next layer's input).
    last = records[-1]
    dL_du = zeros(last["u"])
    dL_ds = None
    if cfg.loss.readout == "mem":
        dL_du = readout_grad
    else:
        dL_ds = readout_grad

    grads = {}
    for li in range(len(records) - 1, -1, -1):
        rec = records[li]
        layer = rec["layer"]
        n, dt = layer.name, layer.dt
        W_in = np.asarray(params[f"{n}.W_in"], dtype)
        alpha = rec["alpha"]
        inp = rec["inp"]
        gW_in = np.zeros_like(W_in)
        gb_in = np.zeros(W_in.shape[0], dtype)
        galpha = np.zeros(W_in.shape[0], dtype)
        d_inp = [None] * T     # dL/d(input of this layer)_t, handed to the previous layer

        if not layer.spiking:
            du_next = np.zeros_like(rec["u"][0])          # dL/du_{t+1}
            for t in range(T - 1, -1, -1):
                du = dL_du[t] + alpha * du_next
                dI = (1.0 - alpha) * du
                gW_in += dI.T @ inp[t]
                gb_in += dI.sum(axis=0)
                galpha += np.sum(du * (rec["u"][t] - rec["I"][t]), axis=0)   # u[t] is u_{t-1}
                d_inp[t] = dI @ W_in
                du_next = du
        else:
            rho = rec["rho"]
            sur = layer.surrogate
            if layer.recurrent:
                W_rec = np.asarray(params[f"{n}.W_rec"], dtype)
                gW_rec = np.zeros_like(W_rec)
                gb_rec = np.zeros(W_rec.shape[0], dtype)
            grho = np.zeros(W_in.shape[0], dtype)
            if dL_ds is None:
                dL_ds = zeros(rec["s"])
            if li != len(records) - 1 or cfg.loss.readout == "spike":
                dL_du = zeros(rec["u"])       # only the last layer's membrane enters the loss
            # Adjoints carried from step t+1 (zero after the last step).
            du_next = np.zeros_like(rec["u"][0])
            db_next = np.zeros_like(rec["u"][0])
            dI_next = np.zeros_like(rec["u"][0])
            B_next = np.zeros_like(rec["u"][0])
            for t in range(T - 1, -1, -1):
                u_prev, s_prev, b_prev = rec["u"][t], rec["s"][t], rec["b"][t]  # values at t-1
                # s_t feeds: the loss / next layer at t, b_{t+1}, the reset of u_{t+1},
                # and (rec) I_{t+1} through W_rec.
                ds = dL_ds[t] + (1.0 - rho) * db_next - dt * B_next * du_next
                if layer.recurrent:
                    ds = ds + dI_next @ W_rec
                dx = ds * surrogate_derivative(rec["x"][t], sur)          # x_t = u_t - B_t
                # u_t feeds: x_t, u_{t+1} (alpha), and the loss if it reads this membrane.
                du = dx + dL_du[t] + alpha * du_next
                # B_t feeds: x_t (-1) and the reset term -B_t s_{t-1} dt of u_t.
                dB = -dx - dt * s_prev * du
                # b_t feeds: B_t (beta) and b_{t+1} (rho).
                db = layer.beta * dB + rho * db_next
                dI = (1.0 - alpha) * du
                gW_in += dI.T @ inp[t]
                gb_in += dI.sum(axis=0)
                if layer.recurrent:
                    gW_rec += dI.T @ s_prev
                    gb_rec += dI.sum(axis=0)
                galpha += np.sum(du * (u_prev - rec["I"][t]), axis=0)
                grho += np.sum(db * (b_prev - s_prev), axis=0)
                d_inp[t] = dI @ W_in
                du_next, db_next, dI_next, B_next = du, db, dI, rec["B"][t]
            tau_adp = np.asarray(params[f"{n}.tau_adp"], dtype)
            grads[f"{n}.tau_adp"] = grho * rho * dt / tau_adp ** 2
            if layer.recurrent:
                grads[f"{n}.W_rec"] = gW_rec
                grads[f"{n}.b_rec"] = gb_rec

        tau_m = np.asarray(params[f"{n}.tau_m"], dtype)
        grads[f"{n}.W_in"] = gW_in
        grads[f"{n}.b_in"] = gb_in
        grads[f"{n}.tau_m"] = galpha * alpha * dt / tau_m ** 2
        # The previous layer's spikes s_t are this layer's input at step t.
        dL_ds = d_inp
        dL_du = None

    return loss, {name: grads[name] for name in param_names(cfg)}
