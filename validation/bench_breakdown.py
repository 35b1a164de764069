"""Timing of one training step as training runs it, and its per-kernel breakdown.

The step is ``spikesim.train.trainer.train_step`` (forward, loss, backward and an Adam update;
with ``tbptt`` its truncated BPTT, chunk by chunk), on a problem of ``validation.problems``.
The parameters are put back after every step (outside the timed span), so each repeat runs
the same problem at the same firing rates.

The breakdown runs the same steps with two kinds of instrumentation that change nothing that
runs: the CPU backend's ``kernel_timer`` hook (``perf_counter`` around each kernel call in
each thread) and wrappers on the network's ``forward``, ``loss``, ``backward`` and the
optimiser's ``step`` (instance attributes that call the original method). A kernel's share is
its mean time over the chunks (threads run the chunks side by side), summed over the
truncation chunks. The parts add up to the instrumented step's wall time by construction:

  input lists, each layer's forward, "forward: host and hand-off" (the rest of the forward
  wall: parameter layout, thread wake-ups, waiting for the slower chunk), the loss, each
  layer's backward, "backward: host and hand-off", the optimiser, and "step: other" (the
  rest of ``train_step``: slicing, carried state).
"""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict

import numpy as np

from spikesim.backends.cpu import backend as cpu_backend
from spikesim.train.optim import Optimizer
from spikesim.train.trainer import train_step

LR = 1e-3


class TrainingStep:
    """One training step of (net, x, labels), run again and again from the same parameters."""

    def __init__(self, net, x, labels, tbptt=None):
        self.net, self.x, self.labels, self.tbptt = net, x, labels, tbptt
        self.saved = {k: v.copy() for k, v in net.params.items()}
        self.opt = None
        self.reset()

    def reset(self):
        """Parameters back to their saved values, a fresh optimiser (not timed)."""
        for k, v in self.saved.items():
            self.net.params[k][...] = v
        self.opt = Optimizer(self.net.params, LR)

    def __call__(self):
        return train_step(self.net, self.opt, self.x, self.labels, None, self.tbptt)


def time_train_step(net, x, labels, tbptt=None, repeats: int = 5, warmup: int = 1) -> dict:
    """Seconds per step of ``train_step``: {median_s, min_s, times, rates} (rates: each layer's
    firing rate over the step, as train_step reports it)."""
    step = TrainingStep(net, x, labels, tbptt)
    ts, rates = [], None
    with net.session():
        for i in range(warmup + repeats):
            step.reset()
            t = time.perf_counter()
            _, _, _, rates = step()
            if i >= warmup:
                ts.append(time.perf_counter() - t)
    step.reset()
    return {"median_s": float(np.median(ts)), "min_s": float(np.min(ts)), "times": ts,
            "rates": rates}


@contextlib.contextmanager
def _wrapped(obj, name, sink):
    """Shadow ``obj.name`` with a wrapper adding each call's wall time to ``sink[name]``."""
    orig = getattr(obj, name)

    def timed(*a, **k):
        t = time.perf_counter()
        try:
            return orig(*a, **k)
        finally:
            sink[name] += time.perf_counter() - t

    setattr(obj, name, timed)
    try:
        yield
    finally:
        delattr(obj, name)


@contextlib.contextmanager
def kernel_timing(sink: list):
    """Turn the CPU backend's kernel timer on for the duration: appends (chunk, index,
    kernel name, seconds) to ``sink`` (list.append is atomic across threads)."""
    if cpu_backend.kernel_timer is not None:
        raise RuntimeError("the kernel timer is already in use")
    cpu_backend.kernel_timer = lambda c, i, name, s: sink.append((c, i, name, s))
    try:
        yield
    finally:
        cpu_backend.kernel_timer = None


def _one_breakdown(step: TrainingStep) -> tuple:
    """(total seconds, {part: seconds}) of one instrumented step."""
    net, cfg = step.net, step.net.config
    walls = defaultdict(float)
    kernels: list = []
    step.reset()
    with contextlib.ExitStack() as stack:
        for name in ("forward", "loss", "backward"):
            stack.enter_context(_wrapped(net, name, walls))
        stack.enter_context(_wrapped(step.opt, "step", walls))
        stack.enter_context(kernel_timing(kernels))
        t = time.perf_counter()
        step()
        total = time.perf_counter() - t
    nch = 1 + max((c for c, *_ in kernels), default=0)
    L = len(cfg.layers)
    fwd, bwd = defaultdict(float), defaultdict(float)
    for _chunk, i, name, s in kernels:
        if name.endswith("_backward"):
            bwd[cfg.layers[L - 1 - i].name] += s / nch
        elif name == "input_lists":
            fwd["input lists"] += s / nch
        else:
            fwd[cfg.layers[i - 1].name] += s / nch
    parts = {"input lists": fwd.pop("input lists", 0.0)}
    for layer in cfg.layers:
        parts[f"{layer.name} forward"] = fwd.get(layer.name, 0.0)
    parts["forward: host and hand-off"] = walls["forward"] - sum(parts.values())
    parts["loss"] = walls["loss"]
    for layer in reversed(cfg.layers):
        parts[f"{layer.name} backward"] = bwd.get(layer.name, 0.0)
    parts["backward: host and hand-off"] = walls["backward"] - sum(bwd.values())
    parts["optimiser"] = walls["step"]
    parts["step: other"] = total - sum(parts.values())
    return total, parts


def breakdown(net, x, labels, tbptt=None, repeats: int = 3) -> dict:
    """The per-kernel breakdown of ``train_step``, averaged over ``repeats`` instrumented steps
    (after one plain warm-up step): {total_s, parts: [{part, seconds, share}], repeats}. The
    parts' seconds sum to total_s (the mean instrumented step)."""
    step = TrainingStep(net, x, labels, tbptt)
    with net.session():
        step.reset()
        step()
        runs = [_one_breakdown(step) for _ in range(repeats)]
    step.reset()
    total = float(np.mean([t for t, _ in runs]))
    names = list(runs[0][1])
    parts = [{"part": n, "seconds": float(np.mean([p[n] for _, p in runs]))} for n in names]
    for p in parts:
        p["share"] = p["seconds"] / total
    return {"total_s": total, "parts": parts, "repeats": repeats}
