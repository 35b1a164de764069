"""Benchmark: one training step (forward + BPTT, loss and every gradient, float32) of the three
paper configurations (``validation.problems``), timed side by side with the plain-NumPy
reference path and the machine's sgemm peak, all in the same run.

``spikesim bench [--config shd|ecg|smnist|all] [--json PATH] [--repeats N]``

Reported per configuration: median seconds per step (after warm-up), dense GFLOP per step
(2 x the multiply-adds of every matrix product, forward and backward, as if all operands were
dense), achieved GFLOP/s on that count, its fraction of the sgemm peak, the reference path's
median seconds, and the ratio; and, where PyTorch happens to be installed, PyTorch eager autograd
on the same problem (``validation.torch_reference``). Firing rates are printed: the sparse
paths' speed depends on them.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from validation.problems import configs, dense_gflop, make_problem, time_step

__all__ = ["configs", "dense_gflop", "make_problem", "time_step", "bench_one", "sgemm_peak"]


def sgemm_peak(n: int = 2048, repeats: int = 3) -> float:
    """GFLOP/s of a float32 n^3 matrix product with BLAS on all its threads."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.copy()
    a @ b
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        ts.append(time.perf_counter() - t)
    return 2.0 * n ** 3 / min(ts) / 1e9


def bench_one(name: str, repeats: int = 7, reference: bool = True, torch: bool = True) -> dict:
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
        t = torch_time(name, max(3, repeats // 2))
        if t is not None:
            rec["torch_median_s"] = t["median_s"]
            rec["torch_version"] = t.get("torch")
            rec["speedup_vs_torch"] = t["median_s"] / rec["median_s"]
    return rec


def torch_time(name: str, repeats: int):
    """PyTorch eager autograd on the same problem, in a fresh process (sharing a process with
    Numba's and our thread pools made PyTorch's OpenMP threads ten times slower); None where
    PyTorch is not installed."""
    from validation import torch_reference
    if not torch_reference.torch_available():
        return None
    code = ("import json; from validation.torch_reference import time_step; "
            f"print(json.dumps(time_step({name!r}, repeats={int(repeats)})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if out.returncode != 0:
        print(f"PyTorch timing of {name} failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine() -> dict:
    import numba
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from spikesim.backends.cpu.threads import get_threads
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel_threads": get_threads(),
            "python": platform.python_version(), "numpy": np.__version__,
            "numba": numba.__version__}


def run(args) -> int:
    names = list(configs()) if args.config == "all" else [args.config]
    peak = sgemm_peak()
    info = machine()
    date = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"spikesim bench  {date}  {info['cpu']}, {info['cores']} cores, "
          f"kernel threads {info['kernel_threads']}")
    print(f"sgemm peak (numpy float32 2048^3, all BLAS threads): {peak:.1f} GFLOP/s")
    print(f"{'config':8s} {'median s':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s} {'of peak':>8s} "
          f"{'ref s':>8s} {'ref/us':>7s}  firing rates")
    records = []
    for name in names:
        r = bench_one(name, args.repeats, not args.no_reference,
                      not getattr(args, "no_torch", False))
        r.update(peak_gflops=peak, fraction_of_peak=r["gflops"] / peak, date=date, machine=info)
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


def main(argv=None) -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="all", choices=["shd", "ecg", "smnist", "all"])
    p.add_argument("--json", default=None)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-reference", action="store_true")
    p.add_argument("--no-torch", action="store_true")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
