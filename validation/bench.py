"""Benchmark: one training step (forward + BPTT, loss and every gradient, float32) of the three
paper configurations (``validation.problems``), timed side by side with the plain-NumPy
reference path and the machine's sgemm peak, all in the same run; with any study option, a
performance study of any network and workload (``validation.bench_study``).

``spikesim bench [--config shd|ecg|smnist|all] [--json PATH] [--repeats N]`` (the fixed steps)

Reported per configuration: median seconds per step (after warm-up), dense GFLOP per step
(2 x the multiply-adds of every matrix product, forward and backward, as if all operands were
dense), achieved GFLOP/s on that count, its fraction of the sgemm peak, the reference path's
median seconds, and the ratio; and, where PyTorch happens to be installed, PyTorch eager autograd
on the same problem (``validation.torch_reference``). Firing rates are printed: the sparse
paths' speed depends on them. Each JSON record carries the run's manifest fields (date,
commit, versions, machine: ``spikesim.train.manifest``) and the load average.

Study options (``add_args`` lists them all): ``--layers rec:256,rec:256,dense:10 --n-in 100``
(any network), ``--batch --steps --dtype --density --loss --rate`` (workload and target firing
rate), ``--tbptt K``, ``--breakdown`` (per-kernel shares of the step), ``--sweep AXIS=V,...``
(scaling curves, ``--plot PATH``), ``--memory`` (peak memory of a step). Their JSON is one
object: {meta, ceilings, points, sweeps}.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from validation.bench_machine import run_meta, sgemm_peak, vector_line
from validation.problems import configs, dense_gflop, make_problem, time_step

__all__ = ["configs", "dense_gflop", "make_problem", "time_step", "bench_one", "sgemm_peak",
           "add_args", "run", "machine"]


def bench_one(name: str, repeats: int = 7, reference: bool = True, torch: bool = True,
              torch_threads: int | None = None) -> dict:
    cfg, B, T, _, _ = configs()[name]
    net, x, labels = make_problem(name)
    with compute_threads():
        trace = net.forward(x)
        rates = [r for r in trace.firing_rates() if r is not None]
        ts = time_step(lambda: net.loss_and_grad(x, labels), repeats)
    rec = {"config": name, "batch": B, "steps": T, "median_s": float(np.median(ts)),
           "min_s": float(np.min(ts)), "repeats": repeats, "gflop": dense_gflop(cfg, B, T),
           "firing_rates": rates, "input_density": float(np.count_nonzero(x) / x.size)}
    rec["gflops"] = rec["gflop"] / rec["median_s"]
    if reference:
        from validation.reference_numpy import reference_loss_and_grads
        rt = time_step(lambda: reference_loss_and_grads(cfg, net.params, x, labels),
                       1 if T * B > 50000 else 3, 1)
        rec["reference_median_s"] = float(np.median(rt))
        rec["speedup_vs_reference"] = rec["reference_median_s"] / rec["median_s"]
    else:
        rec["reference_median_s"] = None
    if torch:
        t = torch_time(name, max(3, repeats // 2), torch_threads)
        if t is not None:
            rec["torch_median_s"] = t["median_s"]
            rec["torch_version"] = t.get("torch")
            rec["torch_threads"] = t.get("threads")
            rec["speedup_vs_torch"] = t["median_s"] / rec["median_s"]
    return rec


def torch_time(name: str, repeats: int, threads: int | None = None):
    """PyTorch eager autograd on the same problem, in a fresh process (sharing a process with
    Numba's and our thread pools made PyTorch's OpenMP threads ten times slower); None where
    PyTorch is not installed."""
    from validation import torch_reference
    if not torch_reference.torch_available():
        return None
    code = ("import json; from validation.torch_reference import time_step; "
            f"print(json.dumps(time_step({name!r}, repeats={int(repeats)}, threads={threads!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        print(f"PyTorch timing of {name} failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    """The machine and versions of this run (``spikesim.train.manifest``) in the fields the
    bench records have always had (cpu, cores, kernel_threads, python, numpy, numba)."""
    meta = run_meta()
    v = meta["versions"]
    return {"cpu": meta["machine"]["cpu"], "cores": meta["machine"]["cpu_count"],
            "kernel_threads": meta["kernel_threads"], "python": v["python"],
            "numpy": v["numpy"], "numba": v["numba"]}


STUDY_OPTIONS = ("layers", "n_in", "loss", "batch", "steps", "dtype", "density", "rate",
                 "tbptt", "breakdown", "sweep", "memory", "plot")      # not --torch-threads


def is_study(args) -> bool:
    """Whether any study option was given (else the fixed benchmark runs, as it always has)."""
    return any(getattr(args, k, None) not in (None, False, []) for k in STUDY_OPTIONS)


def run(args) -> int:
    if is_study(args):
        from validation.bench_study import run_study
        args.reference, args.torch = not args.no_reference, not args.no_torch
        args.torch_threads = args.torch_threads or 1
        try:
            return run_study(args)
        except ValueError as e:
            print(f"spikesim bench: {e}", file=sys.stderr)
            return 2
    names = list(configs()) if args.config == "all" else [args.config]
    peak = sgemm_peak()
    meta = run_meta()
    info = machine()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"spikesim bench  {date}  {info['cpu']}, {info['cores']} cores, "
          f"kernel threads {info['kernel_threads']}")
    print(vector_line(meta["machine"]))
    print(f"sgemm peak (numpy float32 2048^3, all BLAS threads): {peak:.1f} GFLOP/s")
    print(f"{'config':8s} {'median s':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'of peak':>8s} "
          f"{'ref s':>8s} {'ref/us':>7s}  firing rates")
    records = []
    for name in names:
        r = bench_one(name, args.repeats, not args.no_reference,
                      not getattr(args, "no_torch", False), getattr(args, "torch_threads", None))
        r.update(peak_gflops=peak, fraction_of_peak=r["gflops"] / peak, date=date, machine=info,
                 machine_detail=meta["machine"], versions=meta["versions"],
                 git_commit=meta["git_commit"], git_dirty=meta["git_dirty"],
                 loadavg=meta["loadavg"])
        records.append(r)
        ref = r["reference_median_s"]
        print(f"{name:8s} {r['median_s']:9.4f} {r['gflop']:7.2f} {r['gflops']:8.1f} "
              f"{r['fraction_of_peak']:8.2f} {ref if ref else float('nan'):8.3f} "
              f"{r.get('speedup_vs_reference', float('nan')):7.1f}  "
              + ", ".join(f"{x:.3f}" for x in r["firing_rates"])
              + (f"   PyTorch {r['torch_median_s']:.3f} s ({r['speedup_vs_torch']:.1f}x)"
                 if "torch_median_s" in r else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return 0


def add_args(p):
    """The options of ``spikesim bench`` (also ``python -m validation.bench``)."""
    p.add_argument("--config", default="all", choices=["shd", "ecg", "smnist", "all"],
                   help="paper configuration(s) to run, ignored with --layers "
                        "(default: %(default)s)")
    p.add_argument("--json", default=None, help="write the records as JSON here (default: none)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed steps per median, after warm-up (default: %(default)s)")
    p.add_argument("--no-reference", action="store_true",
                   help="skip the NumPy reference timing (default: run it; in studies only up "
                        "to 2e7 neuron-steps, once)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip PyTorch even where it is installed (default: run it where "
                        "installed)")
    g = p.add_argument_group("study options (any of them runs a study: validation/bench_study.py)")
    g.add_argument("--layers", default=None,
                   help="custom network, KIND:SIZE,... with KIND rec, dense or integrator, e.g. "
                        "rec:256,rec:256,dense:10 (default: the named configurations)")
    g.add_argument("--n-in", type=int, default=None,
                   help="input channels of a --layers network (default: 100)")
    g.add_argument("--loss", default=None, choices=["nll_per_step", "ce_sum_softmax",
                                                    "ce_sum_spike"],
                   help="loss (default: the configuration's; nll_per_step for --layers)")
    g.add_argument("--batch", type=int, default=None,
                   help="batch size (default: the configuration's; 32 for --layers)")
    g.add_argument("--steps", type=int, default=None,
                   help="time steps per sequence (default: the configuration's; 200 for --layers)")
    g.add_argument("--dtype", default=None, choices=["float32", "float64"],
                   help="precision (default: float32)")
    g.add_argument("--density", type=float, default=None,
                   help="binary input density in [0, 1] (default: the configuration's input; "
                        "0.05 for --layers)")
    g.add_argument("--rate", type=float, default=None,
                   help="target firing rate of every spiking layer, reached by bisection on "
                        "each layer's input gain (default: the configuration's fixed gains; "
                        "0.1 for --layers); exit status 1 if not reached")
    g.add_argument("--tbptt", type=int, default=None,
                   help="truncated BPTT chunk length in steps, as the trainer runs it "
                        "(default: full BPTT)")
    g.add_argument("--breakdown", action="store_true",
                   help="per-kernel breakdown of the step (default: off)")
    g.add_argument("--sweep", action="append", default=None, metavar="AXIS=V1,V2,...",
                   help="scaling sweep over batch, steps, width (every layer but the last) or "
                        "rate; repeatable (default: none)")
    g.add_argument("--plot", default=None,
                   help="PNG of the sweeps' scaling curves and roofline (default: none; needs "
                        "matplotlib)")
    g.add_argument("--memory", action="store_true",
                   help="peak memory of a step, each in a fresh process (full BPTT, --tbptt "
                        "if given, PyTorch where installed) (default: off)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="PyTorch threads; more threads than free cores slow PyTorch's OpenMP "
                        "many times over on a shared machine (default: 1 in studies, all "
                        "cores in the fixed benchmark, as its records always had)")
    g.add_argument("--seed", type=int, default=0,
                   help="problem seed in studies (default: %(default)s)")
    return p


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
