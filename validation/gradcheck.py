"""Gradient validation of the Numba kernels.

1. Finite differences (float64, smooth mode: sigmoid spikes forward, their exact derivative
   backward, through the same kernels): every layer kind, every parameter kind, every loss,
   including a two-layer recurrent network with an ALIF output. Fourth-order central
   differences; relative error of a tensor = max|fd - g| / max(max|fd|, max|g|).
2. Reference: surrogate-mode gradients of the Numba kernels against the slow plain-NumPy
   implementation (``validation.reference_numpy``), float64, on each task topology at small
   batch, to 1e-12 relative.

``python -m validation.gradcheck [--quick] [--tol 1e-5]`` prints one row per check and exits
non-zero if any check fails. The test suite runs the reduced (``--quick``) form.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig, SurrogateConfig
from spikesim.network import Network, initial_state

REF_TOL = 1e-12


def _smooth(k=1.5):
    return SurrogateConfig(name="smooth", k=k)


def fd_cases(quick: bool = False) -> dict:
    """Small networks covering every layer kind, parameter kind and loss (smooth mode)."""
    sm = _smooth()
    taus = dict(tau_m=(4.0, 1.0), tau_adp=(6.0, 1.0))

    def rec(n, **kw):
        return LayerConfig(n, "rec", b_j0=0.1, surrogate=sm, **{**taus, **kw})

    def dense(n, **kw):
        return LayerConfig(n, "dense", b_j0=0.1, surrogate=sm, **{**taus, **kw})

    def integ(n):
        return LayerConfig(n, "integrator", tau_m=(3.0, 0.5))

    cases = {
        "rec ALIF -> integrator, ce_sum_softmax": ([rec(5), integ(3)], "ce_sum_softmax", 2),
        "rec LIF -> dense ALIF, nll_per_step (masked)":
            ([rec(5, beta=0.0), dense(3)], "nll_per_step", 1),
        "rec ALIF -> dense ALIF, ce_sum_spike": ([rec(4), dense(3, dt=0.7)], "ce_sum_spike", 0),
        "rec -> rec -> ALIF out, nll_per_step": ([rec(4), rec(4), dense(3)], "nll_per_step", 2),
        "rec -> rec -> integrator, ce_sum_softmax":
            ([rec(4), rec(3), integ(3)], "ce_sum_softmax", 3),
        "dense ALIF -> integrator, nll_per_step": ([dense(4), integ(3)], "nll_per_step", 0),
    }
    if quick:
        cases = {k: cases[k] for k in list(cases)[:2] + ["rec -> rec -> ALIF out, nll_per_step",
                                                        "rec ALIF -> dense ALIF, ce_sum_spike"]}
    return {name: NetworkConfig(n_in=3, layers=layers, loss=LossConfig(loss, start))
            for name, (layers, loss, start) in cases.items()}


def _problem(cfg: NetworkConfig, B: int, T: int, seed: int, mask=True):
    """Random float64 network, input, labels and a non-zero initial state."""
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in") or k.endswith("W_rec"):
            v *= 2.0
        elif k.endswith("b_in"):
            v += rng.normal(0, 0.3, v.shape)
    x = rng.random((B, T, cfg.n_in))
    if cfg.loss.kind == "nll_per_step":
        labels = rng.integers(0, cfg.n_out, (B, T))
        if mask:
            labels[rng.random((B, T)) < 0.2] = -1
    else:
        labels = rng.integers(0, cfg.n_out, B)
    state = initial_state(cfg, B, np.float64, "random", rng=rng, scale=0.5, spikes=True)
    return net, x, labels, state


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b)) / scale)


def finite_difference(net: Network, x, labels, state, eps: float = 2e-4) -> dict:
    """Fourth-order central differences of the loss w.r.t. every parameter element."""
    fd = {}

    def L():
        return net.loss(net.forward(x, state), labels).loss

    for k, v in net.params.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            o = v[idx]
            vals = []
            for h in (2 * eps, eps, -eps, -2 * eps):
                v[idx] = o + h
                vals.append(L())
            v[idx] = o
            g[idx] = (-vals[0] + 8 * vals[1] - 8 * vals[2] + vals[3]) / (12 * eps)
        fd[k] = g
    return fd


def check_fd(quick=False, tol=1e-5, out=print) -> list:
    rows = []
    for name, cfg in fd_cases(quick).items():
        net, x, labels, state = _problem(cfg, B=3, T=8 if quick else 12, seed=len(name))
        _, grads, _, _ = net.loss_and_grad(x, labels, state)
        fd = finite_difference(net, x, labels, state)
        for k in grads:
            e = rel_err(fd[k], grads[k])
            if not np.any(grads[k]) and np.max(np.abs(fd[k])) < 1e-9:
                e = 0.0     # a parameter with no effect (tau_adp of LIF): fd is pure roundoff
            rows.append(("fd", name, k, e, e <= tol))
            out(f"  {'ok ' if e <= tol else 'BAD'}  fd   {name:46s} {k:16s} {e:9.2e}")
    return rows


def task_topologies(quick=False) -> dict:
    """The task networks of docs/model.md section 5 at reduced width, with their surrogates."""
    mg, g = SurrogateConfig("multi_gaussian"), SurrogateConfig("gaussian")
    L = LayerConfig
    return {
        "ecg": NetworkConfig(4, [L(12, "rec", name="hidden", beta=0.0, b_j0=0.1, tau_adp=7.0,
                                   surrogate=mg),
                                 L(6, "dense", name="out", b_j0=0.1, tau_adp=100.0, surrogate=mg)],
                             LossConfig("nll_per_step", 10)),
        "ecg-icons": NetworkConfig(4, [L(12, "rec", name="hidden", beta=0.0, surrogate=g,
                                         train_tau_m=False),
                                       L(6, "dense", name="out", surrogate=g, train_tau_m=False)],
                                   LossConfig("nll_per_step", 10)),
        "shd": NetworkConfig(40, [L(12, "rec", tau_m=(20, 5), tau_adp=(150, 10), surrogate=mg),
                                  L(12, "rec", tau_m=(20, 5), tau_adp=(150, 10), surrogate=mg),
                                  L(5, "integrator", tau_m=(20, 5))],
                             LossConfig("ce_sum_softmax", 11)),
        "smnist-nmi": NetworkConfig(4, [L(8, "rec", w_rec_init="zeros", tau_adp=(200, 25),
                                          tau_m=(20, 5)),
                                        L(16, "rec", w_rec_init="zeros", tau_adp=(200, 25),
                                          tau_m=(20, 5)),
                                        L(16, "dense", tau_adp=(200, 25), tau_m=(20, 5)),
                                        L(10, "dense", tau_adp=(200, 25), tau_m=(20, 5))],
                                    LossConfig("ce_sum_spike", 0)),
        "smnist-icons": NetworkConfig(20, [L(16, "rec", b_j0=0.1), L(8, "rec", b_j0=0.1),
                                           L(10, "integrator")], LossConfig("ce_sum_softmax", 0)),
        # wide layers: gathered recurrent input (136 = a full 128-lane block and a masked
        # rest), weight-gradient scatters grouped by column (cpu.GROUP_N and up, four or more
        # entries per column and step), and a layer at least eight times narrower than its
        # input (it sends dL/dI down: gx_mode 2)
        "wide": NetworkConfig(8, [L(136, "rec", b_j0=0.01, beta=0.1, tau_m=(20, 5),
                                    tau_adp=(150, 10), surrogate=mg),
                                  L(8, "dense", b_j0=0.02, tau_m=(20, 5), tau_adp=(150, 10),
                                    surrogate=mg)],
                              LossConfig("ce_sum_spike", 5)),
    }


def reference_problem(name: str, cfg: NetworkConfig, quick=False):
    """The float64 network, input, labels and random initial state of one reference check."""
    rng = np.random.default_rng(7)
    net = Network(cfg, seed=3, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in"):
            v *= 3.0
        elif k.endswith("W_rec") and not np.any(v):
            v += rng.normal(0, 0.3, v.shape)
    B, T = (32 if name == "wide" else 4), 30 if quick else 60
    density = 1.0 if name == "wide" else 0.3
    x = ((rng.random((B, T, cfg.n_in)) < density)
         * (1.0 if name.startswith(("ecg", "shd")) else rng.random((B, T, cfg.n_in))))
    labels = (rng.integers(0, cfg.n_out, (B, T)) if cfg.loss.kind == "nll_per_step"
              else rng.integers(0, cfg.n_out, B))
    state = initial_state(cfg, B, np.float64, "random", rng=rng, spikes=True)
    return net, x, labels, state


def check_reference(quick=False, tol=REF_TOL, out=print, only=None) -> list:
    from validation.reference_numpy import reference_loss_and_grads
    rows = []
    for name, cfg in task_topologies(quick).items():
        if only is not None and name not in only:
            continue
        net, x, labels, state = reference_problem(name, cfg, quick)
        loss, grads, _, trace = net.loss_and_grad(x, labels, state)
        ref_state = {k: v for k, v in state.items()}
        rloss, rgrads = reference_loss_and_grads(cfg, net.params, x, labels, ref_state)
        fr = [r for r in trace.firing_rates() if r is not None]
        e = abs(loss - rloss) / abs(rloss)
        rows.append(("ref", name, "loss", e, e <= tol))
        out(f"  {'ok ' if e <= tol else 'BAD'}  ref  {name:46s} {'loss':16s} {e:9.2e}  "
            f"(firing rates {', '.join(f'{r:.3f}' for r in fr)})")
        for k in grads:
            rg = rgrads[k]
            if not _trained(cfg, k):
                rg = np.zeros_like(rg)
            e = rel_err(grads[k], rg)
            rows.append(("ref", name, k, e, e <= tol))
            out(f"  {'ok ' if e <= tol else 'BAD'}  ref  {name:46s} {k:16s} {e:9.2e}")
    return rows


def _trained(cfg, name):
    lname, kind = name.rsplit(".", 1)
    layer = next(l for l in cfg.layers if l.name == lname)
    return not ((kind == "tau_m" and not layer.train_tau_m)
                or (kind == "tau_adp" and not layer.train_tau_adp))


def run(args) -> int:
    print(f"finite differences, float64, smooth mode (tolerance {args.tol:g}):")
    with compute_threads():
        rows = check_fd(args.quick, args.tol)
        print("Numba kernels vs plain-NumPy reference, float64, surrogate mode "
              f"(tolerance {REF_TOL:g}):")
        rows += check_reference(args.quick)
    bad = [r for r in rows if not r[4]]
    print(f"{len(rows) - len(bad)} passed, {len(bad)} failed")
    return 1 if bad else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tol", type=float, default=1e-5)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
