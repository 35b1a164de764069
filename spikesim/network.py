"""A configured chain of spiking layers: its parameters, their initialisation, the tau chain
rule and the loss, run by a backend (``spikesim.backends``).

The network owns what is independent of the hardware; a backend owns the kernels, their trace
format and their work arrays. Data enter as (B, T, n_in).
"""
from __future__ import annotations

import math

import numpy as np

from .backends import get_backend
from .backends.kernel_args import LayerConsts
from .model.config import NetworkConfig, param_shapes
from .model.neurons import decay, tau_gradient
from .model.state import initial_state


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
        raise ValueError(
            f"parameters do not match the network: missing {missing}, unexpected {extra}")
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
            raise TypeError(
                f"parameter {name} has dtype {v.dtype}, the network runs in {np.dtype(dtype)}")
        out[name] = v
    check_param_values(out)
    return out


def check_param_values(params: dict) -> None:
    """Every parameter finite and every time constant (``*.tau_m``, ``*.tau_adp``) positive,
    or a ValueError naming the tensor and its first bad element. Run on every forward pass:
    a parameter made NaN or a time constant driven to 0 by an update would otherwise give
    NaN gradients, or a finite loss from a decay above 1, without a word."""
    for name, v in params.items():
        bad = ~np.isfinite(v)
        if bad.any():
            i = np.unravel_index(int(np.argmax(bad)), v.shape)
            raise ValueError(f"parameter {name} contains NaN or inf ({int(bad.sum())} of "
                             f"{v.size} values; the first at index {tuple(map(int, i))}: {v[i]})")
        if name.endswith((".tau_m", ".tau_adp")) and not (v > 0).all():
            i = np.unravel_index(int(np.argmax(v <= 0)), v.shape)
            raise ValueError(f"parameter {name} holds time constants <= 0 ({int((v <= 0).sum())}"
                             f" of {v.size}; the first at index {tuple(map(int, i))}: {v[i]}); "
                             "time constants must be positive")


# ----------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------
class Network:
    """A configured chain of layers with its parameters; forward, loss and gradients on the
    backend named by ``backend`` ("cpu")."""

    def __init__(self, config: NetworkConfig, params: dict | None = None, seed: int = 0,
                 dtype=np.float32, backend: str = "cpu"):
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
        self.backend = get_backend(backend)(dtype)

    def set_backend(self, backend: str) -> "Network":
        """Run on the backend named ``backend`` from now on ("cpu" or "cuda"; the parameters
        stay where they are, the host). Returns the network. Raises what the backend's
        constructor raises where it cannot run (the CUDA backend: ImportError without numba-cuda,
        RuntimeError without a GPU)."""
        if backend != self.backend.name:
            new = get_backend(backend)(self.dtype)
            new.reuse_buffers = self.backend.reuse_buffers
            self.backend = new
        return self

    @property
    def reuse_buffers(self) -> bool:
        """When on (the trainer and the benchmark turn it on), work arrays are reused from call
        to call, and each trace and loss result is overwritten by the next call."""
        return self.backend.reuse_buffers

    @reuse_buffers.setter
    def reuse_buffers(self, on: bool):
        self.backend.reuse_buffers = bool(on)

    def session(self):
        """A context for a series of calls (``with net.session(): ...``): the backend's set-up
        (on the CPU: kernel threads with denormals flushed, BLAS single-threaded)."""
        return self.backend.session()

    # -- input checks --------------------------------------------------------------------------
    def _check_input(self, x) -> np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"input must be a numpy array, got {type(x).__name__}")
        if x.ndim != 3:
            raise ValueError(
                f"input must have shape (batch, time, {self.config.n_in}), got {x.shape}")
        if x.shape[2] != self.config.n_in:
            raise ValueError(
                f"input has {x.shape[2]} channels, the network expects {self.config.n_in}")
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

    def layer_consts(self) -> list:
        """Each layer's ``LayerConsts``: the decays from the time constants, in the network's
        dtype (the integrator's rho = 0)."""
        p, d = self.params, self.dtype.type
        out = []
        for layer in self.config.layers:
            dt = d(layer.dt)
            alpha = decay(p[f"{layer.name}.tau_m"], dt).astype(self.dtype)
            rho = (decay(p[f"{layer.name}.tau_adp"], dt).astype(self.dtype) if layer.spiking
                   else np.zeros_like(alpha))
            out.append(LayerConsts(alpha, (1 - alpha).astype(self.dtype), rho,
                                   (1 - rho).astype(self.dtype), d(layer.beta), d(layer.b_j0), dt))
        return out

    # -- forward and backward ------------------------------------------------------------------
    def forward(self, x, state=None):
        """Run the network on x (B, T, n_in) from ``state`` (default: the deterministic one);
        returns the backend's trace."""
        x = self._check_input(x)
        state = self._check_state(state, x.shape[0])
        if getattr(self.backend, "bound", None) is None:
            check_param_values(self.params)
        else:           # parameters kept on the device (bind_params): counted there
            check_param_values(self.backend.bad_bound_params())
        return self.backend.forward(self.config, self.params, self.layer_consts(), x, state)

    def backward(self, trace, g_out: np.ndarray) -> dict:
        """Gradients of the loss w.r.t. every parameter, given dL/d(readout) g_out (T, B, C):
        dL/du_t of the last layer for membrane readouts, dL/ds_t for spike readouts."""
        consts = self.layer_consts()
        raw = self.backend.backward(self.config, self.params, consts, trace, g_out)
        if getattr(self.backend, "bound", None) is not None:
            # parameters kept on the device (CudaBackend.bind_params): the same chain rule there
            return self.backend.device_grads(self.config, raw)
        p, d, grads = self.params, self.dtype, {}
        for layer, k in zip(self.config.layers, consts):
            n = layer.name
            grads[f"{n}.W_in"] = raw[f"{n}.W_in"]
            grads[f"{n}.b_in"] = raw[f"{n}.b"]
            if layer.recurrent:     # both biases enter the current alike
                grads[f"{n}.b_rec"] = raw[f"{n}.b"].copy()
                grads[f"{n}.W_rec"] = raw[f"{n}.W_rec"]
            tau = p[f"{n}.tau_m"]
            grads[f"{n}.tau_m"] = (tau_gradient(raw[f"{n}.alpha"], k.alpha, tau, k.dt).astype(d)
                                   if layer.train_tau_m else np.zeros_like(tau))
            if layer.spiking:
                tau = p[f"{n}.tau_adp"]
                grads[f"{n}.tau_adp"] = (tau_gradient(raw[f"{n}.rho"], k.rho, tau, k.dt).astype(d)
                                         if layer.train_tau_adp else np.zeros_like(tau))
        return {k: grads[k] for k in p}

    # -- loss ------------------------------------------------------------------------------------
    def loss_and_grad(self, x, labels, state=None, carry=None):
        """Forward, loss and all gradients. Returns (loss, grads, result, trace)."""
        trace = self.forward(x, state)
        res = self.loss(trace, labels, carry=carry, grad=True)
        grads = self.backward(trace, res.grad)
        return res.loss, grads, res, trace

    def loss(self, trace, labels, carry=None, grad=False, start=None):
        """The configured loss on the trace's readout (``start`` overrides the config's first
        step, as truncated BPTT needs for chunks after the first). With ``reuse_buffers`` the
        result's gradient and predictions are overwritten by the next call, like the trace."""
        cfg = self.config
        out = self.backend.readout(trace, cfg.loss.readout)    # on the backend's device
        start = cfg.loss.start if start is None else start
        return self.backend.loss(cfg.loss.kind, out, labels, start, carry=carry, grad=grad)
