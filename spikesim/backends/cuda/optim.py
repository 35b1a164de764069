"""The optimiser's update on the device: Adam and Adamax over device arrays, updated in place,
the scaling of decoupled weight decay, the sums of squares of the gradient norm (for clipping)
and the clamp of the time constants; and what the backend derives from parameters kept on the
device (``CudaBackend.bind_params``): the summed bias, W_rec^T, the decays of the time
constants and the tau chain rule.

The kernels mirror ``spikesim/train/optim.py`` operation for operation (the same products and
quotients in the same order, the constants folded on the host as NumPy folds them), so that an
update of device arrays equals the host's (tests/test_device_sim.py: float64 within 1e-10;
measured equal or at rounding). ``DeviceUpdate`` launches them; ``Optimizer.to_device`` uses it.
"""
from __future__ import annotations

import math

import numpy as np
from numba import float64, types

from ...model.neurons import decay, tau_gradient
from . import require_numba_cuda

cuda = require_numba_cuda()

THREADS = 128       # threads of the one block of ``sum_squares`` (its shared memory's size)


def _adam(p, g, m, v, scale, b1, omb1, b2, omb2, bc1, bc2, lr, eps):
    """One Adam update of the 1-D arrays p, m, v from the gradient g times ``scale``, as
    ``Optimizer.step``: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
    p -= lr (m / bc1) / (sqrt(v / bc2) + eps)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i] * scale
        mi = m[i] * b1
        mi = mi + omb1 * gi
        m[i] = mi
        vi = v[i] * b2
        vi = vi + omb2 * gi * gi
        v[i] = vi
        p[i] = p[i] - lr * (mi / bc1) / (math.sqrt(vi / bc2) + eps)


def _adamax(p, g, m, v, scale, b1, omb1, b2, step, eps):
    """One Adamax update, as ``Optimizer.step``: m as Adam's; v = max(b2 v, |g| + eps);
    p -= (lr / bc1) m / v (``step`` = lr / bc1, folded on the host as NumPy folds it)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        gi = g[i] * scale
        mi = m[i] * b1
        mi = mi + omb1 * gi
        m[i] = mi
        vi = max(v[i] * b2, abs(gi) + eps)
        v[i] = vi
        p[i] = p[i] - step * mi / vi


@cuda.jit(device=True)
def _block_total(part, acc, out, k):
    """out[k] = the sum over the block of each thread's ``acc``: each thread stores its part in
    the shared array ``part``, thread 0 adds the parts in thread order (deterministic, no
    atomics). Every thread of the block must call it (it synchronises the block)."""
    t = cuda.threadIdx.x
    part[t] = acc
    cuda.syncthreads()
    if t == 0:
        s = float64(0.0)
        for j in range(cuda.blockDim.x):
            s += part[j]
        out[k] = s


def _sum_squares(g, out, k):
    """out[k] = the sum of g[i]^2 over the 1-D array g, in float64, by one block: each thread
    sums a strided part, ``_block_total`` adds the parts."""
    part = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.threadIdx.x, g.shape[0], cuda.blockDim.x):
        x = float64(g[i])
        acc += x * x
    _block_total(part, acc, out, k)


def _count_bad(a, positive, out, k):
    """out[k] = the number of elements of the 1-D array a that are NaN or inf, or (``positive``:
    a time constant) not > 0; by one block, as ``sum_squares``. The device's side of
    ``check_param_values`` for bound parameters: only the counts come back."""
    part = cuda.shared.array(THREADS, float64)
    acc = float64(0.0)
    for i in range(cuda.threadIdx.x, a.shape[0], cuda.blockDim.x):
        x = a[i]
        if not math.isfinite(x) or (positive and not x > 0):
            acc += float64(1.0)
    _block_total(part, acc, out, k)


def _scale(p, keep):
    """p = p * keep element-wise (decoupled weight decay: keep = 1 - lr * weight_decay, as
    ``Optimizer.step`` scales the host's array)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        p[i] = p[i] * keep


def _clamp_min(p, lo):
    """p = max(p, lo) element-wise (the trainer's ``tau_min``)."""
    i = cuda.grid(1)
    if i < p.shape[0]:
        p[i] = max(p[i], lo)


def _add(a, b, out):
    """out = a + b (the bias of a recurrent layer: b_in + b_rec)."""
    i = cuda.grid(1)
    if i < out.shape[0]:
        out[i] = a[i] + b[i]


def _transpose(a, out):
    """out = a^T of the 2-D array a (W_rec^T, as the layer kernels read it)."""
    i = cuda.grid(1)
    R, C = a.shape
    if i < R * C:
        r, c = i // C, i % C
        out[c, r] = a[r, c]


def _decays(tau, dt, one, dec, omd, iomd):
    """dec = decay(tau, dt) (alpha or rho), omd = 1 - dec, iomd = 1 / omd, per neuron; as
    ``Network.layer_consts`` and the backend's ``ioma``. Each result is stored before it is
    read (the simulator invariant of ``layers.py``)."""
    i = cuda.grid(1)
    if i < tau.shape[0]:
        dec[i] = decay(tau[i], dt)
        omd[i] = one - dec[i]
        iomd[i] = one / omd[i]


def _tau_grad(g, dec, tau, dt, out):
    """out = dL/dtau from dL/d(decay) g: the model's ``tau_gradient``, as ``Network.backward``."""
    i = cuda.grid(1)
    if i < tau.shape[0]:
        out[i] = tau_gradient(g[i], dec[i], tau[i], dt)


KERNELS = {"adam_update": _adam, "adamax_update": _adamax, "sum_squares": _sum_squares,
           "count_bad": _count_bad, "clamp_min": _clamp_min, "scale": _scale, "add": _add,
           "transpose": _transpose, "decays": _decays, "tau_grad": _tau_grad}
add = cuda.jit(_add)
transpose = cuda.jit(_transpose)
decays = cuda.jit(_decays)
tau_grad = cuda.jit(_tau_grad)
adam_update = cuda.jit(_adam)
adamax_update = cuda.jit(_adamax)
sum_squares = cuda.jit(_sum_squares)
clamp_min = cuda.jit(_clamp_min)
scale = cuda.jit(_scale)
count_bad = cuda.jit(_count_bad)


def signature(name: str, dtype, sp_type=None) -> tuple:
    """The Numba argument types of the launches of kernel ``name`` in ``dtype``."""
    f = types.float32 if np.dtype(dtype) == np.float32 else types.float64
    a1, a2 = types.Array(f, 1, "C"), types.Array(f, 2, "C")
    d1 = types.Array(types.float64, 1, "C")
    sigs = {
        "adam_update": (a1, a1, a1, a1) + (f,) * 9,
        "adamax_update": (a1, a1, a1, a1) + (f,) * 6,
        "sum_squares": (a1, d1, types.int64),
        "clamp_min": (a1, f),
        "scale": (a1, f),
        "count_bad": (a1, types.boolean, d1, types.int64),
        "add": (a1, a1, a1),
        "transpose": (a2, a2),
        "decays": (a1, f, f, a1, a1, a1),
        "tau_grad": (a1, a1, a1, f, a1),
    }
    return sigs[name]


def _flat(a):
    return a.reshape(a.size)


class DeviceUpdate:
    """Launches the update kernels on device arrays of ``dtype`` in blocks of ``threads``
    (at most ``THREADS``)."""

    def __init__(self, dtype, threads: int = THREADS):
        self.dtype = np.dtype(dtype)
        self.threads = max(1, min(int(threads), THREADS))

    def _grid(self, n):
        return max(1, math.ceil(n / self.threads)), self.threads

    def to_device(self, a):
        return cuda.to_device(np.ascontiguousarray(a, dtype=self.dtype))

    def norm_squares(self, grads: list) -> np.ndarray:
        """The float64 sums of squares of each device array of ``grads``; only these scalars
        come back to the host."""
        out = cuda.device_array(max(1, len(grads)), np.float64)
        for k, g in enumerate(grads):
            sum_squares[1, self.threads](_flat(g), out, k)
        return out.copy_to_host()[:len(grads)]

    def adam(self, p, g, m, v, scale, b1, b2, t, lr, eps):
        d = self.dtype.type
        adam_update[self._grid(p.size)](
            _flat(p), _flat(g), _flat(m), _flat(v), d(scale), d(b1), d(1 - b1), d(b2),
            d(1 - b2), d(1 - b1 ** t), d(1 - b2 ** t), d(lr), d(eps))

    def adamax(self, p, g, m, v, scale, b1, b2, t, lr, eps):
        d = self.dtype.type
        adamax_update[self._grid(p.size)](
            _flat(p), _flat(g), _flat(m), _flat(v), d(scale), d(b1), d(1 - b1), d(b2),
            d(lr / (1 - b1 ** t)), d(eps))

    def scale(self, p, keep):
        scale[self._grid(p.size)](_flat(p), self.dtype.type(keep))

    def clamp_min(self, p, lo):
        clamp_min[self._grid(p.size)](_flat(p), self.dtype.type(lo))
