"""The CUDA backend: arranges the device arrays of a forward or backward pass and launches the
layer kernels of ``layers.py``, one launch per layer and pass (the time loop runs inside it).

Per layer, forward: the input current of every step in one product (``matmul``: x W_in^T +
bias), then the layer's persistent kernel (``alif_forward`` or ``integrator_forward``).
Backward, last layer first: the layer's reverse-time kernel (``alif_backward`` or
``integrator_backward``), which writes dL/dI (T, B, N), then the weight gradients and the
gradient to the layer below as products over it, and the per-neuron sums (``column_sums``).
Parameters and the decays go to the device when they change (``_param``: once per
evaluation), the gradients come back; or, in a training fit, the parameters stay on the device
(``bind_params``: the trainer's optimiser updates them there, ``optim.py``), the bias, W_rec^T
and the decays are derived there and the gradients stay there (``device_grads``). The loss
runs on the device from ``readout`` (``losses.compute_device``), or on the host from a host
readout (``losses.py``).
Mirrors ``spikesim/backends/cpu/backend.py``.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np

from ...model.surrogates import surrogate_consts
from ..base import Backend
from . import losses, require_numba_cuda
from .trace import CudaLayerTrace, CudaTrace

WARP = 32


def _require_device():
    """numba.cuda and the layer kernels, or an error naming what is missing (the package
    numba-cuda, or a GPU with its driver)."""
    cuda = require_numba_cuda()
    if not cuda.is_available():
        raise RuntimeError("backend 'cuda' needs an NVIDIA GPU and its driver, and numba.cuda "
                           "finds none (numba.cuda.is_available() is False); use the CPU "
                           "(backend='cpu', --device cpu), "
                           "or set NUMBA_ENABLE_CUDASIM=1 before importing numba to run the "
                           "kernels in the CUDA simulator (slow; for tests)")
    from . import layers
    return cuda, layers


def _simulator() -> bool:
    """Whether numba.cuda is the CUDA simulator (NUMBA_ENABLE_CUDASIM=1)."""
    from numba import config
    return bool(getattr(config, "ENABLE_CUDASIM", False))


class CudaBackend(Backend):
    """``block_threads``: the most threads per block of the layer kernels (a recurrent layer
    wider than that has each thread own several neurons); ``shared_bytes``: the shared memory a
    recurrent layer's block may use, W_rec staying in global memory where it does not fit;
    ``tile``: the side of ``matmul``'s blocks; ``target_blocks``, ``split_k_min``: how sums over
    many rows are split into spans (``_splits``). The tests set them small, to run every path
    of the kernels at tiny sizes under the simulator."""
    name = "cuda"

    def __init__(self, dtype):
        super().__init__(dtype)
        self._cuda, self._k = _require_device()
        self.block_threads = 256
        self.shared_bytes = self._k.SHARED_BYTES
        self.tile = self._k.TILE
        self.target_blocks = 264        # ~2 per SM of the largest GPUs (132 SMs)
        self.split_k_min = 256          # the least length of a span of a split sum
        if _simulator():
            # each GPU thread is a Python thread: small blocks; and the simulator's block
            # manager polls its threads for barriers while holding the GIL, so a shorter
            # switch interval than the default 5 ms runs it several times faster
            self.block_threads, self.tile = 16, 8
            sys.setswitchinterval(min(sys.getswitchinterval(), 5e-4))
        # the simulator runs a thread per element of a product (~0.5 ms each): with
        # SPIKESIM_CUDASIM_HOST_PRODUCTS=1 the products and column sums run in NumPy on the
        # simulator's arrays and blocks are not rounded up to warps, for tests of what lies
        # around the kernels (the command line on the tasks); tests/test_cuda_sim.py runs
        # every kernel without it
        self.host_products = (_simulator()
                              and os.environ.get("SPIKESIM_CUDASIM_HOST_PRODUCTS") == "1")
        self.warp = 1 if self.host_products else WARP
        self._params: dict = {}         # key -> (host snapshot, device copy): ``_param``
        self._work: dict = {}           # (key, shape) -> device work array: ``_buf``
        self._fixed: dict = {}          # shape -> zeros no kernel reads: ``_unused``
        self.uploads = 0                # parameter and constant uploads so far (tests count)
        self.bound = None               # name -> device parameter: ``bind_params``
        from . import optim
        self._o = optim

    # -- parameters kept on the device -------------------------------------------------------------
    def bind_params(self, params: dict) -> dict:
        """Keep the parameters on the device from now on: each is uploaded once into a device
        array (returned, name -> array), which forward and backward read instead of the host
        arrays (these go stale: ``Optimizer.to_device`` updates the device arrays in place and
        ``Optimizer.sync_params`` copies them back). The bias, W_rec^T and the decays are
        derived on the device (``optim.add``, ``transpose``, ``decays``), and ``backward``
        returns device gradients, dL/dtau included (``device_grads``)."""
        self.bound = {k: self._dev(v) for k, v in params.items()}
        self.uploads += len(params)
        return self.bound

    def bad_bound_params(self) -> dict:
        """The bound parameters holding NaN or inf, or time constants <= 0, copied to the host
        (name -> array; empty where all are good): per tensor a count on the device
        (``optim.count_bad``), and only the counts come back. ``Network.forward`` checks them
        as it checks host parameters (``check_param_values``)."""
        names = list(self.bound)
        out = self._cuda.device_array(len(names), np.float64)
        threads = min(self.block_threads, self._o.THREADS)
        for k, name in enumerate(names):
            a = self.bound[name]
            self._o.count_bad[1, threads](a.reshape(a.size), name.endswith((".tau_m", ".tau_adp")),
                                          out, k)
        return {n: self.bound[n].copy_to_host() for n, c in zip(names, out.copy_to_host()) if c}

    def unbind_params(self):
        """Back to the host parameters (after ``Optimizer.sync_params``)."""
        self.bound = None
        self._params.clear()

    def _launch(self, kernel, n, *args):
        threads = min(self.block_threads, WARP * math.ceil(max(n, 1) / WARP))
        kernel[max(1, math.ceil(n / threads)), threads](*args)

    def _bound_param(self, key: str):
        """The device array for ``_param``'s ``key`` derived from the bound parameters, or
        None where ``key`` is not one of theirs."""
        n, what = key.rsplit(".", 1)
        p, d, o = self.bound, self.dtype.type, self._o
        if what in ("W_in", "W_rec"):
            return p[key]
        if what == "bias":
            b = p[f"{n}.b_in"]
            if f"{n}.b_rec" not in p:
                return b
            out = self._buf(("bound", key), b.shape)
            self._launch(o.add, b.size, b, p[f"{n}.b_rec"], out)
            return out
        if what == "W_rec^T":
            w = p[f"{n}.W_rec"]
            out = self._buf(("bound", key), w.shape[::-1])
            self._launch(o.transpose, w.size, w, out)
            return out
        if what in ("alpha", "oma", "ioma", "rho", "omr"):
            tau = p.get(f"{n}.tau_m" if what in ("alpha", "oma", "ioma") else f"{n}.tau_adp")
            if tau is None:
                return None          # the integrator's rho: constants
            first = "alpha" if what in ("alpha", "oma", "ioma") else "rho"
            out = [self._buf(("bound", f"{n}.{first}", j), tau.shape) for j in range(3)]
            self._launch(o.decays, tau.size, tau, d(self._dt[n]), d(1), *out)
            return out[{"alpha": 0, "rho": 0, "oma": 1, "omr": 1, "ioma": 2}[what]]
        return None

    def device_grads(self, cfg, raw: dict) -> dict:
        """Every parameter's gradient on the device from ``backward``'s raw device gradients
        (bound parameters): as ``Network.backward``, the tau chain rule by ``optim.tau_grad``
        and zeros for time constants not trained."""
        p, d, grads = self.bound, self.dtype.type, {}
        for layer in cfg.layers:
            n = layer.name
            grads[f"{n}.W_in"] = raw[f"{n}.W_in"]
            b = raw[f"{n}.b"]
            grads[f"{n}.b_in"] = b.reshape(b.size)
            if layer.recurrent:
                grads[f"{n}.b_rec"] = grads[f"{n}.b_in"]     # read only: one array serves both
                grads[f"{n}.W_rec"] = raw[f"{n}.W_rec"]
            for kind, decay, train in (("tau_m", "alpha", layer.train_tau_m),
                                       ("tau_adp", "rho", layer.train_tau_adp)):
                if kind == "tau_adp" and not layer.spiking:
                    continue
                tau = p[f"{n}.{kind}"]
                if not train:
                    grads[f"{n}.{kind}"] = self._zeros(tau.shape, ("grad", n, kind))
                    continue
                g = raw[f"{n}.{decay}"]
                out = self._buf(("grad", n, kind), tau.shape)
                self._launch(self._o.tau_grad, tau.size, g.reshape(g.size),
                             self._bound_param(f"{n}.{decay}"), tau, d(layer.dt), out)
                grads[f"{n}.{kind}"] = out
        return {k: grads[k] for k in p}

    # -- helpers ---------------------------------------------------------------------------------
    def _dev(self, a):
        return self._cuda.to_device(np.ascontiguousarray(a, dtype=self.dtype))

    def _param(self, key: str, a):
        """The device copy of a parameter or constant ``a`` (host), kept under ``key`` from call
        to call and uploaded again only when ``a`` changed (compared with a host snapshot of
        what was uploaded): an evaluation uploads each parameter once, and the backward pass
        reuses what its forward pass uploaded."""
        if self.bound is not None:
            dev = self._bound_param(key)
            if dev is not None:
                return dev
        a = np.ascontiguousarray(a, dtype=self.dtype)
        hit = self._params.get(key)
        if hit is not None and hit[0].shape == a.shape and np.array_equal(hit[0], a):
            return hit[1]
        self.uploads += 1
        dev = self._cuda.to_device(a)
        self._params[key] = (a.copy(), dev)
        return dev

    def _buf(self, key, shape):
        """A device work array (contents undefined): with ``reuse_buffers`` the one kept under
        (``key``, shape) from an earlier call, else a new one. numba allocates every array with
        cudaMalloc and frees it with cudaFree (which waits for the GPU); reused, a training step
        allocates nothing after the first."""
        shape = tuple(int(v) for v in np.atleast_1d(shape))
        if not self.reuse_buffers:
            return self._cuda.device_array(shape, self.dtype)
        k = (key, shape)
        a = self._work.get(k)
        if a is None:
            a = self._work[k] = self._cuda.device_array(shape, self.dtype)
        return a

    def _zeros(self, shape, key=None):
        """A device array of zeros, written by ``layers.fill`` (``key``: reused as ``_buf``)."""
        a = self._buf(key, shape)
        if self.host_products:
            a.copy_to_device(np.zeros(a.shape, self.dtype))
            return a
        flat = a.reshape(a.size)
        threads = min(self.block_threads, WARP * math.ceil(a.size / WARP))
        self._k.fill[math.ceil(a.size / threads), threads](flat, self.dtype.type(0))
        return a

    def _unused(self, shape):
        """A small array of zeros for an argument a kernel does not read (no bias, no W_rec),
        made once."""
        a = self._fixed.get(shape)
        if a is None:
            a = self._fixed[shape] = self._zeros(shape)
        return a

    def _state_array(self, T, B, N, init, key=None):
        """A (T + 1, B, N) device array with slot 0 = ``init`` (B, N)."""
        a = self._buf(key, (T + 1, B, N))
        a[0].copy_to_device(np.ascontiguousarray(init, dtype=self.dtype))
        return a

    def _grid(self, B, N, recurrent):
        """(grid, threads): a block per sample; a recurrent layer's whole sample in one block,
        the others in tiles of ``threads`` neurons."""
        threads = min(self.block_threads, self.warp * math.ceil(N / self.warp))
        tiles = 1 if recurrent else math.ceil(N / threads)
        return (B, tiles), threads

    def _shared(self, N, recurrent):
        """(bytes of dynamic shared memory, whether W_rec is held in it) of a spiking layer."""
        if not recurrent:
            return 0, False
        item = self.dtype.itemsize
        ring = 2 * N * item
        if ring + N * N * item <= self.shared_bytes:
            return ring + N * N * item, True
        return ring, False

    def _splits(self, blocks, K):
        """(spans, span length) of a sum over K values computed by ``blocks`` blocks per span:
        enough spans to give the GPU about ``target_blocks`` blocks, each span at least
        ``split_k_min`` long (a whole number of tiles)."""
        want = max(1, min(math.ceil(K / self.split_k_min), math.ceil(self.target_blocks / blocks)))
        t = self.tile
        chunk = t * math.ceil(math.ceil(K / want) / t)
        return max(1, math.ceil(K / chunk)), chunk

    def _sum_splits(self, P, C):
        n = C.shape[0] * C.shape[1]
        threads = min(self.block_threads, n)
        self._k.sum_splits[math.ceil(n / threads), threads](P, C)
        return C

    def _matmul(self, A, B, C, ta=False, tb=False, bias=None):
        """C (M, N) = op(A) op(B) (+ bias): ``layers.matmul`` over spans of the sum's axis K
        (split-K; none with a bias), then ``layers.sum_splits``."""
        if self.host_products:
            a, b = A.copy_to_host(), B.copy_to_host()
            r = (a.T if ta else a) @ (b.T if tb else b)
            if bias is not None:
                r += bias.copy_to_host()
            C.copy_to_device(np.ascontiguousarray(r, dtype=self.dtype))
            return C
        t = self.tile
        M, N = C.shape
        K = A.shape[0] if ta else A.shape[1]
        blocks = math.ceil(N / t) * math.ceil(M / t)
        splits, chunk = (1, max(K, 1)) if bias is not None else self._splits(blocks, K)
        P = (C.reshape(1, M, N) if splits == 1
             else self._buf("matmul splits", (splits, M, N)))
        has_bias = bias is not None
        if bias is None:
            bias = self._unused((1,))
        self._k.matmul[(math.ceil(N / t), math.ceil(M / t), splits), (t, t), 0,
                       2 * t * t * self.dtype.itemsize](
            A, B, P, ta, tb, bias, has_bias, self.dtype.type(0), chunk)
        return C if splits == 1 else self._sum_splits(P, C)

    def _column_sums(self, A, key="column sums"):
        """The sums over the rows of A (R, n), on the host (n,): ``layers.column_sums`` over
        spans of rows, then ``sum_splits``. With a ``key`` other than the default, the device
        array (1, n) under that key (``_buf``), not copied."""
        R, n = A.shape
        host = key == "column sums"
        if self.host_products:
            s = A.copy_to_host().sum(0, dtype=self.dtype)
            return s if host else self._cuda.to_device(s.reshape(1, n))
        threads = min(self.block_threads, WARP * math.ceil(n / WARP))
        splits, rows = self._splits(math.ceil(n / threads), R)
        P = self._buf("column splits", (splits, n))
        self._k.column_sums[(math.ceil(n / threads), splits), threads](A, P, rows,
                                                                       self.dtype.type(0))
        out = self._sum_splits(P.reshape(splits, 1, n), self._buf(key, (1, n)))
        return out.copy_to_host()[0] if host else out

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, cfg, params, consts, x, state) -> CudaTrace:
        p, d = params, self.dtype
        self._dt = {layer.name: k.dt for layer, k in zip(cfg.layers, consts)}
        B, T, n_in = x.shape
        if not np.isfinite(x).all():
            raise ValueError("input contains NaN or inf")
        xin = self._buf("x", (T, B, n_in))                   # (T, B, n_in): time-major
        xin.copy_to_device(np.ascontiguousarray(np.transpose(x, (1, 0, 2)), dtype=d))
        trace = CudaTrace(column_sums=self._column_sums)
        for layer, k in zip(cfg.layers, consts):
            n, N = layer.name, layer.size
            bias = p[f"{n}.b_in"]
            if layer.recurrent:
                bias = bias + p[f"{n}.b_rec"]
            I = self._buf(f"{n}.I", (T, B, N))
            self._matmul(xin.reshape(T * B, n_in), self._param(f"{n}.W_in", p[f"{n}.W_in"]),
                         I.reshape(T * B, N), tb=True, bias=self._param(f"{n}.bias", bias))
            u_init, s_init, b_init = state[n]
            u = self._state_array(T, B, N, u_init, f"{n}.u")
            alpha, oma = self._param(f"{n}.alpha", k.alpha), self._param(f"{n}.oma", k.oma)
            grid, threads = self._grid(B, N, layer.recurrent)
            if layer.spiking:
                s = self._state_array(T, B, N, s_init, f"{n}.s")
                b = self._state_array(T, B, N, b_init, f"{n}.b")
                rec = layer.recurrent
                WrecT = (self._param(f"{n}.W_rec^T", p[f"{n}.W_rec"].T) if rec
                         else self._unused((1, 1)))
                shmem, w_shared = self._shared(N, rec)
                sp = surrogate_consts(layer.surrogate, d)
                self._k.alif_forward[grid, threads, 0, shmem](
                    I, WrecT, rec, w_shared, u, s, b, alpha, oma,
                    self._param(f"{n}.rho", k.rho), self._param(f"{n}.omr", k.omr),
                    d.type(k.beta), d.type(k.b_j0), d.type(k.dt), sp)
                trace.layers.append(CudaLayerTrace(xin, n_in, u, s, b))
                xin, n_in = s[1:], N            # the next layer reads slots 1..T
            else:
                self._k.integrator_forward[grid, threads](I, u, alpha, oma)
                trace.layers.append(CudaLayerTrace(xin, n_in, u))
        for layer, tr in zip(cfg.layers, trace.layers):
            if not np.isfinite(tr.u_dev[T].copy_to_host()).all():    # NaN/inf persist in u
                raise ValueError(f"layer {layer.name!r} produced NaN or inf")
        return trace

    # -- backward --------------------------------------------------------------------------------
    def backward(self, cfg, params, consts, trace, g_out) -> dict:
        """The layers' reverse-time kernels, last first; each layer's weight gradients, and the
        gradient dL/ds_t handed to the layer below, are products over its dL/dI (T, B, N)."""
        p, d = params, self.dtype
        self._dt = {layer.name: k.dt for layer, k in zip(cfg.layers, consts)}
        g = self._dev(g_out) if isinstance(g_out, np.ndarray) else g_out   # host or device
        on_u = cfg.loss.readout == "mem"        # the last layer's gradient: dL/du_t or dL/ds_t
        grads = {}      # on the device until every layer is done: no wait for the GPU between
        for li in range(len(cfg.layers) - 1, -1, -1):
            layer, tr, k = cfg.layers[li], trace.layers[li], consts[li]
            n = layer.name
            T, B, N = g.shape
            Nin = tr.n_in
            ioma = self._param(f"{n}.ioma", np.ones(N, d) / k.oma)
            alpha, oma = self._param(f"{n}.alpha", k.alpha), self._param(f"{n}.oma", k.oma)
            gI = self._buf(f"{n}.gI", (T, B, N))
            ga, gu_n = self._zeros((B, N), f"{n}.ga"), self._zeros((B, N), f"{n}.gu")
            grid, threads = self._grid(B, N, layer.recurrent)
            if layer.spiking:
                rec = layer.recurrent
                Wrec = (self._param(f"{n}.W_rec", p[f"{n}.W_rec"]) if rec
                        else self._unused((1, 1)))
                gr = self._zeros((B, N), f"{n}.gr")
                shmem, w_shared = self._shared(N, rec)
                sp = surrogate_consts(layer.surrogate, d)
                fu = d.type(1 if on_u else 0)
                self._k.alif_backward[grid, threads, 0, shmem](
                    g, d.type(1) - fu, fu, tr.u_dev, tr.s_dev, tr.b_dev, Wrec, rec, w_shared,
                    alpha, oma, ioma, self._param(f"{n}.rho", k.rho),
                    self._param(f"{n}.omr", k.omr), d.type(k.beta),
                    d.type(k.b_j0), d.type(k.dt), sp, gI, gu_n, self._zeros((B, N), f"{n}.gb"),
                    self._zeros((B, N), f"{n}.gs"), ga, gr)
                grads[f"{n}.rho"] = self._column_sums(gr, f"sum {n}.rho")
            else:
                self._k.integrator_backward[grid, threads](g, tr.u_dev, alpha, oma, ioma, gI,
                                                           gu_n, ga)
            gI2 = gI.reshape(T * B, N)
            W_in = self._param(f"{n}.W_in", p[f"{n}.W_in"])
            dW = self._buf(f"{n}.dW_in", (N, Nin))
            grads[f"{n}.W_in"] = self._matmul(gI2, tr.x.reshape(T * B, Nin), dW, ta=True)
            grads[f"{n}.b"] = self._column_sums(gI2, f"sum {n}.b")
            grads[f"{n}.alpha"] = self._column_sums(ga, f"sum {n}.alpha")
            if layer.recurrent:         # I_t reads s_{t-1}: slots 0..T-1
                dW = self._buf(f"{n}.dW_rec", (N, N))
                grads[f"{n}.W_rec"] = self._matmul(gI2, tr.s_dev[:T].reshape(T * B, N), dW,
                                                   ta=True)
            if li > 0:                  # dL/ds_t of the layer below = dL/dI_t W_in
                gx = self._buf(f"{n}.gx", (T, B, Nin))
                self._matmul(gI2, W_in, gx.reshape(T * B, Nin))
                g, on_u = gx, False
        if self.bound is not None:         # parameters on the device: so are the gradients
            return grads
        return {k: (v.copy_to_host() if k.endswith((".W_in", ".W_rec")) else v.copy_to_host()[0])
                for k, v in grads.items()}

    # -- loss ------------------------------------------------------------------------------------
    def readout(self, trace, kind: str):
        """The readout the loss reads, on the device: the last layer's spikes (``kind`` "spike")
        or membrane (T, B, C). Handed to ``loss``, it keeps the loss and its gradient on the
        device."""
        return trace.output_spikes_device if kind == "spike" else trace.output_mem_device

    def loss(self, kind, out, labels, start, carry=None, grad=False):
        """On the device when ``out`` is a device array (``readout``): ``losses.compute_device``,
        whose gradient stays there for ``backward``; on the host, by the CPU's loss kernels, when
        it is a host array (``trace.output_mem``). ``Network.loss`` hands it ``readout``'s."""
        if isinstance(out, np.ndarray):
            return losses.compute(kind, out, labels, start, carry=carry, grad=grad)
        return losses.compute_device(kind, out, labels, start, carry=carry, grad=grad,
                                     threads=self.block_threads,
                                     work=self._work if self.reuse_buffers else None)
