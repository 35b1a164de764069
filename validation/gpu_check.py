"""The CUDA device check: spikesim's CUDA backend against its CPU backend, then timed against
PyTorch CUDA autograd, on one NVIDIA GPU (under 5 minutes on an H100-class GPU).

1. Correctness: one training step (loss and every gradient) of the shd, ecg and smnist
   configurations (``validation.problems``) at small sizes (batch 8, 100 steps, full widths),
   float64, CPU backend against CUDA backend: loss and gradients within 1e-9 of the largest
   element of each tensor, and every layer's spikes identical.
2. Timings (float32, the benchmark's problems ``make_problem``: shd, ecg, smnist, and shd at
   batch 256): the median of ``--repeats`` training steps (forward, loss, backward, the
   gradients on the host) of spikesim-CUDA and of PyTorch eager autograd on the same GPU
   (``validation.torch_reference.TorchNet``, where PyTorch with CUDA is installed), their ratio,
   and device memory: for spikesim what one step allocates (numba allocates every array afresh
   and frees nothing while a step runs here, so this bounds its peak from above), for PyTorch
   the peak it held for tensors (``torch.cuda.max_memory_allocated``). Then an SHD epoch
   estimate: 8156 training samples in batches of 64 (128 steps) at the shd step's median.

``python3 -m validation.gpu_check [--repeats N] [--json FILE] [--skip-torch]``. Without a GPU
(or without numba-cuda) it says so in one line and exits with status 0 (``--require-gpu``: 3).
In the CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) ``--tiny`` runs both parts at tiny sizes
(the times then mean nothing); tests/test_device_sim.py does so. Exit status 1 if a comparison
fails.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

TASKS = ("shd", "ecg", "smnist")
SHD_TRAIN_SAMPLES, SHD_BATCH = 8156, 64
TOL = 1e-9


def _simulator() -> bool:
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"


def device_problem() -> str | None:
    """None where the CUDA backend can run here (a GPU, or the simulator), else why not."""
    from spikesim.backends import check_backend
    try:
        check_backend("cuda")
    except (ImportError, RuntimeError) as e:
        return str(e)
    return None


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = float(np.abs(b).max()) if b.size else 0.0
    err = float(np.abs(a - b).max()) if a.size else 0.0
    return 0.0 if err == 0 else err / max(scale, 1e-300)


def compare(name: str, tiny: bool = False) -> dict:
    """Part 1 for configuration ``name``: float64, CPU against CUDA backend."""
    from spikesim.network import Network
    from validation.problems import build, named_spec, with_overrides
    spec = with_overrides(named_spec(name), batch=2 if tiny else 8, steps=6 if tiny else 100,
                          width=5 if tiny else None, dtype="float64")
    cpu, x, labels = build(spec)
    gpu = Network(spec.cfg, params={k: v.copy() for k, v in cpu.params.items()},
                  dtype=np.float64, backend="cuda")
    l0, g0, _, t0 = cpu.loss_and_grad(x, labels)
    l1, g1, _, t1 = gpu.loss_and_grad(x, labels)
    errs = {k: _rel(g1[k], g0[k]) for k in g0}
    spikes = all(a.s_full is None or np.array_equal(a.s_full, b.s_full)
                 for a, b in zip(t1.layers, t0.layers))
    loss_err = abs(l1 - l0) / max(abs(l0), 1e-300)
    worst = max(errs, key=errs.get)
    ok = loss_err <= TOL and errs[worst] <= TOL and spikes
    return {"config": name, "batch": spec.batch, "steps": spec.steps, "loss_err": loss_err,
            "worst_grad": worst, "grad_err": errs[worst], "spikes_equal": spikes,
            "firing_rates": [r for r in t0.firing_rates() if r is not None], "ok": bool(ok)}


def time_spikesim(spec, repeats: int) -> dict:
    """Median seconds of one training step of ``spec`` on the CUDA backend (after two untimed
    steps, the first compiles), and the device bytes one step allocates."""
    from numba import cuda

    from spikesim.network import Network
    from validation.problems import build
    from validation.problems import time_step as timer
    cpu, x, labels = build(spec)
    net = Network(spec.cfg, params=cpu.params, dtype=cpu.dtype, backend="cuda")
    net.reuse_buffers = True

    def step():
        net.loss_and_grad(x, labels)        # the gradients come back to the host
        cuda.synchronize()
    ts = timer(step, repeats, warmup=2)
    ctx = cuda.current_context()
    flush = getattr(getattr(ctx, "deallocations", None), "clear", lambda: None)
    flush()         # the arrays of earlier steps, freed now (numba frees them in batches)
    free0, total = ctx.get_memory_info()
    with cuda.defer_cleanup():          # nothing freed during the step: what it allocates
        keep = net.loss_and_grad(x, labels)
        cuda.synchronize()
        free1, _ = ctx.get_memory_info()
    del keep
    flush()
    return {"median_s": float(np.median(ts)), "min_s": float(np.min(ts)),
            "step_bytes": int(free0 - free1) if math.isfinite(free0 - free1) else None,
            "device_total_bytes": int(total) if math.isfinite(total) else None}


def time_torch(spec, repeats: int) -> dict | None:
    """PyTorch eager autograd on the GPU (``torch_reference.time_spec``), or None without it."""
    from validation import torch_reference as tr
    if not tr.torch_cuda_available():
        return None
    r = tr.time_spec(spec, repeats, warmup=1, device="cuda")
    import torch
    torch.cuda.empty_cache()        # give the memory back for the next spikesim problem
    return {"median_s": r["median_s"], "min_s": r["min_s"], "peak_bytes": r["peak_bytes"],
            "torch": r["torch"]}


def timing_specs(tiny: bool = False) -> list:
    """The timed problems: the benchmark's shd, ecg, smnist and shd at batch 256 (``tiny``:
    the same at batch 2, 4 steps, width 4, for the simulator's test of this code)."""
    from validation.problems import named_spec, with_overrides
    specs = [named_spec(n) for n in TASKS]
    specs.append(dataclasses.replace(named_spec("shd"), batch=256, name="shd-b256"))
    if tiny:
        specs = [with_overrides(s, batch=2 * (1 + (s.batch > 64)), steps=4, width=4)
                 for s in specs]
    return specs


def _ms(v):
    return "-" if v is None else f"{v * 1e3:10.2f}"


def _mb(v):
    return "-" if v is None else f"{v / 2**20:8.1f}"


def run(args, out=print) -> int:
    t_start = time.perf_counter()
    why = device_problem()
    if why is not None:
        out(f"gpu_check: skipped, no GPU to check: {why}")
        return 3 if args.require_gpu else 0
    from numba import cuda
    sim = _simulator()
    dev = "the CUDA simulator" if sim else cuda.get_current_device().name
    dev = dev.decode() if isinstance(dev, bytes) else dev
    out(f"gpu_check on {dev}")
    result = {"device": dev, "compare": [], "timings": []}
    out(f"1. CPU backend against CUDA backend, float64, one training step (tolerance {TOL:g} "
        "of each tensor's largest element, identical spikes):")
    failed = 0
    for name in TASKS:
        c = compare(name, tiny=args.tiny)
        result["compare"].append(c)
        failed += not c["ok"]
        rates = ", ".join(f"{r:.3f}" for r in c["firing_rates"])
        out(f"  {'ok ' if c['ok'] else 'BAD'} {name:7s} B={c['batch']} T={c['steps']}  loss "
            f"{c['loss_err']:.1e}  worst gradient {c['worst_grad']} {c['grad_err']:.1e}  spikes "
            f"{'identical' if c['spikes_equal'] else 'DIFFER'}  (firing rates {rates})")
    if sim and not args.tiny:
        out("2. timings: skipped in the simulator (--tiny runs their code at tiny sizes)")
    else:
        tiny = args.tiny
        repeats = 1 if tiny else args.repeats
        note = " (--tiny: tiny sizes, the times mean nothing)" if tiny else ""
        out(f"2. one float32 training step (forward, loss, backward, gradients on the host), "
            f"median of {repeats}{note}:")
        head = (f"  {'config':9s} {'batch':>5s} {'steps':>5s} {'spikesim ms':>11s} "
                f"{'torch ms':>10s} {'torch/spk':>9s} {'spikesim MB':>11s} {'torch MB':>8s}")
        out(head)
        for spec in timing_specs(tiny):
            s = time_spikesim(spec, repeats)
            t = None if args.skip_torch else time_torch(spec, repeats)
            ratio = None if t is None else t["median_s"] / s["median_s"]
            result["timings"].append({"config": spec.name, "batch": spec.batch,
                                      "steps": spec.steps, "spikesim": s, "torch": t,
                                      "torch_over_spikesim": ratio})
            out(f"  {spec.name:9s} {spec.batch:5d} {spec.steps:5d} {_ms(s['median_s']):>11s} "
                f"{_ms(None if t is None else t['median_s']):>10s} "
                f"{'-' if ratio is None else f'{ratio:9.2f}':>9s} {_mb(s['step_bytes']):>11s} "
                f"{_mb(None if t is None else t['peak_bytes']):>8s}")
            sys.stdout.flush()
        shd = next(r for r in result["timings"] if r["config"] == "shd")
        steps = math.ceil(SHD_TRAIN_SAMPLES / SHD_BATCH)
        est = {"steps": steps, "spikesim_s": steps * shd["spikesim"]["median_s"],
               "torch_s": None if shd["torch"] is None else steps * shd["torch"]["median_s"]}
        result["shd_epoch"] = est
        out(f"  SHD epoch ({SHD_TRAIN_SAMPLES} samples, batch {SHD_BATCH}: {steps} steps, "
            f"training steps only): spikesim-CUDA {est['spikesim_s']:.1f} s"
            + ("" if est["torch_s"] is None else f", PyTorch CUDA {est['torch_s']:.1f} s"))
        if shd["torch"] is None:
            out("  (PyTorch with CUDA is not installed here: no PyTorch column)")
    result["seconds"] = time.perf_counter() - t_start
    out(f"{'all comparisons passed' if not failed else f'{failed} comparison(s) FAILED'}; "
        f"{result['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 1 if failed else 0


def add_args(p):
    p.add_argument("--repeats", type=int, default=5, help="timed steps per problem")
    p.add_argument("--tiny", action="store_true",
                   help="everything at tiny sizes (the simulator's test of this code)")
    p.add_argument("--skip-torch", action="store_true", help="no PyTorch timings")
    p.add_argument("--require-gpu", action="store_true",
                   help="exit with status 3 (not 0) where there is no GPU")
    p.add_argument("--json", default=None, help="write the results as JSON here")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_args(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
