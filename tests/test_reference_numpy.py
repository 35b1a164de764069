"""The NumPy reference (validation/reference_numpy.py) must itself be proven: its hand-derived
BPTT gradients are checked against central finite differences of its own loss, in float64, on
the fully differentiable "smooth" mode."""
from __future__ import annotations

import numpy as np
import pytest

from spikesim.model.config import (
    LayerConfig,
    LossConfig,
    NetworkConfig,
    SurrogateConfig,
    param_names,
    param_shapes,
)
from validation.reference_numpy import (
    forward,
    reference_loss,
    reference_loss_and_grads,
    surrogate_derivative,
)

B = 3
SMOOTH = dict(name="smooth", k=1.5)


def make_cfg(n_in, layers, loss, start=0):
    return NetworkConfig(n_in=n_in, layers=[LayerConfig(**l) for l in layers],
                         loss=LossConfig(kind=loss, start=start))


def make_params(cfg, rng, w_scale=1.0):
    """Random parameters with taus in [2, 10] and weights large enough to keep neurons active."""
    params = {}
    for name, shape in param_shapes(cfg).items():
        kind = name.rsplit(".", 1)[1]
        if kind in ("tau_m", "tau_adp"):
            params[name] = rng.uniform(2.0, 10.0, size=shape)
        elif kind in ("W_in", "W_rec"):
            fan_in = shape[1]
            params[name] = w_scale * rng.normal(size=shape) * 2.0 / np.sqrt(fan_in)
        else:
            params[name] = rng.normal(size=shape) * 0.5
    return params


def make_init_state(cfg, rng):
    state = {}
    for layer in cfg.layers:
        shape = (B, layer.size)
        state[layer.name] = (rng.normal(size=shape) * 0.5,
                             rng.uniform(0.0, 1.0, size=shape),
                             layer.b_j0 + rng.uniform(0.0, 0.5, size=shape))
    return state


def make_labels(cfg, rng, T, mask_frac=0.0):
    C = cfg.n_out
    if cfg.loss.kind == "nll_per_step":
        labels = rng.integers(0, C, size=(B, T))
        if mask_frac:
            labels[rng.uniform(size=(B, T)) < mask_frac] = -1
        return labels
    return rng.integers(0, C, size=(B,))


def finite_difference_grads(cfg, params, x, labels, init_state, carry, eps=2e-4):
    """Fourth-order central differences (truncation O(eps^4) is negligible at this eps,
    roundoff ~1e-15 * |L| / eps)."""
    fd = {}
    for name in param_names(cfg):
        g = np.zeros_like(params[name])
        for idx in np.ndindex(params[name].shape):
            vals = []
            for step in (-2, -1, 1, 2):
                p = {k: v.copy() for k, v in params.items()}
                p[name][idx] += step * eps
                vals.append(reference_loss(cfg, p, x, labels, init_state, carry))
            lm2, lm1, lp1, lp2 = vals
            g[idx] = (lm2 - 8.0 * lm1 + 8.0 * lp1 - lp2) / (12.0 * eps)
        fd[name] = g
    return fd


def rel_err(a, b):
    return np.abs(a - b) / np.maximum(np.maximum(np.abs(a), np.abs(b)), 1e-8)


def check_against_fd(cfg, T, seed, mask_frac=0.0, with_carry=False, w_scale=1.0):
    rng = np.random.default_rng(seed)
    params = make_params(cfg, rng, w_scale)
    x = rng.normal(size=(B, T, cfg.n_in))
    init_state = make_init_state(cfg, rng)
    labels = make_labels(cfg, rng, T, mask_frac)
    carry = rng.normal(size=(B, cfg.n_out)) if with_carry else None

    loss, grads = reference_loss_and_grads(cfg, params, x, labels, init_state, carry)
    assert np.isfinite(loss) and loss > 0
    assert loss == pytest.approx(reference_loss(cfg, params, x, labels, init_state, carry),
                                 rel=0, abs=0)
    assert set(grads) == set(param_names(cfg))
    fd = finite_difference_grads(cfg, params, x, labels, init_state, carry)

    all_abs = np.concatenate([np.abs(fd[n]).ravel() for n in fd])
    scale = np.median(all_abs)
    for name in param_names(cfg):
        g, f = grads[name], fd[name]
        assert g.shape == params[name].shape and g.dtype == np.float64, name
        layer = next(l for l in cfg.layers if name.startswith(l.name + "."))
        if name.endswith(".tau_adp") and layer.beta == 0.0:
            # LIF: b_t never reaches the output, so the gradient is exactly zero and the finite
            # difference is pure roundoff; a relative error would be meaningless here.
            assert np.all(g == 0.0) and np.max(np.abs(f)) < 1e-9, (name, g, f)
            continue
        # The metric is only meaningful if the gradients are well above the FD noise floor
        # (~1e-11 absolute here, measured max relative error ~1e-7): every element must be
        # informative, no element (near) zero.
        assert np.min(np.abs(f)) > 1e-6, (name, np.min(np.abs(f)))
        err = rel_err(f, g)
        assert np.max(err) < 1e-5, (name, np.max(err), f, g)
    # The check must be able to fail: a 1e-4 relative perturbation of any gradient is caught.
    for name in param_names(cfg):
        if np.any(grads[name] != 0):
            assert np.max(rel_err(fd[name], grads[name] * (1 + 1e-4))) > 1e-5
    return params, grads, fd, scale


def rec_alif(size, **kw):
    d = dict(size=size, kind="rec", beta=1.8, b_j0=0.1, surrogate=SMOOTH)
    d.update(kw)
    return d


def dense_alif(size, **kw):
    d = dict(size=size, kind="dense", beta=1.5, b_j0=0.2, surrogate=SMOOTH)
    d.update(kw)
    return d


def integ(size, **kw):
    d = dict(size=size, kind="integrator")
    d.update(kw)
    return d


# (a) one rec ALIF layer + integrator with each membrane loss; rec -> dense ALIF for spikes.
@pytest.mark.parametrize("loss,start", [("nll_per_step", 0), ("nll_per_step", 3),
                                        ("ce_sum_softmax", 0), ("ce_sum_softmax", 2)])
def test_rec_alif_integrator_membrane_losses(loss, start):
    cfg = make_cfg(4, [rec_alif(5, dt=0.7), integ(3, dt=1.3)], loss, start)
    check_against_fd(cfg, T=9, seed=1 + start, mask_frac=0.2 if loss == "nll_per_step" else 0)


@pytest.mark.parametrize("start,with_carry", [(0, False), (2, True)])
def test_rec_to_dense_alif_spike_loss(start, with_carry):
    cfg = make_cfg(4, [rec_alif(5), dense_alif(3, dt=1.5)], "ce_sum_spike", start)
    check_against_fd(cfg, T=8, seed=11 + start, with_carry=with_carry)


# (b) rec LIF (beta = 0) + dense ALIF, per-step NLL on the dense layer's membrane, masked labels.
def test_rec_lif_dense_alif_nll_masked():
    cfg = make_cfg(3, [rec_alif(4, beta=0.0), dense_alif(3)], "nll_per_step", 1)
    check_against_fd(cfg, T=10, seed=21, mask_frac=0.3)


# (c) rec -> rec -> integrator.
@pytest.mark.parametrize("loss", ["nll_per_step", "ce_sum_softmax"])
def test_rec_rec_integrator(loss):
    cfg = make_cfg(3, [rec_alif(4, dt=0.8), rec_alif(5, beta=1.2, b_j0=0.05, dt=1.2),
                       integ(3)], loss)
    check_against_fd(cfg, T=12, seed=31, mask_frac=0.2 if loss == "nll_per_step" else 0)


def test_masked_steps_and_start_do_not_contribute():
    cfg = make_cfg(3, [rec_alif(4), integ(3)], "nll_per_step", 2)
    rng = np.random.default_rng(5)
    T = 7
    params = make_params(cfg, rng)
    x = rng.normal(size=(B, T, 3))
    labels = make_labels(cfg, rng, T)
    labels_masked = labels.copy()
    labels_masked[:, :2] = -1          # before start: irrelevant anyway
    assert reference_loss(cfg, params, x, labels) == reference_loss(cfg, params, x, labels_masked)
    labels_all = -np.ones_like(labels)
    loss, grads = reference_loss_and_grads(cfg, params, x, labels_all)
    assert loss == 0.0 and all(np.all(g == 0) for g in grads.values())


def test_forward_default_state_and_shapes():
    cfg = make_cfg(3, [rec_alif(4), dense_alif(5), integ(2)], "nll_per_step")
    rng = np.random.default_rng(7)
    T = 6
    params = make_params(cfg, rng)
    x = rng.normal(size=(B, T, 3))
    out = forward(cfg, params, x)
    for layer in cfg.layers:
        assert out[layer.name]["u"].shape == (T, B, layer.size)
    assert out[cfg.layers[-1].name]["s"] is None
    # Default initial state (u = 0, s = 0, b = b_j0) equals passing it explicitly.
    explicit = {l.name: (np.zeros((B, l.size)), np.zeros((B, l.size)), np.full((B, l.size), l.b_j0))
                for l in cfg.layers}
    out2 = forward(cfg, params, x, explicit)
    for l in cfg.layers:
        np.testing.assert_array_equal(out[l.name]["u"], out2[l.name]["u"])
    # Step 0 by hand for the first (recurrent) layer, with s_{-1} = 0, b_{-1} = b_j0.
    l0 = cfg.layers[0]
    alpha = np.exp(-l0.dt / params["layer0.tau_m"])
    I0 = x[:, 0] @ params["layer0.W_in"].T + params["layer0.b_in"] + params["layer0.b_rec"]
    rho = np.exp(-l0.dt / params["layer0.tau_adp"])
    B0 = l0.b_j0 + l0.beta * (rho * l0.b_j0)          # b_0 = rho b_{-1} + (1 - rho) s_{-1}
    np.testing.assert_allclose(out["layer0"]["thr"][0], np.broadcast_to(B0, (B, 4)), rtol=1e-14)
    u0 = (1 - alpha) * I0
    np.testing.assert_allclose(out["layer0"]["u"][0], u0, rtol=1e-14)
    np.testing.assert_allclose(out["layer0"]["s"][0], 1 / (1 + np.exp(-1.5 * (u0 - B0))),
                               rtol=1e-14)


@pytest.mark.parametrize("surrogate", ["multi_gaussian", "gaussian", "linear", "slayer"])
def test_surrogate_mode_finite_and_binary(surrogate):
    sur = dict(name=surrogate, gamma=0.5, sigma=0.5)
    cfg = make_cfg(4, [rec_alif(6, surrogate=sur), dense_alif(5, surrogate=sur)],
                   "ce_sum_spike", 1)
    rng = np.random.default_rng(41)
    T = 12
    params = make_params(cfg, rng, w_scale=2.0)
    x = rng.normal(size=(B, T, 4))
    init_state = make_init_state(cfg, rng)
    init_state = {k: (u, (s > 0.5).astype(float), b) for k, (u, s, b) in init_state.items()}
    out = forward(cfg, params, x, init_state)
    for layer in cfg.layers:
        s = out[layer.name]["s"]
        assert set(np.unique(s)) <= {0.0, 1.0}
        assert 0 < s.mean() < 1, "neurons should spike sometimes, not always"
        # Strict threshold: s = 1 exactly where u > B.
        np.testing.assert_array_equal(
            s, (out[layer.name]["u"] > out[layer.name]["thr"]).astype(float))
    loss, grads = reference_loss_and_grads(cfg, params, x, rng.integers(0, 5, size=B), init_state)
    assert np.isfinite(loss)
    for name, g in grads.items():
        assert g.shape == params[name].shape and np.all(np.isfinite(g)), name
    assert any(np.any(g != 0) for g in grads.values())


def test_surrogate_functions():
    x = np.array([-2.0, -0.5, 0.0, 0.3, 1.5])
    g = SurrogateConfig(name="gaussian", gamma=0.5, sigma=0.5)
    np.testing.assert_allclose(surrogate_derivative(x, g),
                               0.5 * np.exp(-x ** 2 / (2 * 0.25)) / (np.sqrt(2 * np.pi) * 0.5))
    mg = SurrogateConfig(name="multi_gaussian", gamma=0.5, sigma=0.5, h=0.15, scale=6.0)
    n = lambda v, mu, sd: np.exp(-(v - mu) ** 2 / (2 * sd ** 2)) / (np.sqrt(2 * np.pi) * sd)  # noqa: E731
    np.testing.assert_allclose(surrogate_derivative(x, mg),
                               0.5 * (1.15 * n(x, 0, 0.5) - 0.15 * n(x, 0.5, 3.0)
                                      - 0.15 * n(x, -0.5, 3.0)))
    lin = SurrogateConfig(name="linear", gamma=0.5)
    np.testing.assert_allclose(surrogate_derivative(x, lin), 0.5 * np.array([0, 0.5, 1, 0.7, 0]))
    sl = SurrogateConfig(name="slayer", gamma=0.5)
    np.testing.assert_allclose(surrogate_derivative(x, sl), 0.5 * np.exp(-5 * np.abs(x)))
    sm = SurrogateConfig(name="smooth", k=4.0, gamma=0.5)
    sig = 1 / (1 + np.exp(-4 * x))
    np.testing.assert_allclose(surrogate_derivative(x, sm), 4 * sig * (1 - sig))
