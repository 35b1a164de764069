"""Performance studies beyond the three fixed benchmark steps: any network shape and workload,
a per-kernel breakdown of the step, scaling sweeps against the machine's ceilings, and the
peak memory of a step (``spikesim bench`` with any of the study options; ``validation.bench``
declares them).

A *point* is one problem (``validation.problems.ProblemSpec``): built, its gains searched for
a target firing rate where one is asked for (``validation.bench_rate``), timed as training runs
it (``validation.bench_breakdown``: ``train_step`` with Adam, truncated BPTT with ``tbptt``),
its bytes and flops counted by the model of ``validation.bench_counts`` from its shapes and
measured rates, and, on request, broken down per kernel, timed with the NumPy reference and
PyTorch, and measured for memory (``validation.bench_memory``). A *sweep* varies one axis
(batch, steps, width or rate) of a configuration over given values.

The NumPy reference and PyTorch always run full BPTT without the optimiser update (they have
no truncation), once (after one warm-up step for PyTorch), and only up to ``REFERENCE_LIMIT``
and ``TORCH_LIMIT`` neuron-steps (batch x steps x neurons): they are 5-70x slower (PyTorch's
memory up to ``TORCH_MEMORY_LIMIT``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from spikesim.backends.cpu.threads import compute_threads
from validation.bench_breakdown import breakdown, time_train_step
from validation.bench_counts import step_counts
from validation.bench_machine import ceilings, loadavg, run_meta, vector_line
from validation.bench_rate import target_rate
from validation.problems import (
    ProblemSpec,
    build,
    configs,
    custom_spec,
    dense_gflop,
    named_spec,
    with_overrides,
)

AXES = ("batch", "steps", "width", "rate")
REFERENCE_LIMIT = 2.0e7
TORCH_LIMIT = 2.0e7
#: PyTorch's memory is measured up to larger problems than its time (one step, no repeats)
TORCH_MEMORY_LIMIT = 1.0e8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_sweep(text: str) -> tuple:
    """``axis=v1,v2,...`` -> (axis, [values]); rates are floats in (0, 1), the rest positive
    integers."""
    axis, sep, vals = str(text).partition("=")
    axis = axis.strip()
    if not sep or axis not in AXES:
        raise ValueError(f"a sweep is AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}; "
                         f"got {text!r}")
    try:
        values = [float(v) if axis == "rate" else int(v) for v in vals.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"bad value in sweep {text!r}") from None
    if not values:
        raise ValueError(f"sweep {text!r} has no values")
    if axis == "rate" and not all(0 < v < 1 for v in values):
        raise ValueError(f"rates must lie in (0, 1): {text!r}")
    if axis != "rate" and not all(v > 0 for v in values):
        raise ValueError(f"{axis} values must be positive: {text!r}")
    return axis, values


def neuron_steps(spec: ProblemSpec) -> int:
    return spec.batch * spec.steps * sum(l.size for l in spec.cfg.layers)


def base_specs(args) -> list:
    """The problems the options name: a custom network (``--layers``) or the named
    configurations, with the workload options applied."""
    if args.layers:
        spec = custom_spec(args.layers, args.n_in or 100, args.loss or "nll_per_step",
                           args.batch or 32, args.steps or 200,
                           0.05 if args.density is None else args.density,
                           args.dtype or "float32", args.seed)
        return [with_overrides(spec, target_rate=0.1 if args.rate is None else args.rate)]
    names = list(configs()) if args.config == "all" else [args.config]
    out = []
    for name in names:
        spec = with_overrides(named_spec(name), batch=args.batch, steps=args.steps,
                              density=args.density, dtype=args.dtype, loss=args.loss,
                              target_rate=args.rate, seed=args.seed)
        if args.n_in and args.n_in != spec.cfg.n_in:
            raise ValueError("--n-in applies to --layers networks; the named configurations "
                             "keep their inputs")
        out.append(spec)
    return out


def _torch_time(spec: ProblemSpec, threads: int, timeout: float = 900):
    """PyTorch eager autograd in a fresh process (sharing one with Numba's thread pool slowed
    PyTorch's OpenMP threads tenfold): {median_s, ...} or None where PyTorch is missing."""
    from validation import torch_reference
    if not torch_reference.torch_available():
        return None
    code = ("import json, sys; from validation.torch_reference import time_spec; "
            "print(json.dumps(time_spec(json.loads(sys.argv[1]), repeats=1, "
            f"threads={int(threads)}, warmup=1)))")
    try:
        out = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict())],
                             capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure_point(spec: ProblemSpec, opts) -> dict:
    """One point of a study (see the module docstring); ``opts``: repeats, tbptt, breakdown,
    reference, torch, torch_threads, memory."""
    rec = {"config": spec.name, "loadavg_before": loadavg()}
    if spec.target_rate is not None:
        found = target_rate(spec, spec.target_rate)
        spec = found["spec"]
        rec.update(rate_reached=found["reached"], rate_evaluations=found["evaluations"])
    net, x, labels = build(spec)
    t = time_train_step(net, x, labels, opts.tbptt, opts.repeats)
    rates = t["rates"]
    density = float(np.count_nonzero(x) / x.size)
    B, T, cfg = spec.batch, spec.steps, spec.cfg
    c = step_counts(cfg, B, T, np.dtype(spec.dtype).itemsize, density, rates)
    rec.update(
        spec=spec.to_dict(), layers=",".join(f"{l.kind}:{l.size}" for l in cfg.layers),
        n_in=cfg.n_in, loss=cfg.loss.kind, batch=B, steps=T, dtype=spec.dtype, tbptt=opts.tbptt,
        input_density=density, target_rate=spec.target_rate, gains=spec.gains,
        firing_rates=rates, median_s=t["median_s"], min_s=t["min_s"], repeats=opts.repeats,
        step="train_step (forward, loss, backward, Adam update)",
        per_sample_step_s=t["median_s"] / (B * T), dense_gflop=dense_gflop(cfg, B, T),
        model_flops=c["flops"], model_bytes=c["bytes"], model_trace_bytes=c["trace_bytes"],
        intensity=c["flops"] / c["bytes"], achieved_gflops=c["flops"] / t["median_s"] / 1e9,
        achieved_gbs=c["bytes"] / t["median_s"] / 1e9)
    if opts.breakdown:
        rec["breakdown"] = breakdown(net, x, labels, opts.tbptt, repeats=min(3, opts.repeats))
    size = neuron_steps(spec)
    rec["reference_s"] = None
    if opts.reference and size <= REFERENCE_LIMIT:
        from validation.reference_numpy import reference_loss_and_grads
        with compute_threads():
            t0 = time.perf_counter()
            reference_loss_and_grads(cfg, net.params, x, labels)
            rec["reference_s"] = time.perf_counter() - t0
    rec["torch_s"] = None
    if opts.torch and size <= TORCH_LIMIT:
        tt = _torch_time(spec, opts.torch_threads)
        if tt is not None:
            rec["torch"] = tt
            rec["torch_s"] = tt.get("median_s")
    if opts.memory:
        from validation.bench_memory import measure
        mem = {"full": measure(spec, None)}
        if opts.tbptt:
            mem["tbptt"] = measure(spec, opts.tbptt)
        if opts.torch and size <= TORCH_MEMORY_LIMIT:
            mem["torch"] = measure(spec, None, engine="torch")
        rec["memory"] = mem
    rec["loadavg_after"] = loadavg()
    return rec


# -- printing -----------------------------------------------------------------------------------
def _mib(rec, key) -> str:
    m = (rec.get("memory") or {}).get(key) or {}
    return f"{m['peak_bytes'] / 2 ** 20:8.1f}" if "peak_bytes" in m else f"{'-':>8s}"


HEADER = (f"{'config':8s} {'value':>7s} {'median s':>9s} {'us/smp-step':>11s} {'rates':>17s} "
          f"{'GB/s':>6s} {'GFLOP/s':>8s} {'AI':>6s} {'ref s':>7s} {'torch s':>8s} {'mem MiB':>8s}")


def _num(v, width: int, digits: int) -> str:
    """``v`` in a column of ``width``; a dash where it was not measured (None)."""
    return f"{v:{width}.{digits}f}" if v is not None else f"{'-':>{width}s}"


def format_point(rec: dict, value="") -> str:
    rates = "/".join(f"{r:.3f}" for r in rec["firing_rates"] if r is not None)
    flag = "" if rec.get("rate_reached") is not False else " RATE NOT REACHED"
    mem = _mib(rec, "tbptt" if rec.get("tbptt") else "full")
    f = _num
    return (f"{rec['config']:8s} {str(value):>7s} {rec['median_s']:9.4f} "
            f"{rec['per_sample_step_s'] * 1e6:11.3f} {rates:>17s} {rec['achieved_gbs']:6.1f} "
            f"{rec['achieved_gflops']:8.1f} {rec['intensity']:6.1f} "
            f"{f(rec['reference_s'], 7, 3)} {f(rec['torch_s'], 8, 3)} {mem}{flag}")


def format_breakdown(rec: dict) -> str:
    b = rec["breakdown"]
    lines = [f"  breakdown of one {rec['config']} step ({b['repeats']} instrumented steps, "
             f"mean {b['total_s'] * 1e3:.2f} ms; plain median {rec['median_s'] * 1e3:.2f} ms):"]
    for p in b["parts"]:
        lines.append(f"    {p['part']:32s} {p['seconds'] * 1e3:9.3f} ms {p['share'] * 100:6.1f} %")
    return "\n".join(lines)


def format_memory(rec: dict) -> str:
    out = []
    for key, m in (rec.get("memory") or {}).items():
        if "error" in m:
            out.append(f"  memory {key}: failed ({m['error'][-120:]})")
            continue
        extra = "".join(f", {k.replace('_', ' ')} {m[k] / 2 ** 20:.1f} MiB"
                        for k in ("workspace_bytes", "model_trace_bytes") if k in m)
        label = f"{key} (K = {rec['tbptt']})" if key == "tbptt" else key
        out.append(f"  memory {label}: "
                   f"peak {m['peak_bytes'] / 2 ** 20:.1f} MiB over the warmed baseline "
                   f"({m['method']}){extra}")
    return "\n".join(out)


# -- the study ----------------------------------------------------------------------------------
def run_study(args) -> int:
    specs = base_specs(args)
    sweeps = [parse_sweep(s) for s in (args.sweep or [])]
    meta = run_meta()
    ceil = ceilings()
    print(f"spikesim bench study  {meta['date']}  {meta['machine']['cpu']}, "
          f"{meta['machine']['cpu_count']} cores, kernel threads {meta['kernel_threads']}, "
          f"load average {meta['loadavg']}, commit {str(meta['git_commit'])[:7]}"
          f"{' (dirty)' if meta['git_dirty'] else ''}")
    print(vector_line(meta["machine"]))
    print(f"ceilings: sgemm {ceil['sgemm_peak_gflops']:.1f} GFLOP/s; copy bandwidth "
          f"{ceil['copy_gbs_1thread']:.1f} GB/s (1 thread), {ceil['copy_gbs_all']:.1f} GB/s "
          f"({ceil['cores']} threads)")
    print("GB/s, GFLOP/s and AI (flop per byte) are model counts from shapes and measured "
          "rates (validation/bench_counts.py)")
    result = {"meta": meta, "ceilings": ceil, "points": [], "sweeps": []}
    if not sweeps:
        print(HEADER)
        for spec in specs:
            rec = measure_point(spec, args)
            result["points"].append(rec)
            print(format_point(rec), flush=True)
            if "breakdown" in rec:
                print(format_breakdown(rec))
            if "memory" in rec:
                print(format_memory(rec))
    for axis, values in sweeps:
        for spec in specs:
            print(f"\nsweep {spec.name}: {axis} = {', '.join(map(str, values))}")
            print(HEADER)
            sw = {"config": spec.name, "axis": axis, "values": values, "points": []}
            for v in values:
                kw = {"target_rate" if axis == "rate" else axis: v}
                rec = measure_point(with_overrides(spec, **kw), args)
                rec["sweep_value"] = v
                sw["points"].append(rec)
                print(format_point(rec, v), flush=True)
                if "breakdown" in rec:
                    print(format_breakdown(rec))
                if "memory" in rec:
                    print(format_memory(rec))
            result["sweeps"].append(sw)
    result["meta"]["loadavg_end"] = loadavg()
    failed = [r for r in result["points"] + [p for s in result["sweeps"] for p in s["points"]]
              if r.get("rate_reached") is False]
    if failed:
        print(f"target firing rate not reached at {len(failed)} point(s) (marked above)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    if args.plot:
        from validation.bench_plot import plot_study
        if plot_study(result, args.plot):
            print(f"plot: {args.plot}")
    return 1 if failed else 0
