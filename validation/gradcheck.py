"""Gradient validation of the Numba kernels (docs/validation.md).

1. Surrogates: each surrogate function's derivative, from the kernels' vector loop, against
   finite differences of its closed-form integral and against the reference's formula.
2. Finite differences (float64, smooth mode: sigmoid spikes forward, their exact derivative
   backward, through the same kernels and vector loops as training): narrow networks of every
   layer, parameter and loss kind (every element), and wide ones (sampled elements and one
   random direction per tensor).
3. Truncated BPTT: each chunk's gradient against finite differences of that chunk's loss with
   the carried-in state fixed (smooth mode); the whole truncated step against the reference,
   which carries its own state (surrogate mode).
4. Reference: surrogate-mode gradients against the slow plain-NumPy implementation
   (``validation.reference_numpy``), float64: every task network, a wide one, and every
   surrogate in every layer kind.

Errors are element-wise (``validation.finite_diff``). Every problem reports its firing rates
and fails if a spiking layer fires on fewer than ``ACTIVITY_FLOOR`` of its neuron-steps. Frozen
time constants and structurally zero gradients (tau_adp of a LIF layer) are reported as such,
not counted as passes.

``spikesim gradcheck [--quick] [--only CASE ...] [--device cpu|cuda]`` prints one row per check
and the totals, and exits non-zero if any check fails. With ``--device cuda`` checks 2-4 run the
networks on the CUDA backend (the surrogate functions of 1 are the CPU kernels' own).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from spikesim.model.config import SurrogateConfig
from spikesim.options import add_device_arg
from validation import surrogate_check, tbptt_check
from validation.finite_diff import choose_elements, elementwise_error, fd_direction, fd_elements
from validation.gradcheck_cases import (
    ACTIVITY_FLOOR,
    fd_cases,
    fd_problem,
    reference_cases,
    reference_problem,
)

FD_TOL = 1e-5           # finite differences, element-wise
FD_FLOOR = 1e-6         # a = 1e-6 max|g| + 1e-6 |L| (the noise of the differences: ~1e-12 |L|)
REF_TOL = 1e-9          # reference, element-wise
REF_FLOOR = 1e-5        # a = 1e-5 max|g| (rounding of sums of terms up to the largest element)
SAMPLE = {False: 40, True: 16}      # elements sampled per large tensor (full, quick)


@dataclass
class Report:
    """The rows of a run: (kind, case, item, status, error, tolerance, detail)."""
    out: object = print
    rows: list = field(default_factory=list)

    def add(self, kind, case, item, err, ok, detail="", tol=None, status=None):
        status = status or ("ok" if ok else "BAD")
        self.rows.append((kind, case, item, status, err, tol, detail))
        e = "" if err is None else f"{err:9.2e}"
        self.out(f"  {status:6s} {kind:9s} {case:46s} {item:18s} {e:>9s}  {detail}")

    def activity(self, kind, case, names, rates):
        """One row with the firing rates of ``names`` (None: not spiking); BAD below the floor."""
        spiking = [(n, r) for n, r in zip(names, rates) if r is not None]
        low = [n for n, r in spiking if r < ACTIVITY_FLOOR]
        text = ", ".join(f"{n} {r:.3f}" for n, r in spiking)
        self.add(kind, case, "firing rates", min(r for _, r in spiking), not low,
                 text + (f" (below {ACTIVITY_FLOOR:g}: {', '.join(low)})" if low else ""))

    @property
    def failed(self) -> list:
        return [r for r in self.rows if r[3] == "BAD"]

    def summary(self) -> str:
        n = {s: sum(r[3] == s for r in self.rows) for s in ("ok", "BAD", "frozen", "zero")}
        worst = {}
        for kind, _, item, status, err, _, _ in self.rows:
            if status == "ok" and err is not None and item != "firing rates":
                worst[kind] = max(worst.get(kind, 0.0), err)
        w = ", ".join(f"{k} {v:.1e}" for k, v in worst.items())
        return (f"{n['ok']} passed, {n['BAD']} failed, {n['frozen']} frozen and {n['zero']} "
                f"structurally zero (not checked); worst error: {w}")


def _status(cfg, name: str):
    """'frozen' for a time constant that is not trained, 'zero' for the tau_adp of a LIF layer
    (beta = 0: it has no effect), else None."""
    lname, kind = name.rsplit(".", 1)
    layer = next(layer for layer in cfg.layers if layer.name == lname)
    if (kind == "tau_m" and not layer.train_tau_m) or (kind == "tau_adp" and not
                                                        layer.train_tau_adp):
        return "frozen"
    if kind == "tau_adp" and layer.beta == 0:
        return "zero"
    return None


def _not_checked(report, kind, case, name, status, g):
    """Rows for frozen and structurally zero gradients: they must be exactly zero."""
    ok = not np.any(g)
    report.add(kind, case, name, None, ok, "gradient exactly 0" if ok else "gradient NOT zero",
               status=status if ok else "BAD")


def compare_fd(report, kind, case, cfg, loss_fn, params, grads, loss_value, sample, rng):
    """Finite differences of ``loss_fn`` against ``grads`` for every tensor of ``params``."""
    for name, g in grads.items():
        status = _status(cfg, name)
        if status:
            _not_checked(report, kind, case, name, status, g)
            continue
        v = params[name]
        idx = choose_elements(g, sample if sample else g.size, rng)
        fd = fd_elements(loss_fn, v, idx)
        got = np.array([g[i] for i in idx])
        floor_abs = FD_FLOOR * abs(loss_value)
        scale = float(np.max(np.abs(g)))
        e = elementwise_error(got, fd, 0.0, FD_FLOOR * scale + floor_abs, idx, g.size)
        report.add(kind, case, name, e.err, e.err <= FD_TOL, e.describe(), FD_TOL)
        if len(idx) < g.size:       # and the whole tensor along one random direction
            d = rng.choice([-1.0, 1.0], size=g.shape)
            want = fd_direction(loss_fn, v, d)
            got_d = float(np.sum(g * d))
            a = FD_FLOOR * float(np.sum(np.abs(g))) + floor_abs
            err = abs(got_d - want) / (abs(want) + a)
            report.add(kind, case, name + " (dir)", err, err <= FD_TOL,
                       f"{got_d:.6e} vs {want:.6e} along a random +-1 direction", FD_TOL)


def compare_reference(report, kind, case, cfg, grads, ref_grads, loss, ref_loss):
    e = abs(loss - ref_loss) / abs(ref_loss)
    report.add(kind, case, "loss", e, e <= REF_TOL, f"{loss:.12e} vs {ref_loss:.12e}", REF_TOL)
    for name, g in grads.items():
        status = _status(cfg, name)
        if status:
            _not_checked(report, kind, case, name, status, g)
            continue
        e = elementwise_error(g, ref_grads[name], REF_FLOOR)
        report.add(kind, case, name, e.err, e.err <= REF_TOL, e.describe(), REF_TOL)


def _layer_names(cfg):
    return [layer.name for layer in cfg.layers]


def check_fd(report, quick=False, only=None, device="cpu"):
    for i, (case, c) in enumerate(fd_cases(quick).items()):
        if only is not None and case not in only:
            continue
        p = fd_problem(c, seed=len(case))
        p.net.set_backend(device)
        loss, grads, _, trace = p.net.loss_and_grad(p.x, p.labels, p.state)
        report.activity("fd", case, _layer_names(c.config), trace.firing_rates())

        def loss_fn(p=p):
            return p.net.loss(p.net.forward(p.x, p.state), p.labels).loss
        compare_fd(report, "fd", case, c.config, loss_fn, p.net.params, grads, loss,
                   SAMPLE[quick] if c.wide else 0, np.random.default_rng(i))


def check_reference(report, quick=False, only=None, device="cpu"):
    from validation.reference_numpy import reference_loss_and_grads
    for case, cfg in reference_cases().items():
        if only is not None and case not in only:
            continue
        p = reference_problem(case, cfg, quick)
        p.net.set_backend(device)
        loss, grads, _, trace = p.net.loss_and_grad(p.x, p.labels, p.state)
        report.activity("ref", case, _layer_names(cfg), trace.firing_rates())
        rloss, rgrads = reference_loss_and_grads(cfg, p.net.params, p.x, p.labels, p.state)
        compare_reference(report, "ref", case, cfg, grads, rgrads, loss, rloss)


def check_tbptt_fd(report, quick=False, only=None, device="cpu"):
    from spikesim.network import Network
    cases = tbptt_check.tbptt_cases(SurrogateConfig("smooth", k=1.5))
    if quick:
        cases = dict(list(cases.items())[:1])
    for i, (case, c) in enumerate(cases.items()):
        if only is not None and case not in only:
            continue
        net, x, labels, state = tbptt_check.problem(c)
        net.set_backend(device)
        chunks = tbptt_check.run_recorded(net, x, labels, state, c.chunk)
        for ch in chunks:
            if ch.grads is None:
                continue
            name = f"{case} [{ch.t0}:{ch.t0 + ch.x.shape[1]}]"
            report.activity("tbptt-fd", name, _layer_names(c.config), ch.rates)
            cnet = Network(c.config, params={k: v.copy() for k, v in ch.params.items()},
                           dtype=np.float64, backend=device)
            compare_fd(report, "tbptt-fd", name, c.config, tbptt_check.chunk_loss(cnet, ch),
                       cnet.params, ch.grads, ch.loss, SAMPLE[quick],
                       np.random.default_rng(100 + i))


def check_tbptt_reference(report, quick=False, only=None, step=None, device="cpu"):
    """``step``: the truncated step to check (default the trainer's ``train_step``)."""
    for case, c in tbptt_check.tbptt_cases().items():
        if only is not None and case not in only:
            continue
        net, x, labels, state = tbptt_check.problem(c)
        net.set_backend(device)
        kw = {} if step is None else {"step": step}
        chunks = tbptt_check.run_recorded(net, x, labels, state, c.chunk, **kw)
        for ch, rloss, rgrads in tbptt_check.reference_chain(c.config, chunks, state):
            name = f"{case} [{ch.t0}:{ch.t0 + ch.x.shape[1]}]"
            report.activity("tbptt-ref", name, _layer_names(c.config), ch.rates)
            compare_reference(report, "tbptt-ref", name, c.config, ch.grads, rgrads, ch.loss,
                              rloss)


def run_all(quick=False, out=print, only=None, device="cpu") -> Report:
    report = Report(out)
    if device != "cpu":
        out(f"networks on the {device} backend (checks 2-4)")
    with compute_threads():
        out("surrogate functions: kernel derivative vs finite differences of the integral "
            f"(tolerance {surrogate_check.FD_TOL:g}) and vs the reference's formula "
            f"({surrogate_check.REF_TOL:g}):")
        surrogate_check.check(report)
        out(f"finite differences, float64, smooth mode (element-wise tolerance {FD_TOL:g}):")
        check_fd(report, quick, only, device)
        out("truncated BPTT, each chunk with its carried-in state fixed, finite differences:")
        check_tbptt_fd(report, quick, only, device)
        out("Numba kernels vs plain-NumPy reference, float64, surrogate mode (element-wise "
            f"tolerance {REF_TOL:g}):")
        check_reference(report, quick, only, device)
        out("truncated BPTT, the whole step vs the reference carrying its own state:")
        check_tbptt_reference(report, quick, only, device=device)
    return report


def run(args) -> int:
    t0 = time.perf_counter()
    device = getattr(args, "device", "cpu")
    report = run_all(args.quick, only=getattr(args, "only", None), device=device)
    print(report.summary())
    print(f"{len(report.rows)} checks in {time.perf_counter() - t0:.1f} s"
          f"{' (--quick)' if args.quick else ''}"
          f"{f' (--device {device})' if device != 'cpu' else ''}")
    return 1 if report.failed else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer cases and sampled elements")
    p.add_argument("--only", nargs="+", default=None, metavar="CASE",
                   help="run only the cases of these names (surrogate functions always run)")
    add_device_arg(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
