"""Firing-rate targeting for the benchmark: the input gain of each spiking layer is searched by
bisection on forward passes so that the layer's measured firing rate is close to a target.

Why: the sparse kernels' cost grows with the spikes they gather and scatter, so a scaling
study must say at which firing rate it ran, and a sweep over rates must reach them. A gain
multiplies a layer's W_in (its input weights); layer l's rate depends only on the gains of
layers 0..l, so the layers are set one after the other, first to last. The rate is taken to
rise with the gain (true of these networks: more input current, more spikes); where the
target lies outside the rates reachable between ``GAIN_RANGE``'s ends, or bisection does not
come within the tolerance, the result says so (``reached`` False) and keeps the gain whose
rate came closest. The integrator (non-spiking) keeps its gain.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from validation.problems import ProblemSpec, build

#: the search interval of each layer's gain, relative to the spec's gain
GAIN_RANGE = (1e-3, 1e4)
#: relative tolerance on each layer's rate (at least ABS_TOL absolute)
REL_TOL, ABS_TOL = 0.05, 0.002
MAX_ITER = 40
#: the search runs forward passes on at most this many sequences of the batch
SEARCH_BATCH = 32


def within(rate: float, target: float, rel: float = REL_TOL) -> bool:
    return abs(rate - target) <= max(rel * target, ABS_TOL)


class _RateProbe:
    """One forward pass at a time of ``spec``'s problem (first ``batch`` sequences) with given
    gains; the network and input are built once and only the W_in are rescaled, each exactly
    as ``build`` scales it (initial weights times the gain in the network's dtype)."""

    def __init__(self, spec: ProblemSpec, batch: int | None = None):
        self.net, x, _ = build(spec, [1.0] * len(spec.cfg.layers))
        self.x = x if batch is None else x[:batch]
        self.w1 = {l.name: self.net.params[f"{l.name}.W_in"].copy() for l in spec.cfg.layers}

    def rates(self, gains) -> list:
        d = self.net.dtype.type
        for layer, g in zip(self.net.config.layers, gains):
            self.net.params[f"{layer.name}.W_in"][...] = self.w1[layer.name] * d(g)
        with compute_threads():
            return self.net.forward(self.x).firing_rates()


def layer_rates(spec: ProblemSpec, gains=None, batch: int | None = None) -> list:
    """Each layer's firing rate (None for the integrator) on one forward pass of ``spec``'s
    problem with ``gains`` (default: the spec's), on its first ``batch`` sequences (all by
    default)."""
    return _RateProbe(spec, batch).rates(spec.gains if gains is None else gains)


def target_rate(spec: ProblemSpec, target: float, rel_tol: float = REL_TOL) -> dict:
    """Search each spiking layer's gain for ``target``. Returns {spec: the spec with the gains
    found and ``target_rate`` set, rates: each layer's rate on the full batch (None for the
    integrator), reached: every spiking layer's full-batch rate within the tolerance (None
    when there is no spiking layer), evaluations: forward passes run}."""
    if not 0 < target < 1:
        raise ValueError(f"target firing rate must lie in (0, 1), got {target}")
    gains = list(spec.gains)
    probe = _RateProbe(spec, min(spec.batch, SEARCH_BATCH))
    evals = 0
    for li, layer in enumerate(spec.cfg.layers):
        if not layer.spiking:
            continue
        base = gains[li]

        def rate_at(log_g, li=li, base=base):
            nonlocal evals
            evals += 1
            trial = list(gains)
            trial[li] = base * math.exp(log_g)
            return probe.rates(trial)[li]

        lo, hi = math.log(GAIN_RANGE[0]), math.log(GAIN_RANGE[1])
        r_lo, r_hi = rate_at(lo), rate_at(hi)
        best = min((abs(r_lo - target), lo), (abs(r_hi - target), hi))
        if r_lo < target < r_hi:          # the target lies inside: bisect
            for _ in range(MAX_ITER):
                mid = 0.5 * (lo + hi)
                r = rate_at(mid)
                best = min(best, (abs(r - target), mid))
                if within(r, target, rel_tol / 2):
                    break
                lo, hi = (mid, hi) if r < target else (lo, mid)
        gains[li] = base * math.exp(best[1])
    out = dataclasses.replace(spec, gains=gains, target_rate=float(target))
    rates = layer_rates(out) if spec.batch > probe.x.shape[0] else probe.rates(gains)
    spiking = [r for r in rates if r is not None]
    reached = all(within(r, target, rel_tol) for r in spiking) if spiking else None
    return {"spec": out, "rates": rates, "reached": reached, "evaluations": evals}


def rates_summary(rates) -> float | None:
    """The mean of the spiking layers' rates (None without any)."""
    r = [x for x in rates if x is not None]
    return float(np.mean(r)) if r else None
