"""Optional, independent PyTorch-autograd implementation of spikesim's networks.

Two uses:

1. Cross-check: spikesim's hand-written BPTT (float64) against PyTorch autograd (float64) on the
   same parameters, input, labels and initial state; they agree to ~1e-14 relative per tensor.
2. Timing: one training step (forward + backward + every gradient, float32) of a bench
   configuration (``validation.problems.configs()``) with PyTorch eager autograd on the CPU, or on
   an NVIDIA GPU (``device="cuda"``, where the installed PyTorch has CUDA and finds a GPU: the
   CUDA device check ``validation.gpu_check`` puts it next to spikesim's CUDA backend), to put
   next to spikesim's own numbers.

The forward pass is written the way the official PyTorch code of Yin, Corradi & Bohte does it
(docs/model.md sections 1-3): a Python loop over time, per layer a ``mem_update_adp`` (ALIF/LIF) or
``output_neuron`` (integrator) function that recomputes ``alpha = exp(-dt/tau_m)`` and
``rho = exp(-dt/tau_adp)`` each step, a ``torch.autograd.Function`` whose forward is the strict
Heaviside step ``x > 0`` (``gt(0)``) and whose backward is the surrogate gamma * f(x). The
conventions follow ``validation.reference_numpy``: initial state slots (u, s, b) per layer
(default u = 0, s = 0, b = b_j0; the integrator reads only u), a recurrent layer's two biases
both added, the losses ``nll_per_step`` (label -1 masks a step), ``ce_sum_softmax`` and
``ce_sum_spike`` (with an optional detached ``carry`` added to the sum, as spikesim's truncated
BPTT does), all as means over the batch.

Gradients follow spikesim's convention for frozen time constants: a tau with ``train_tau_m`` /
``train_tau_adp`` False gets no ``requires_grad`` and a zero gradient.

PyTorch is not a dependency of spikesim: this module imports without it, ``torch_available()``
says whether it can run.

``python -m validation.torch_reference [--check] [--bench shd|ecg|smnist|all] [--repeats N]
[--threads N] [--device cpu|cuda]``: ``--check`` prints the per-tensor max relative error
between spikesim and torch float64 gradients on small versions of each task topology and exits
non-zero above 1e-10; ``--bench`` prints the median seconds of one float32 training step per
configuration.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

from spikesim.model.config import NetworkConfig, SurrogateConfig, param_names, param_shapes

try:  # optional
    import torch
    import torch.nn.functional as F
    _TORCH_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the environment
    torch = None
    F = None
    _TORCH_ERROR = exc

__all__ = ["torch_available", "torch_cuda_available", "TorchNet", "time_step", "time_spec",
           "check", "main", "CHECK_TOL"]

CHECK_TOL = 1e-10


def torch_available() -> bool:
    """True when PyTorch can be imported."""
    return torch is not None


def torch_cuda_available() -> bool:
    """True when PyTorch is installed with CUDA and finds a GPU."""
    return torch is not None and bool(torch.cuda.is_available())


def _require_torch():
    if torch is None:
        raise ImportError(f"validation.torch_reference needs PyTorch, which is not installed "
                          f"({_TORCH_ERROR}); it is optional and not a dependency of spikesim")


# ----------------------------------------------------------------------------------------------
# spike function with surrogate gradient
# ----------------------------------------------------------------------------------------------

def _gaussian(x, mu, sigma):
    return torch.exp(-((x - mu) ** 2) / (2 * sigma ** 2)) / (math.sqrt(2 * math.pi) * sigma)


def surrogate_torch(x, sur: SurrogateConfig):
    """gamma * f(x), the pseudo-derivative of docs/model.md section 2 (exact sigmoid slope in smooth
    mode)."""
    name = sur.name
    if name == "smooth":
        s = torch.sigmoid(sur.k * x)
        return sur.k * s * (1 - s)
    if name == "gaussian":
        f = _gaussian(x, 0.0, sur.sigma)
    elif name == "multi_gaussian":
        f = (_gaussian(x, 0.0, sur.sigma) * (1.0 + sur.h)
             - _gaussian(x, sur.sigma, sur.scale * sur.sigma) * sur.h
             - _gaussian(x, -sur.sigma, sur.scale * sur.sigma) * sur.h)
    elif name == "linear":
        f = torch.clamp(1.0 - x.abs(), min=0.0)
    elif name == "slayer":
        f = torch.exp(-5.0 * x.abs())
    else:  # pragma: no cover - SurrogateConfig validates names
        raise ValueError(f"unknown surrogate {name!r}")
    return sur.gamma * f


if torch is not None:
    class ActFunADP(torch.autograd.Function):
        """Spike: H(x) = (x > 0) forward (sigmoid(k x) in smooth mode), surrogate backward."""

        @staticmethod
        def forward(ctx, x, sur):
            ctx.save_for_backward(x)
            ctx.sur = sur
            if sur.name == "smooth":
                return torch.sigmoid(sur.k * x)
            return x.gt(0).to(x.dtype)

        @staticmethod
        def backward(ctx, grad_output):
            (x,) = ctx.saved_tensors
            return grad_output * surrogate_torch(x, ctx.sur), None
else:  # pragma: no cover
    ActFunADP = None


def act_fun_adp(x, sur):
    return ActFunADP.apply(x, sur)


# ----------------------------------------------------------------------------------------------
# neuron updates, as the official code writes them
# ----------------------------------------------------------------------------------------------

def mem_update_adp(inputs, mem, spike, tau_adp, b, tau_m, layer):
    """One ALIF/LIF step: returns (mem, spike, B, b)."""
    dt = layer.dt
    alpha = torch.exp(-1.0 * dt / tau_m)
    ro = torch.exp(-1.0 * dt / tau_adp)
    b = ro * b + (1 - ro) * spike
    B = layer.b_j0 + layer.beta * b
    mem = mem * alpha + (1 - alpha) * inputs - B * spike * dt
    inputs_ = mem - B
    spike = act_fun_adp(inputs_, layer.surrogate)
    return mem, spike, B, b


def output_neuron(inputs, mem, tau_m, layer):
    """One step of the non-spiking leaky readout integrator."""
    alpha = torch.exp(-1.0 * layer.dt / tau_m)
    return mem * alpha + (1 - alpha) * inputs


# ----------------------------------------------------------------------------------------------
# the network
# ----------------------------------------------------------------------------------------------

class TorchNet:
    """PyTorch-autograd twin of ``spikesim.network.Network`` (same config, same params)."""

    def __init__(self, cfg: NetworkConfig, params: dict, dtype=None, device="cpu"):
        _require_torch()
        self.config = cfg
        self.dtype = torch.float32 if dtype is None else dtype
        self.device = torch.device(device)
        shapes = param_shapes(cfg)
        self.params = {}
        for name in param_names(cfg):
            if name not in params:
                raise KeyError(f"missing parameter {name!r}")
            a = np.asarray(params[name])
            if tuple(a.shape) != tuple(shapes[name]):
                raise ValueError(f"parameter {name!r} has shape {a.shape}, expected {shapes[name]}")
            self.params[name] = torch.tensor(a, dtype=self.dtype, device=self.device,
                                             requires_grad=self._trainable(name))

    def _trainable(self, name: str) -> bool:
        lname, kind = name.rsplit(".", 1)
        layer = next(l for l in self.config.layers if l.name == lname)
        if kind == "tau_m":
            return bool(layer.train_tau_m)
        if kind == "tau_adp":
            return bool(layer.train_tau_adp)
        return True

    def _tensor(self, a):
        if torch.is_tensor(a):
            return a.to(dtype=self.dtype, device=self.device)
        return torch.as_tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def _init_state(self, batch: int, state):
        state = {} if state is None else state
        out = {}
        for layer in self.config.layers:
            shape = (batch, layer.size)
            u = torch.zeros(shape, dtype=self.dtype, device=self.device)
            s = torch.zeros(shape, dtype=self.dtype, device=self.device)
            b = torch.full(shape, float(layer.b_j0), dtype=self.dtype, device=self.device)
            if layer.name in state:
                given = state[layer.name]
                u = self._tensor(given[0]).clone()
                if layer.spiking:
                    s = self._tensor(given[1]).clone()
                    b = self._tensor(given[2]).clone()
            out[layer.name] = [u, s, b]
        return out

    def forward(self, x, state=None):
        """Run the network on x (B, T, n_in). Returns the readout list over t >= loss.start:
        the last layer's membrane or spikes, each (B, C)."""
        cfg = self.config
        x = self._tensor(x)
        if x.ndim != 3 or x.shape[2] != cfg.n_in:
            raise ValueError(f"x must have shape (B, T, {cfg.n_in}), got {tuple(x.shape)}")
        batch, T, _ = x.shape
        st = self._init_state(batch, state)
        p = self.params
        spike_readout = cfg.loss.readout == "spike"
        readout = []
        for t in range(T):
            inp = x[:, t, :]
            for layer in cfg.layers:
                n = layer.name
                mem, spk, b = st[n]
                h_input = F.linear(inp, p[f"{n}.W_in"], p[f"{n}.b_in"])
                if layer.recurrent:
                    h_input = h_input + F.linear(spk, p[f"{n}.W_rec"], p[f"{n}.b_rec"])
                if layer.spiking:
                    mem, spk, _, b = mem_update_adp(h_input, mem, spk, p[f"{n}.tau_adp"], b,
                                                    p[f"{n}.tau_m"], layer)
                else:
                    mem = output_neuron(h_input, mem, p[f"{n}.tau_m"], layer)
                st[n] = [mem, spk, b]
                inp = spk
            if t >= cfg.loss.start:
                readout.append(spk if spike_readout else mem)
        return readout

    def loss(self, readout, labels, carry=None):
        """The configured loss (mean over the batch) of the readout list from :meth:`forward`."""
        cfg = self.config
        kind, start = cfg.loss.kind, cfg.loss.start
        out = torch.stack(readout)                     # (T - start, B, C)
        batch = out.shape[1]
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64, device=self.device)
        if kind == "nll_per_step":
            lab = labels[:, start:].T                  # (T - start, B)
            mask = lab >= 0
            logp = F.log_softmax(out, dim=-1)
            picked = logp.gather(-1, lab.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            return -(picked * mask.to(out.dtype)).sum() / batch
        if kind == "ce_sum_softmax":
            z = F.softmax(out, dim=-1).sum(0)
        else:   # ce_sum_spike
            z = out.sum(0)
        if carry is not None:
            z = z + self._tensor(carry)
        return F.cross_entropy(z, labels)

    def loss_and_grads(self, x, labels, state=None, carry=None):
        """Forward, loss, backward. Returns (loss float, grads dict name -> np.ndarray)."""
        for v in self.params.values():
            v.grad = None
        loss = self.loss(self.forward(x, state), labels, carry)
        loss.backward()
        grads = {}
        for k, v in self.params.items():
            g = v.grad if v.grad is not None else torch.zeros_like(v)
            grads[k] = g.detach().cpu().numpy().copy()
        return float(loss.item()), grads


# ----------------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------------

def time_step(name: str, repeats: int = 5, threads=None, warmup: int = 1,
              device: str = "cpu") -> dict:
    """Median seconds of one float32 training step of bench config ``name`` with PyTorch
    eager autograd on ``device`` (the CPU, or "cuda": see :func:`time_spec`; after ``warmup``
    untimed steps), with ``threads`` torch threads
    (default: all cores). On a machine whose cores are busy with other work, more torch
    threads than free cores can be many times slower than one thread (OpenMP workers wait for
    each other): time on a quiet machine, or compare with ``threads=1``."""
    from validation.problems import named_spec
    out = time_spec(named_spec(name), repeats, threads, warmup, device)
    out["config"] = name
    return out


def time_spec(spec, repeats: int = 5, threads=None, warmup: int = 1, device: str = "cpu") -> dict:
    """As :func:`time_step`, for any ``validation.problems.ProblemSpec`` (or its dict form),
    in the spec's dtype; always full BPTT, no optimiser update. With ``device="cuda"`` the
    parameters and the input live on the GPU, a step ends with the gradients copied to the host
    (which waits for the GPU), and the result has ``peak_bytes``: the most device memory PyTorch
    held for tensors during the timed steps (``torch.cuda.max_memory_allocated``)."""
    _require_torch()
    if device == "cuda" and not torch_cuda_available():
        raise RuntimeError("PyTorch finds no CUDA GPU (torch.cuda.is_available() is False; "
                           f"PyTorch {torch.__version__})")
    from validation.problems import ProblemSpec, build, dense_gflop
    from validation.problems import time_step as _time
    if isinstance(spec, dict):
        spec = ProblemSpec.from_dict(spec)
    cfg, B, T = spec.cfg, spec.batch, spec.steps
    net, x, labels = build(spec)
    old_threads = torch.get_num_threads()
    n_threads = int(threads or os.cpu_count() or 1)
    torch.set_num_threads(n_threads)
    dt = torch.float32 if spec.dtype == "float32" else torch.float64
    try:
        tnet = TorchNet(cfg, net.params, dtype=dt, device=device)
        xt = torch.as_tensor(np.asarray(x)).to(device)
        if device == "cuda":
            tnet.loss_and_grads(xt, labels)     # the first step: CUDA context and kernels
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        ts = _time(lambda: tnet.loss_and_grads(xt, labels), repeats, warmup)
        peak = int(torch.cuda.max_memory_allocated()) if device == "cuda" else None
    finally:
        torch.set_num_threads(old_threads)
    gflop = dense_gflop(cfg, B, T)
    med = float(np.median(ts))
    return {"config": spec.name, "batch": B, "steps": T, "median_s": med,
            "min_s": float(np.min(ts)), "repeats": repeats, "threads": n_threads, "gflop": gflop,
            "gflops": gflop / med, "torch": torch.__version__, "device": device,
            "peak_bytes": peak, "backend": f"pytorch eager autograd, {device}, {spec.dtype}"}


# ----------------------------------------------------------------------------------------------
# cross-check against spikesim
# ----------------------------------------------------------------------------------------------

def rel_err(a, b) -> float:
    """max|a - b| / max(max|a|, max|b|) (0 when both are zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b)) / scale)


def check_cases() -> dict:
    """name -> config: the reference cases of ``validation.gradcheck_cases`` (the task
    networks at reduced width, a wide one, every surrogate in every layer kind), plus the SHD
    topology with each remaining surrogate (gaussian, linear, slayer, smooth)."""
    import dataclasses

    from validation.gradcheck_cases import reference_cases
    cases = dict(reference_cases())
    base = cases["shd"]
    for sname in ("gaussian", "linear", "slayer", "smooth"):
        sur = SurrogateConfig(sname, k=1.5) if sname == "smooth" else SurrogateConfig(sname)
        layers = [dataclasses.replace(l, surrogate=sur) if l.spiking else dataclasses.replace(l)
                  for l in base.layers]
        cases[f"shd/{sname}"] = NetworkConfig(base.n_in, layers, dataclasses.replace(base.loss))
    return cases


def compare(cfg: NetworkConfig, B: int = 4, T: int = 40, seed: int = 7, carry: bool = False):
    """spikesim float64 vs torch float64 on one random problem (random initial state, spikes
    included). Returns (loss relative error, {param: relative error}, firing rates)."""
    _require_torch()
    from spikesim.network import Network, initial_state
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in"):
            v *= 3.0
        elif k.endswith("W_rec") and not np.any(v):
            v += rng.normal(0, 0.3, v.shape)
    x = (rng.random((B, T, cfg.n_in)) < 0.3) * rng.random((B, T, cfg.n_in))
    if cfg.loss.kind == "nll_per_step":
        labels = rng.integers(0, cfg.n_out, (B, T))
        labels[rng.random((B, T)) < 0.2] = -1
    else:
        labels = rng.integers(0, cfg.n_out, B)
    c = rng.random((B, cfg.n_out)) * 3 if carry and cfg.loss.kind != "nll_per_step" else None
    state = initial_state(cfg, B, np.float64, "random", rng=rng, spikes=True)
    loss, grads, _, trace = net.loss_and_grad(x, labels, state, carry=c)
    tloss, tgrads = TorchNet(cfg, net.params, dtype=torch.float64).loss_and_grads(x, labels,
                                                                                  state, c)
    errs = {k: rel_err(grads[k], tgrads[k]) for k in grads}
    rates = [r for r in trace.firing_rates() if r is not None]
    return abs(loss - tloss) / max(abs(loss), 1e-300), errs, rates


def check(tol: float = CHECK_TOL, out=print, B: int = 4, T: int = 40) -> int:
    """Print the per-tensor errors of every check case; return the number above ``tol``."""
    bad = 0
    worst = 0.0
    for name, cfg in check_cases().items():
        le, errs, rates = compare(cfg, B=B, T=T, carry=name.startswith("smnist"))
        out(f"  {'ok ' if le <= tol else 'BAD'}  {name:14s} {'loss':16s} {le:9.2e}  "
            f"(firing rates {', '.join(f'{r:.3f}' for r in rates)})")
        bad += le > tol
        for k, e in errs.items():
            bad += e > tol
            worst = max(worst, e)
            out(f"  {'ok ' if e <= tol else 'BAD'}  {name:14s} {k:16s} {e:9.2e}")
    out(f"largest gradient error {worst:.2e}; {bad} above {tol:g}")
    return bad


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="compare spikesim and torch float64 gradients on small task topologies")
    p.add_argument("--bench", choices=["shd", "ecg", "smnist", "all"], default=None,
                   help="time one float32 training step with PyTorch eager autograd")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--tol", type=float, default=CHECK_TOL)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where --bench runs PyTorch (cuda: an NVIDIA GPU)")
    args = p.parse_args(argv)
    if not torch_available():
        print(f"PyTorch is not installed ({_TORCH_ERROR}); nothing to do", file=sys.stderr)
        return 2
    if not args.check and args.bench is None:
        p.print_help()
        return 0
    rc = 0
    if args.check:
        from spikesim.backends.cpu.threads import compute_threads
        print(f"spikesim (float64) vs PyTorch {torch.__version__} autograd (float64), "
              f"max relative error per tensor (tolerance {args.tol:g}):")
        with compute_threads():
            bad = check(args.tol)
        rc = 1 if bad else 0
    if args.bench is not None:
        from validation.problems import configs
        names = list(configs()) if args.bench == "all" else [args.bench]
        if args.device == "cuda" and not torch_cuda_available():
            print(f"PyTorch {torch.__version__} finds no CUDA GPU; --device cuda cannot run",
                  file=sys.stderr)
            return 2
        print(f"PyTorch {torch.__version__} eager autograd, {args.device}, float32, one training "
              f"step (forward + backward, all grads), median of {args.repeats}:")
        print(f"{'config':8s} {'batch':>5s} {'steps':>5s} {'threads':>7s} {'median s':>9s} "
              f"{'min s':>8s} {'GFLOP':>7s} {'GFLOP/s':>8s}")
        for name in names:
            r = time_step(name, args.repeats, args.threads, device=args.device)
            print(f"{name:8s} {r['batch']:5d} {r['steps']:5d} {r['threads']:7d} "
                  f"{r['median_s']:9.3f} {r['min_s']:8.3f} {r['gflop']:7.2f} {r['gflops']:8.1f}",
                  flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
