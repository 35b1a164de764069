"""A chain of spiking layers: parameters, initialisation, forward pass and BPTT.

The Python here only arranges arrays and calls the kernels of ``spikesim.kernels.cpu``; no
time loop runs in Python. Data enter as (B, T, n_in) and are made time-major (T, B, n_in).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..kernels import cpu
from ..kernels.threads import compute_threads, n_chunks, run_chunks
from .config import NetworkConfig, param_shapes
from .surrogates import surrogate_tuple
from ..train import losses
from ..workspace import work_array



# ----------------------------------------------------------------------------------------------
# Initialisation
# ----------------------------------------------------------------------------------------------
def _init_weight(kind: str, shape, rng: np.random.Generator) -> np.ndarray:
    fan_out, fan_in = shape
    if kind == "zeros":
        return np.zeros(shape)
    if kind == "xavier_uniform":
        a = math.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-a, a, size=shape)
    if kind == "kaiming_uniform":           # PyTorch's default for nn.Linear
        a = 1.0 / math.sqrt(fan_in)
        return rng.uniform(-a, a, size=shape)
    if kind == "orthogonal":                # as torch.nn.init.orthogonal_
        flat = rng.standard_normal((max(shape), min(shape)))
        q, r = np.linalg.qr(flat)
        q *= np.sign(np.diag(r))
        return q.T if fan_out < fan_in else q
    raise ValueError(f"unknown initialisation {kind!r}")


def init_params(cfg: NetworkConfig, seed: int = 0, dtype=np.float32) -> dict:
    """Fresh parameters from ``seed``: the initialisations named in each layer's config."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(cfg).items():
        lname, kind = name.rsplit(".", 1)
        layer = next(l for l in cfg.layers if l.name == lname)
        if kind == "W_in":
            v = _init_weight(layer.w_in_init, shape, rng)
        elif kind == "W_rec":
            v = _init_weight(layer.w_rec_init, shape, rng)
        elif kind in ("b_in", "b_rec"):
            v = np.zeros(shape)
        else:
            mean, std = layer.tau_m if kind == "tau_m" else layer.tau_adp
            v = rng.normal(mean, std, size=shape) if std > 0 else np.full(shape, mean)
        params[name] = v.astype(dtype)
    return params


def check_params(cfg: NetworkConfig, params: dict, dtype=None) -> dict:
    """Validate a parameter dict against the config: names, shapes, dtype, finiteness."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict of arrays, got {type(params).__name__}")
    shapes = param_shapes(cfg)
    missing = sorted(set(shapes) - set(params))
    extra = sorted(set(params) - set(shapes))
    if missing or extra:
        raise ValueError(f"parameters do not match the network: missing {missing}, unexpected {extra}")
    out = {}
    for name, shape in shapes.items():
        v = params[name]
        if not isinstance(v, np.ndarray):
            raise TypeError(f"parameter {name} must be a numpy array, got {type(v).__name__}")
        if v.shape != shape:
            raise ValueError(f"parameter {name} has shape {v.shape}, the network needs {shape}")
        if not np.issubdtype(v.dtype, np.floating):
            raise TypeError(f"parameter {name} has dtype {v.dtype}, expected a float dtype")
        if dtype is not None and v.dtype != dtype:
            raise TypeError(f"parameter {name} has dtype {v.dtype}, the network runs in {np.dtype(dtype)}")
        if not np.all(np.isfinite(v)):
            raise ValueError(f"parameter {name} contains NaN or inf")
        out[name] = v
    return out


# ----------------------------------------------------------------------------------------------
# State and trace
# ----------------------------------------------------------------------------------------------
def initial_state(cfg: NetworkConfig, batch: int, dtype=np.float32, mode: str = "zeros",
                  rng: np.random.Generator | None = None, scale="b_j0", spikes: bool = False) -> dict:
    """Initial (u, s, b) per layer, each (B, N).

    ``zeros``: u = 0, s = 0, b = b_j0 (deterministic). ``random``: the official scripts' state,
    u ~ uniform[0,1) * scale with scale = b_j0 (NMI scripts) or a number (1.0: ICONS notebook),
    and, with ``spikes``, s drawn the same way (S-MNIST 2020 / ICONS); b = b_j0 always.
    """
    if mode not in ("zeros", "random"):
        raise ValueError(f"unknown initial state mode {mode!r}; choose 'zeros' or 'random'")
    if mode == "random" and rng is None:
        raise ValueError("a random initial state needs an rng (numpy Generator)")
    state = {}
    for layer in cfg.layers:
        shape = (batch, layer.size)
        u = np.zeros(shape, dtype)
        s = np.zeros(shape, dtype)
        if mode == "random":
            k = layer.b_j0 if scale == "b_j0" else float(scale)
            u[...] = rng.random(shape) * k
            if spikes and layer.spiking:
                s[...] = rng.random(shape) * k
        b = np.full(shape, layer.b_j0, dtype)
        state[layer.name] = (u, s, b)
    return state


@dataclass
class LayerTrace:
    """What one layer's forward pass keeps for its backward pass.

    ``x_lists`` = (p0, p1, col, val): the non-zeros of each input row r = t*B + b of the
    layer's input (data or the previous layer's spikes) are entries p0[r] <= p < p1[r] of
    (col, val); ``s_lists`` the same for the layer's own spikes over all T + 1 slots (row
    t*B + b is slot t). ``u_full`` (T+1,B,N) holds the initial membrane in slot 0 and the one
    after step t in slot t+1; of the adaptation trace only every ``cpu.CHECK``-th slot is kept
    (``b_check``), and the state after the last step (``s_last``, ``b_last``). The dense
    ``s_full`` and ``bt_full`` are built from these on first use (None for the integrator).
    """
    x_lists: tuple
    s_lists: tuple | None
    n_in: int
    u_full: np.ndarray
    b_check: np.ndarray | None = None
    s_last: np.ndarray | None = None
    b_last: np.ndarray | None = None
    rho: np.ndarray | None = None       # per-neuron rho, 1 - rho, to rebuild bt_full
    omr: np.ndarray | None = None
    _s: np.ndarray | None = field(default=None, repr=False)
    _bt: np.ndarray | None = field(default=None, repr=False)

    @property
    def spiking(self) -> bool:
        return self.s_lists is not None

    @property
    def s_full(self) -> np.ndarray | None:
        """Spikes (T+1,B,N), slot 0 the initial ones; built from the lists on first use."""
        if self.spiking and self._s is None:
            S, B, N = self.u_full.shape
            self._s = np.empty((S, B, N), self.u_full.dtype)
            cpu.lists_to_dense(0, B, B, *self.s_lists, self._s)
        return self._s

    @property
    def bt_full(self) -> np.ndarray | None:
        """Adaptation trace (T+1,B,N), rebuilt from its checkpoints and the spikes on first use."""
        if self.spiking and self._bt is None:
            s = self.s_full
            self._bt = np.empty_like(s)
            cpu.adaptation_trace(s, self.b_check[0], self.rho, self.omr, self._bt)
        return self._bt

    @property
    def u(self) -> np.ndarray:
        return self.u_full[1:]

    @property
    def s(self) -> np.ndarray | None:
        return None if not self.spiking else self.s_full[1:]

    @property
    def bt(self) -> np.ndarray | None:
        return None if not self.spiking else self.bt_full[1:]

    def spike_sums(self) -> float:
        """Sum of all spikes of slots 1..T (from the lists, without building s_full)."""
        p0, p1, col, val = self.s_lists
        B = self.u_full.shape[1]
        return cpu.lists_sum(p0[B:], p1[B:], val)


@dataclass
class Trace:
    """The forward pass of a network: one LayerTrace per layer, time-major. ``nch``: the
    number of batch chunks the forward ran in; the backward runs in the same chunks (the
    kernels rely on each chunk's list entries lying one after the other)."""
    layers: list = field(default_factory=list)
    nch: int = 1

    @property
    def output_mem(self) -> np.ndarray:
        return self.layers[-1].u

    @property
    def output_spikes(self) -> np.ndarray | None:
        return self.layers[-1].s

    def final_state(self, cfg: NetworkConfig) -> dict:
        """State after the last step, copied: the initial state of the next truncated chunk."""
        out = {}
        for layer, tr in zip(cfg.layers, self.layers):
            u = tr.u_full[-1].copy()
            s = tr.s_last.copy() if tr.spiking else np.zeros_like(u)
            b = tr.b_last.copy() if tr.spiking else np.full_like(u, layer.b_j0)
            out[layer.name] = (u, s, b)
        return out

    def firing_rates(self) -> list:
        """Mean spikes per neuron per step of each spiking layer (None for the integrator)."""
        return [tr.spike_sums() / tr.u.size if tr.spiking else None for tr in self.layers]


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
def _run_calls(c, lo, hi, calls):
    """kernel(c, lo, hi, *args) for each (kernel, args) of ``calls`` in order: one chunk's share
    of several kernels in a single hand-off to the thread pool."""
    for kernel, args in calls:
        kernel(c, lo, hi, *args)


class Network:
    """A configured chain of layers with its parameters; forward, loss and gradients."""

    def __init__(self, config: NetworkConfig, params: dict | None = None, seed: int = 0,
                 dtype=np.float32):
        if isinstance(config, dict):
            config = NetworkConfig.from_dict(config)
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config must be a NetworkConfig or dict, got {type(config).__name__}")
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        self.config = config
        self.dtype = dtype
        self.seed = seed
        if params is None:
            params = init_params(config, seed, dtype)
        else:
            params = {k: np.ascontiguousarray(v, dtype=dtype) if isinstance(v, np.ndarray) else v
                      for k, v in params.items()}
        self.params = check_params(config, params, dtype)
        self.reuse_buffers = False     # Trainer/bench turn this on; traces are then overwritten
        self._ws: dict = {}

    # -- input checks --------------------------------------------------------------------------
    def _check_input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a numpy array, got {type(x).__name__}")
        if x.ndim != 3:
            raise ValueError(f"input must have shape (batch, time, {self.config.n_in}), got {x.shape}")
        if x.shape[2] != self.config.n_in:
            raise ValueError(f"input has {x.shape[2]} channels, the network expects {self.config.n_in}")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"input is empty: shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
                or x.dtype == np.bool_):
            raise TypeError(f"input dtype {x.dtype} is not a real number type")
        return np.ascontiguousarray(x, dtype=self.dtype)     # NaN/inf are caught by input_lists

    def _check_state(self, state, batch: int) -> dict:
        if state is None:
            return initial_state(self.config, batch, self.dtype)
        if not isinstance(state, dict):
            raise TypeError("state must be a dict: layer name -> (u, s, b)")
        out = {}
        for layer in self.config.layers:
            if layer.name not in state:
                raise ValueError(f"state has no entry for layer {layer.name!r}")
            tup = state[layer.name]
            if len(tup) != 3:
                raise ValueError(f"state of layer {layer.name!r} must be (u, s, b)")
            arrs = []
            for a in tup:
                a = np.asarray(a)
                if a.shape != (batch, layer.size):
                    raise ValueError(f"state of layer {layer.name!r} has shape {a.shape}, "
                                     f"expected {(batch, layer.size)}")
                arrs.append(np.ascontiguousarray(a, dtype=self.dtype))
            out[layer.name] = tuple(arrs)
        return out

    def _consts(self, layer):
        p, d = self.params, self.dtype.type
        dt = d(layer.dt)
        alpha = np.exp(-dt / p[f"{layer.name}.tau_m"]).astype(self.dtype)
        rho = (np.exp(-dt / p[f"{layer.name}.tau_adp"]).astype(self.dtype)
               if layer.spiking else np.zeros_like(alpha))
        return alpha, (1 - alpha).astype(self.dtype), rho, (1 - rho).astype(self.dtype), dt

    # -- forward -------------------------------------------------------------------------------
    def forward(self, x, state=None) -> Trace:
        """Run the network on x (B, T, n_in) from ``state`` (default: the deterministic one)."""
        x = self._check_input(x)
        state = self._check_state(state, x.shape[0])
        with compute_threads():
            return self._forward(x, state)

    def _buf(self, key, shape) -> np.ndarray:
        """A work array, 64-byte aligned (the forward streams the membrane into it with aligned
        non-temporal stores): reused across calls when ``reuse_buffers`` is on (fresh multi-MB
        arrays per step cost page faults), else freshly allocated."""
        return work_array(self._ws if self.reuse_buffers else None, key, shape, self.dtype)

    def _forward(self, x, state) -> Trace:
        """All layers' kernels for one chunk of the batch run in one hand-off to the thread pool
        (``_run_calls``): a chunk's rows depend on nothing outside the chunk, and each hand-off
        costs a thread wake-up (about 80 us here, per call)."""
        B, T, _ = x.shape
        trace = Trace(nch=n_chunks(B))
        lists, bad, calls = self._input_lists_call(x)
        n_in = x.shape[2]
        for li, layer in enumerate(self.config.layers):
            n, N = layer.name, layer.size
            WinT = np.ascontiguousarray(self.params[f"{n}.W_in"].T)
            bias = self.params[f"{n}.b_in"]
            if layer.recurrent:
                bias = bias + self.params[f"{n}.b_rec"]
            alpha, oma, rho, omr, dt = self._consts(layer)
            u0, s0, b0 = state[n]
            u = self._buf(f"{li}.u", (T + 1, B, N))
            u[0] = u0
            if layer.spiking:
                bchk = self._buf(f"{li}.bchk", (T // cpu.CHECK + 1, B, N))
                s_last, b_last = np.empty((B, N), self.dtype), np.empty((B, N), self.dtype)
                WrecT = (np.ascontiguousarray(self.params[f"{n}.W_rec"].T) if layer.recurrent
                         else np.zeros((1, 1), self.dtype))
                sp = surrogate_tuple(layer.surrogate, self.dtype)
                R = (T + 1) * B         # capacity: every neuron of every slot (smooth spikes)
                s_lists = (self._list_buf(f"{li}.p0", R, np.int64), self._list_buf(f"{li}.p1", R, np.int64),
                           self._list_buf(f"{li}.col", R * N, np.int32),
                           self._list_buf(f"{li}.val", R * N, self.dtype))
                calls.append((cpu.alif_forward, (*lists, WinT, bias, WrecT, layer.recurrent, alpha,
                              oma, rho, omr, self.dtype.type(layer.beta),
                              self.dtype.type(layer.b_j0), dt, sp, u, s0, b0, bchk, s_last,
                              b_last, *s_lists)))
                ltr = LayerTrace(lists, s_lists, n_in, u, bchk, s_last, b_last, rho, omr)
            else:
                s_lists = None
                calls.append((cpu.integrator_forward, (*lists, WinT, bias, alpha, oma, u)))
                ltr = LayerTrace(lists, None, n_in, u)
            trace.layers.append(ltr)
            if s_lists is not None:     # the next layer reads s_0..s_{T-1}: slots 1..T, rows B..
                lists, n_in = (s_lists[0][B:], s_lists[1][B:], s_lists[2], s_lists[3]), N
        run_chunks(_run_calls, B, calls, nch=trace.nch)
        if bad.any():
            raise ValueError("input contains NaN or inf")
        for layer, ltr in zip(self.config.layers, trace.layers):
            if not np.isfinite(ltr.u_full[-1]).all():   # NaN/inf persist in the membrane
                raise ValueError(f"layer {layer.name!r} produced NaN or inf")
        return trace

    def _input_lists_call(self, X):
        """The lists (p0, p1, col, val) that will hold the non-zeros of each row t*B + b of the
        input X (B,T,N), the per-chunk count of NaN/inf found, and the kernel call that fills
        them, as a list of (kernel, args) for ``_run_calls``."""
        B, T, N = X.shape
        bad = np.zeros(n_chunks(B), np.int64)
        lists = (self._list_buf("x.p0", T * B, np.int64), self._list_buf("x.p1", T * B, np.int64),
                 self._list_buf("x.col", T * B * N, np.int32), self._list_buf("x.val", T * B * N, self.dtype))
        return lists, bad, [(cpu.input_lists, (X, *lists, bad))]

    def _list_buf(self, key, n, dtype) -> np.ndarray:
        """A 1D work array for lists, reused when ``reuse_buffers`` is on. Lists are allocated
        at full capacity (every element non-zero); only the pages they reach are touched."""
        if not self.reuse_buffers:
            return np.empty(n, dtype)
        a = self._ws.get(key)
        if a is None or a.shape[0] < n or a.dtype != dtype:
            a = self._ws[key] = np.empty(n, dtype)
        return a[:n]

    # -- backward ------------------------------------------------------------------------------
    def backward(self, trace: Trace, g_out: np.ndarray) -> dict:
        """Gradients of the loss w.r.t. every parameter, given dL/d(readout) g_out (T, B, C):
        dL/du_t of the last layer for membrane readouts, dL/ds_t for spike readouts."""
        with compute_threads():
            return self._backward(trace, g_out)

    def _backward(self, trace: Trace, g_out) -> dict:
        """All layers' backward kernels for one chunk run in one hand-off to the thread pool
        (``_run_calls``, as in ``_forward``); the chunks' partial sums are reduced after."""
        cfg, p, d = self.config, self.params, self.dtype
        grads = {}
        g_ext = np.ascontiguousarray(g_out, dtype=d)
        W_ext, ext_prod = np.zeros((1, 1), d), False
        ext_on_u = int(cfg.loss.readout == "mem")
        calls, sums = [], []
        B = g_ext.shape[1]
        nch = trace.nch                 # the forward's chunks, even if the thread count changed
        for li in range(len(cfg.layers) - 1, -1, -1):
            layer, tr = cfg.layers[li], trace.layers[li]
            T, B, N = tr.u.shape
            Nin = tr.n_in
            alpha, oma, rho, omr, dt = self._consts(layer)
            Win = np.ascontiguousarray(p[f"{layer.name}.W_in"])
            # what the layer below gets: dL/dx (T,B,Nin), or dL/dI (T,B,N) when that is smaller
            # (less memory traffic: the layer below then forms the product per step)
            gx_mode = 0 if li == 0 else (2 if N < Nin else 1)
            gx = (self._buf(f"{li}.gx", (T, B, N if gx_mode == 2 else Nin)) if gx_mode
                  else np.zeros((1, 1, 1), d))
            acc = {"W_in": np.zeros((nch, Nin, N), d), "b": np.zeros((nch, N), d),
                   "alpha": np.zeros((nch, N), d)}
            if layer.spiking:
                acc["W_rec"] = np.zeros((nch, N, N) if layer.recurrent else (nch, 1, 1), d)
                acc["rho"] = np.zeros((nch, N), d)
                Wrec = (np.ascontiguousarray(p[f"{layer.name}.W_rec"]) if layer.recurrent
                        else np.zeros((1, 1), d))
                sp = surrogate_tuple(layer.surrogate, d)
                calls.append((cpu.alif_backward, (
                    g_ext, W_ext, ext_prod, ext_on_u, tr.u_full, tr.b_check, *tr.x_lists,
                    *tr.s_lists, Win, gx, gx_mode, Wrec, layer.recurrent, alpha, oma, rho, omr,
                    d.type(layer.beta), d.type(layer.b_j0), dt, sp, acc["W_in"], acc["b"],
                    acc["W_rec"], acc["alpha"], acc["rho"])))
            else:
                calls.append((cpu.integrator_backward, (
                    g_ext, tr.u_full, *tr.x_lists, Win, gx, gx_mode, alpha, oma, acc["W_in"],
                    acc["b"], acc["alpha"])))
            sums.append((layer, acc, alpha, rho, dt))
            g_ext, ext_on_u, W_ext, ext_prod = gx, 0, Win, gx_mode == 2
        run_chunks(_run_calls, B, calls, nch=nch)
        for layer, acc, alpha, rho, dt in sums:
            n = layer.name
            if layer.spiking:
                tau = p[f"{n}.tau_adp"]
                g = acc["rho"].sum(0) * rho * dt / (tau * tau)
                grads[f"{n}.tau_adp"] = g.astype(d) if layer.train_tau_adp else np.zeros_like(tau)
                if layer.recurrent:
                    grads[f"{n}.W_rec"] = np.ascontiguousarray(acc["W_rec"].sum(0).T)
            tau = p[f"{n}.tau_m"]
            g = acc["alpha"].sum(0) * alpha * dt / (tau * tau)
            grads[f"{n}.tau_m"] = g.astype(d) if layer.train_tau_m else np.zeros_like(tau)
            grads[f"{n}.W_in"] = np.ascontiguousarray(acc["W_in"].sum(0).T)
            grads[f"{n}.b_in"] = acc["b"].sum(0)
            if layer.recurrent:
                grads[f"{n}.b_rec"] = grads[f"{n}.b_in"].copy()
        return {k: grads[k] for k in p}

    # -- loss ------------------------------------------------------------------------------------
    def loss_and_grad(self, x, labels, state=None, carry=None):
        """Forward, loss and all gradients. Returns (loss, grads, result, trace)."""
        trace = self.forward(x, state)
        res = self.loss(trace, labels, carry=carry, grad=True)
        grads = self.backward(trace, res.grad)
        return res.loss, grads, res, trace

    def loss(self, trace: Trace, labels, carry=None, grad=False, start=None):
        """The configured loss on the trace's readout (``start`` overrides the config's first
        step, as truncated BPTT needs for chunks after the first). With ``reuse_buffers`` the
        result's gradient and predictions are overwritten by the next call, like the trace."""
        cfg = self.config
        out = trace.output_spikes if cfg.loss.readout == "spike" else trace.output_mem
        start = cfg.loss.start if start is None else start
        return losses.compute(cfg.loss.kind, out, labels, start, carry=carry, grad=grad,
                              work=self._ws if self.reuse_buffers else None)


