"""Optimisers (Adam, Adamax) with per-parameter learning-rate multipliers, learning-rate
schedules (StepLR, linear decay, linear warm-up) and gradient-norm clipping, in plain NumPy.

The update rules are PyTorch's, so that the official training settings mean the same here.
"""
from __future__ import annotations

import fnmatch

import numpy as np

OPTIMIZERS = ("adam", "adamax")
#: parameters that weight decay shrinks by default: the weight matrices (not the biases or the
#: time constants, whose size is their meaning)
DECAY_PATTERNS = ("*.W_*",)


class Optimizer:
    """Adam or Adamax over a dict of arrays, updated in place.

    ``lr_mult`` maps glob patterns of parameter names to learning-rate multipliers (the first
    matching pattern wins), e.g. ``{"hidden.tau_*": 3.0, "out.tau_*": 2.0}``: the parameter
    groups of the official scripts. ``frozen`` patterns are never updated.
    ``weight_decay`` > 0 shrinks the parameters that match a pattern of ``decay`` (default:
    the weight matrices) by the factor 1 - lr * weight_decay before each update: the decoupled
    weight decay of AdamW (PyTorch's ``AdamW``), applied to Adamax the same way.
    """

    def __init__(self, params: dict, lr: float, kind: str = "adam", betas=(0.9, 0.999),
                 eps: float = 1e-8, lr_mult: dict | None = None, clip_norm: float | None = None,
                 frozen=(), weight_decay: float = 0.0, decay=DECAY_PATTERNS):
        if kind not in OPTIMIZERS:
            raise ValueError(f"unknown optimiser {kind!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be positive, got {clip_norm}")
        if not (np.isfinite(weight_decay) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay}")
        self.weight_decay, self.decay = float(weight_decay), tuple(decay)
        self.params, self.kind, self.base_lr, self.lr = params, kind, float(lr), float(lr)
        self.betas, self.eps, self.clip_norm = tuple(betas), float(eps), clip_norm
        self.lr_mult = dict(lr_mult or {})
        self.frozen = tuple(frozen)
        self.t = 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def mult(self, name: str) -> float:
        for pat, m in self.lr_mult.items():
            if fnmatch.fnmatch(name, pat):
                return float(m)
        return 1.0

    def to_device(self, dparams: dict, ops) -> "Optimizer":
        """Update device arrays from now on: ``dparams`` holds a device array of each
        parameter (the names of ``params``), ``ops`` launches the update kernels (the CUDA
        backend's ``optim.DeviceUpdate``). The moments move to the device; ``step`` then takes
        device gradients and updates ``dparams`` and the moments in place, with the same
        equations (only the gradient's sums of squares come back, for the norm), and the host
        ``params`` change only at ``sync_params``. Returns the optimiser."""
        if self.on_device:          # moments already there: new parameter arrays only
            self.ops, self.dparams = ops, dparams
            return self
        self.ops, self.dparams = ops, dparams
        self.m = {k: ops.to_device(v) for k, v in self.m.items()}
        self.v = {k: ops.to_device(v) for k, v in self.v.items()}
        return self

    @property
    def on_device(self) -> bool:
        return getattr(self, "ops", None) is not None

    def sync_params(self):
        """Copy the device parameters into the host ``params`` (in place); nothing to do on
        the host path."""
        if self.on_device:
            for k, p in self.params.items():
                self.dparams[k].copy_to_host(p)

    def step(self, grads: dict) -> float:
        """Apply one update; returns the gradient norm before clipping."""
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"gradients missing for {sorted(missing)}")
        if self.on_device:
            sq = self.ops.norm_squares([grads[k] for k in grads])
            norm = float(np.sqrt(sum(float(s) for s in sq)))
        else:
            norm = float(np.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64)))
                                     for g in grads.values())))
        if not np.isfinite(norm):
            raise FloatingPointError("gradient contains NaN or inf; parameters left unchanged")
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / (norm + 1e-6)
        self.t += 1
        b1, b2 = self.betas
        for k, p in self.params.items():
            if any(fnmatch.fnmatch(k, f) for f in self.frozen):
                continue
            lr = self.lr * self.mult(k)
            # decoupled weight decay (AdamW): p *= 1 - lr * weight_decay before the update
            decays = self.weight_decay and any(fnmatch.fnmatch(k, d) for d in self.decay)
            keep = 1.0 - lr * self.weight_decay if decays else 1.0
            if self.on_device:      # the kernels mirror the NumPy below (backends/cuda/optim.py)
                if decays:
                    self.ops.scale(self.dparams[k], keep)
                update = self.ops.adam if self.kind == "adam" else self.ops.adamax
                update(self.dparams[k], grads[k], self.m[k], self.v[k], scale, b1, b2, self.t,
                       lr, self.eps)
                continue
            if decays:
                p *= p.dtype.type(keep)
            g = grads[k] * scale if scale != 1.0 else grads[k]
            m, v = self.m[k], self.v[k]
            m *= b1
            m += (1 - b1) * g
            if self.kind == "adam":
                v *= b2
                v += (1 - b2) * g * g
                mhat = m / (1 - b1 ** self.t)
                vhat = v / (1 - b2 ** self.t)
                p -= (lr * mhat / (np.sqrt(vhat) + self.eps)).astype(p.dtype)
            else:  # adamax: infinity-norm second moment
                np.maximum(v * b2, np.abs(g) + self.eps, out=v)
                p -= (lr / (1 - b1 ** self.t) * m / v).astype(p.dtype)
        return norm

    def state_dict(self) -> dict:
        host = (lambda a: a.copy_to_host()) if self.on_device else (lambda a: a.copy())
        return {"kind": self.kind, "t": self.t, "lr": self.lr, "base_lr": self.base_lr,
                "m": {k: host(v) for k, v in self.m.items()},
                "v": {k: host(v) for k, v in self.v.items()}}

    def load_state_dict(self, st: dict):
        if st.get("kind") != self.kind:
            raise ValueError(f"optimiser state is for {st.get('kind')!r}, not {self.kind!r}")
        for key in ("m", "v"):
            if set(st[key]) != set(self.params):
                raise ValueError("optimiser state does not match the parameters")
            for k, a in st[key].items():
                if a.shape != self.params[k].shape:
                    raise ValueError(f"optimiser state for {k} has shape {a.shape}")
                if self.on_device:
                    getattr(self, key)[k].copy_to_device(
                        np.ascontiguousarray(a, dtype=self.params[k].dtype))
                else:
                    getattr(self, key)[k][...] = a
        self.t, self.lr, self.base_lr = int(st["t"]), float(st["lr"]), float(st["base_lr"])


class StepLR:
    """lr = base_lr * gamma ** (epoch // step_size), as torch.optim.lr_scheduler.StepLR."""

    def __init__(self, step_size: int, gamma: float = 0.5):
        if step_size < 1:
            raise ValueError("step_size must be >= 1")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def factor(self, epoch: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class LinearDecay:
    """lr = base_lr * (1 - epoch / total), as the official LambdaLR(1 - epoch/200)."""

    def __init__(self, total: int):
        if total < 1:
            raise ValueError("total must be >= 1")
        self.total = int(total)

    def factor(self, epoch: int) -> float:
        return max(0.0, 1.0 - epoch / self.total)


class Constant:
    def factor(self, epoch: int) -> float:
        return 1.0


class LinearWarmup:
    """Another schedule's factor, scaled by (epoch + 1) / epochs over the first ``epochs``
    epochs: 1/W, 2/W, ..., 1, then 1. The first epoch already trains (factor 1/W, never 0),
    and from epoch W on the factor is exactly the other schedule's. Like every schedule here
    it is a function of the epoch alone, so a resumed run gets the same learning rates."""

    def __init__(self, schedule, epochs: int):
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"warm-up epochs must be a positive integer, got {epochs!r}")
        self.schedule, self.epochs = schedule, epochs

    def factor(self, epoch: int) -> float:
        return min(1.0, (epoch + 1) / self.epochs) * self.schedule.factor(epoch)


def make_schedule(spec: dict | None):
    """{'kind': 'step', 'step_size': 100, 'gamma': 0.5} | {'kind': 'linear', 'total': 200}
    | {'kind': 'constant'} | None (constant); any kind may add 'warmup': W, a linear warm-up
    over the first W epochs (:class:`LinearWarmup`; 0 or absent: none)."""
    if not spec:
        return Constant()
    spec = dict(spec)
    kind = spec.pop("kind", None)
    warmup = spec.pop("warmup", 0)
    if kind == "step":
        schedule = StepLR(**spec)
    elif kind == "linear":
        schedule = LinearDecay(**spec)
    elif kind in ("constant", "none"):
        if spec:
            raise ValueError(f"a constant schedule takes no settings, got {sorted(spec)}")
        schedule = Constant()
    else:
        raise ValueError(f"unknown schedule {kind!r}; choose step, linear or constant")
    return LinearWarmup(schedule, warmup) if warmup else schedule
