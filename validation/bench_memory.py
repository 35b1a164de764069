"""Peak memory of one training step, each measurement in a fresh process.

Numba's allocations (NRT) are invisible to ``tracemalloc``, so the step's memory is read from
the kernel: in a child process the problem is built and the kernels are warmed up on a tiny
problem of the same network (so that compiled code, thread pools and the input itself are in
the baseline), the peak resident set is reset (``/proc/self/clear_refs`` with 5, Linux >= 4.0),
one step runs, and the growth of the peak (VmHWM) over the resident set just before the step
is the step's peak memory: the forward trace (membranes, spike lists, b checkpoints), the
backward's work arrays and gradients, and the loss's arrays. Where the peak cannot be reset,
``ru_maxrss`` growth is used instead and ``method`` says so (it can then hide under an earlier
transient peak, reported as ``hidden``).

Beside it the child reports the CPU backend's own work arrays (``workspace_bytes``: their
allocated sizes, of which list arrays, allocated for every neuron firing, are only partly
touched) and the model count of the trace (``validation.bench_counts``).

``engine="torch"``: PyTorch eager autograd (``validation.torch_reference``) on the same
problem, full BPTT only; what autograd holds for the backward is in its peak.
"""
from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys

from validation.problems import ProblemSpec, build, with_overrides

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _status_kib(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _measure(run_step) -> dict:
    """Peak growth of ``run_step()`` over the resident set just before it."""
    gc.collect()
    rss0 = _status_kib("VmRSS")
    max0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    reset = rss0 is not None and _reset_peak()
    run_step()
    if reset and _status_kib("VmHWM") is not None:
        return {"method": "VmHWM after clear_refs", "peak_bytes": 1024 * (_status_kib("VmHWM")
                                                                           - rss0),
                "baseline_rss_bytes": 1024 * rss0, "hidden": False}
    max1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"method": "ru_maxrss growth", "peak_bytes": 1024 * (max1 - max0),
            "baseline_rss_bytes": None if rss0 is None else 1024 * rss0,
            "hidden": max1 == max0}


def _child_spikesim(spec: ProblemSpec, tbptt) -> dict:
    import numpy as np

    from validation.bench_breakdown import TrainingStep
    from validation.bench_counts import step_counts
    tiny = with_overrides(spec, batch=min(spec.batch, 4), steps=min(spec.steps, 24))
    tnet, tx, ty = build(tiny)
    with tnet.session():
        TrainingStep(tnet, tx, ty, tbptt and min(tbptt, 8))()
    del tnet, tx, ty
    net, x, labels = build(spec)
    step = TrainingStep(net, x, labels, tbptt)
    out = {}

    def run():
        with net.session():
            out["rates"] = step()[3]

    res = _measure(run)
    res["workspace_bytes"] = int(sum(a.nbytes for a in net.backend._ws.values()))
    T = min(spec.steps, tbptt or spec.steps)
    res["model_trace_bytes"] = step_counts(spec.cfg, spec.batch, T, np.dtype(spec.dtype).itemsize,
                                           float(np.count_nonzero(x) / x.size),
                                           out["rates"])["trace_bytes"]
    return res


def _child_torch(spec: ProblemSpec) -> dict:
    from validation import torch_reference as tr
    if not tr.torch_available():
        return {"error": "PyTorch is not installed"}
    import torch
    torch.set_num_threads(os.cpu_count() or 1)
    dt = torch.float32 if spec.dtype == "float32" else torch.float64
    tiny = with_overrides(spec, batch=min(spec.batch, 4), steps=min(spec.steps, 24))
    tnet, tx, ty = build(tiny)
    tr.TorchNet(tiny.cfg, tnet.params, dtype=dt).loss_and_grads(torch.as_tensor(tx), ty)
    net, x, labels = build(spec)
    tnet = tr.TorchNet(spec.cfg, net.params, dtype=dt)
    xt = torch.as_tensor(x)
    return _measure(lambda: tnet.loss_and_grads(xt, labels))


def measure(spec: ProblemSpec, tbptt=None, engine: str = "spikesim", timeout: float = 600):
    """Peak memory of one step of ``spec`` (``engine``: spikesim or torch) in a fresh process:
    the child's record (see the module docstring), or {error: ...}."""
    arg = json.dumps({"spec": spec.to_dict(), "tbptt": tbptt, "engine": engine})
    try:
        out = subprocess.run([sys.executable, "-m", "validation.bench_memory", arg],
                             capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-400:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    a = json.loads((argv or sys.argv[1:])[0])
    spec = ProblemSpec.from_dict(a["spec"])
    res = (_child_torch(spec) if a["engine"] == "torch"
           else _child_spikesim(spec, a["tbptt"]))
    res.update(engine=a["engine"], tbptt=a["tbptt"] if a["engine"] == "spikesim" else None)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
