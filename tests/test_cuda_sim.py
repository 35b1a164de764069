"""The CUDA backend's kernels against the CPU backend, run in the CUDA simulator.

The simulator replaces numba.cuda only if NUMBA_ENABLE_CUDASIM=1 is set before numba is first
imported, so this module runs only in a process started that way: tests/test_cuda_backend.py
starts one (``python -m pytest tests/test_cuda_sim.py`` with the variable set); in any other
process it skips. By hand: ``NUMBA_ENABLE_CUDASIM=1 python3 -m pytest tests/test_cuda_sim.py``.

Every case runs a forward pass, the loss and the backward pass on both backends from the same
parameters and data and compares the loss (computed on the device, and on the host from the
host readout), its gradient, predictions and summed readout, every parameter gradient, every
layer's u, s and b (all slots) and the final state. Errors are measured per array as
max |cuda - cpu| / max |cpu| (an element-wise relative error is meaningless for elements near
0): float64 within 1e-10 (the backends add in different orders; measured 4e-16), float32
within 1e-5 (measured 3e-7; the CPU's float32 kernels use fast-math and other summation
orders). Spikes must agree exactly, and every spiking layer must fire, so that the spike paths
are exercised. Every kernel launch is checked against the types compiled to PTX. Sizes are tiny: the
simulator runs each GPU thread as a Python thread. The backend's block size (16 or 32
threads), shared-memory limit and matmul tile (8) are set small so that every path of the
kernels runs: neurons strided over a block (N > block_threads), W_rec in shared or in global
memory, a dense layer split over blocks, partial matmul tiles.
"""
import os
import sys

import numpy as np
import pytest

if os.environ.get("NUMBA_ENABLE_CUDASIM") != "1":
    pytest.skip("runs in the CUDA simulator only (NUMBA_ENABLE_CUDASIM=1 before numba is "
                "imported); tests/test_cuda_backend.py runs it in a subprocess",
                allow_module_level=True)
pytest.importorskip("numba.cuda")
# The simulator's block manager polls its threads for barriers while holding the GIL; a shorter
# switch interval than the default 5 ms lets the threads run between its polls (several times
# faster here). This process runs this module only.
sys.setswitchinterval(5e-4)

from numba import typeof, types  # noqa: E402
from numba.np.numpy_support import from_dtype  # noqa: E402

from spikesim.backends.cuda import layers, losses, optim  # noqa: E402
from spikesim.backends.cuda.backend import CudaBackend  # noqa: E402
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig  # noqa: E402
from spikesim.model.state import initial_state  # noqa: E402
from spikesim.network import Network  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 1e-5}


def assert_same(name, a, b, tol):
    """max |a - b| <= tol * max |b| (b: the CPU's array)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (name, a.shape, b.shape)
    err = np.abs(a - b).max() if a.size else 0.0
    scale = np.abs(b).max() if b.size else 0.0
    assert err <= tol * scale or err == 0.0, f"{name}: error {err:.3g} of max {scale:.3g}"


def compare(cfg, x, labels, dtype, state=None, carry=None, knobs=None, seed=0, w_scale=2.0,
            perturb=None):
    """Run cfg on both backends and compare everything; returns the CUDA network's trace.
    ``w_scale`` scales the input weights (so that tiny layers fire); ``perturb``(params) changes
    the CUDA network's copy of the parameters (to show the comparison can fail)."""
    cpu = Network(cfg, seed=seed, dtype=dtype)
    for layer in cfg.layers:
        cpu.params[f"{layer.name}.W_in"] *= dtype(w_scale)
    params = {k: v.copy() for k, v in cpu.params.items()}
    if perturb is not None:
        perturb(params)
    gpu = Network(cfg, params=params, dtype=dtype, backend="cuda")
    assert isinstance(gpu.backend, CudaBackend)
    for k, v in {"tile": 8, "block_threads": 16, **(knobs or {})}.items():
        setattr(gpu.backend, k, v)
    tol = TOL[dtype]
    l0, g0, r0, t0 = cpu.loss_and_grad(x, labels, state=state, carry=carry)
    # the GPU: the loss on the device from the backend's readout (its gradient stays there),
    # (as Network.loss does), and on the host from the trace's host readout
    t1 = gpu.forward(x, state)
    out = gpu.backend.readout(t1, cfg.loss.readout)
    r1 = gpu.backend.loss(cfg.loss.kind, out, labels, cfg.loss.start, carry=carry, grad=True)
    g1 = gpu.backward(t1, r1.grad)
    r_host = gpu.loss(t1, labels, carry=carry, grad=True)
    for r in (r1, r_host):
        assert r.loss == pytest.approx(r0.loss, rel=tol)
        np.testing.assert_array_equal(r.pred, r0.pred)
        assert (r.correct, r.count) == (r0.correct, r0.count)
        grad = r.grad if isinstance(r.grad, np.ndarray) else r.grad.copy_to_host()
        assert_same("dL/d(readout)", grad, r0.grad, tol)
        assert (r.logits is None) == (r0.logits is None)
        if r0.logits is not None:
            assert_same("logits", r.logits, r0.logits, tol)
    rates = t1.firing_rates()
    for layer, rate, rate0 in zip(cfg.layers, rates, t0.firing_rates()):
        if layer.spiking:
            assert rate > 0, f"layer {layer.name} does not fire: the test would not cover spikes"
            assert rate == pytest.approx(rate0, rel=tol)
    for layer, a, b in zip(cfg.layers, t1.layers, t0.layers):
        assert_same(f"{layer.name}.u", a.u_full, b.u_full, tol)
        if layer.spiking and layer.surrogate.name == "smooth":
            assert_same(f"{layer.name}.s", a.s_full, b.s_full, tol)
        elif layer.spiking:
            np.testing.assert_array_equal(a.s_full, b.s_full)
        if layer.spiking:
            assert_same(f"{layer.name}.b", a.bt_full, b.bt_full, tol)
    assert set(g1) == set(g0)
    lif_tau_adp = {f"{layer.name}.tau_adp" for layer in cfg.layers if layer.beta == 0}
    for k in g0:
        assert g1[k].dtype == dtype, k
        assert_same(k, g1[k], g0[k], tol)
        if k not in lif_tau_adp:             # a LIF layer's tau_adp gets 0 by definition
            assert np.abs(g0[k]).max() > 0, f"{k}: zero gradient, nothing compared"
    f0, f1 = t0.final_state(cfg), t1.final_state(cfg)
    for n in f0:
        for a, b in zip(f1[n], f0[n]):
            assert_same(f"{n} final state", a, b, tol)
    for a, b in zip(t1.activity(), t0.activity()):
        np.testing.assert_array_equal(a.inputs, b.inputs)
        assert_same("input_sum", a.input_sum, b.input_sum, tol)
        assert a.binary == b.binary
        if b.spikes is not None:
            assert_same("spikes", a.spikes, b.spikes, tol)
    return t1


def _data(B, T, n_in, seed=0, binary=True):
    rng = np.random.default_rng(seed)
    x = rng.random((B, T, n_in))
    return (x < 0.5).astype(np.float64) if binary else x


def _ecg_like(surrogate="multi_gaussian"):
    """rec ALIF -> dense LIF -> integrator readout, per-step NLL on the membrane."""
    return NetworkConfig(n_in=5, layers=[
        LayerConfig(13, "rec", beta=1.8, b_j0=0.05, name="h", surrogate=surrogate),
        LayerConfig(7, "dense", beta=0.0, b_j0=0.05, name="lif", surrogate=surrogate),
        LayerConfig(3, "integrator", name="out")], loss=LossConfig("nll_per_step", start=1))


def _arg_type(a):
    """The Numba type a kernel argument has on a GPU (device arrays: C-contiguous or not)."""
    if isinstance(a, (bool, int, tuple, np.floating, np.integer)):
        return typeof(a)
    return types.Array(from_dtype(a.dtype), a.ndim, "C" if a.is_c_contiguous() else "A")


SEEN = set()       # the kernels launched so far in this process


class _Recorder:
    """Stands in for a kernel: checks that a launch's argument types are those that
    tests/test_cuda_backend.py compiles to PTX (``signature``), so that check covers the
    launches the backend really makes; then launches."""
    def __init__(self, name, module):
        self.name, self.module, self.kernel = name, module, getattr(module, name)

    def __getitem__(self, config):
        launch = self.kernel[config]

        def call(*args):
            got = tuple(_arg_type(a) for a in args)
            sp = next((typeof(a) for a in args if isinstance(a, tuple)), None)
            want = [self.module.signature(self.name, d, sp) for d in (np.float32, np.float64)]
            assert got in want, (self.name, got, want)
            SEEN.add(self.name)
            return launch(*args)
        return call


@pytest.fixture(autouse=True)
def _record_launches(monkeypatch):
    for module in (layers, losses, optim):
        for name in module.KERNELS:
            monkeypatch.setattr(module, name, _Recorder(name, module))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_rec_alif_dense_lif_integrator(dtype):
    x = _data(3, 7, 5).astype(dtype)
    y = np.random.default_rng(1).integers(-1, 3, (3, 7))
    compare(_ecg_like(), x, y, dtype)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_rec_lif_strided_global_weights_spike_readout_batch_1(dtype):
    """A recurrent LIF layer of 45 neurons on blocks of 32 threads (each thread owns one or two
    neurons) with W_rec read from global memory, then a dense ALIF layer read out by its spikes
    (ce_sum_spike: dL/ds_t enters the last layer), batch 1, gaussian and linear surrogates."""
    cfg = NetworkConfig(n_in=4, layers=[
        LayerConfig(45, "rec", beta=0.0, b_j0=0.05, name="lif", surrogate="gaussian"),
        LayerConfig(6, "dense", beta=1.8, b_j0=0.02, name="out", surrogate="linear")],
        loss=LossConfig("ce_sum_spike", start=2))
    x = _data(1, 6, 4, seed=2).astype(dtype)
    compare(cfg, x, np.array([4]), dtype,
            knobs={"block_threads": 32, "shared_bytes": 0})


def test_wide_dense_layer_in_tiles_slayer_and_shared_weights():
    """A dense layer of 40 neurons split over two blocks (tiles) of 32 per sample, above a
    recurrent ALIF layer of 33 (slayer surrogate) whose W_rec fits in shared memory; the weight
    gradients' and column sums' sums over the T B = 10 rows split into spans (split-K)."""
    cfg = NetworkConfig(n_in=3, layers=[
        LayerConfig(33, "rec", beta=1.8, b_j0=0.05, name="h", surrogate="slayer"),
        LayerConfig(40, "dense", beta=1.8, b_j0=0.05, name="d", surrogate="slayer"),
        LayerConfig(2, "integrator", name="out")], loss=LossConfig("ce_sum_softmax", start=0))
    x = _data(2, 5, 3, seed=3)
    compare(cfg, x, np.array([0, 1]), np.float64, w_scale=4.0,
            knobs={"block_threads": 32, "split_k_min": 4, "target_blocks": 1000})


def test_smooth_mode_random_state_and_carry():
    """The smooth mode (sigmoid spikes: every neuron 'fires' a fraction), from a random initial
    state with spikes (u, s of slot 0 read by the first step) and a summed-readout carry."""
    cfg = NetworkConfig(n_in=3, layers=[
        LayerConfig(9, "rec", beta=1.8, b_j0=0.1, name="h", surrogate="smooth"),
        LayerConfig(4, "integrator", name="out")], loss=LossConfig("ce_sum_softmax", start=1))
    state = initial_state(cfg, 2, np.float64, mode="random", rng=np.random.default_rng(5),
                          scale=1.0, spikes=True)
    x = _data(2, 5, 3, seed=4, binary=False)
    carry = np.random.default_rng(6).random((2, 4))
    compare(cfg, x, np.array([3, 1]), np.float64, state=state, carry=carry)


def test_the_comparison_fails_on_a_perturbed_parameter():
    """The checker can fail: one recurrent weight changed by a relative 1e-7 on the CUDA side
    moves the gradients by far more than the float64 tolerance."""
    def perturb(p):
        p["h.W_rec"][2, 3] *= 1 + 1e-7
    x = _data(3, 7, 5)
    y = np.random.default_rng(1).integers(-1, 3, (3, 7))
    with pytest.raises(AssertionError):
        compare(_ecg_like(), x, y, np.float64, perturb=perturb)


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("split", [False, True])
def test_matmul_every_transpose_partial_tiles_and_split_k(ta, tb, split):
    """C = op(A) op(B) (+ bias, unsplit) on 4 x 4 tiles that M = 7, K = 9, N = 5 fill only in
    part; split: the sum over K in spans of 4 (3 spans, the last partial) added up by
    sum_splits. Also the column sums, split and not."""
    be = CudaBackend(np.float64)
    be.tile = 4
    if split:
        be.split_k_min, be.target_blocks = 4, 1000
    rng = np.random.default_rng(0)
    M, K, N = 7, 9, 5
    A = rng.random((K, M) if ta else (M, K))
    B = rng.random((N, K) if tb else (K, N))
    bias = None if split else rng.random(N)
    C = be._cuda.device_array((M, N))
    be._matmul(be._dev(A), be._dev(B), C, ta, tb, bias=None if split else be._dev(bias))
    ref = (A.T if ta else A) @ (B.T if tb else B) + (0 if split else bias)
    assert_same("C", C.copy_to_host(), ref, 1e-14)
    if split:
        assert be._splits(1, K) == (3, 4)
    assert_same("column sums", be._column_sums(be._dev(A)), A.sum(0), 1e-14)


def test_device_loss_checks_its_arguments():
    """The device losses refuse what the CPU's refuse, with the same messages."""
    out = CudaBackend(np.float64)._zeros((4, 2, 3))
    with pytest.raises(ValueError, match="labels must lie in"):
        losses.compute_device("nll_per_step", out, np.full((2, 4), 3), 0)
    with pytest.raises(ValueError, match="expected"):
        losses.compute_device("ce_sum_softmax", out, np.zeros(3, np.int64), 0)
    with pytest.raises(ValueError, match="beyond the sequence"):
        losses.compute_device("ce_sum_spike", out, np.zeros(2, np.int64), 4)
    with pytest.raises(ValueError, match="unknown loss"):
        losses.compute_device("mse", out, np.zeros(2, np.int64), 0)



@pytest.mark.parametrize("kind", ["ce_sum_softmax", "nll_per_step"])
def test_truncated_bptt_training_steps_match(kind):
    """The trainer's ``train_step`` with truncated BPTT (chunks of 3 of 7 steps, an Adam update
    after each, the state and the summed readout carried across) on both backends: the same
    losses, accuracies, firing rates and parameters after the updates."""
    from spikesim.train.optim import Optimizer
    from spikesim.train.trainer import train_step
    cfg = NetworkConfig(n_in=4, layers=[
        LayerConfig(11, "rec", beta=1.8, b_j0=0.05, name="h"),
        LayerConfig(3, "integrator", name="out")], loss=LossConfig(kind, start=1))
    x = _data(2, 7, 4, seed=7)
    y = (np.random.default_rng(8).integers(0, 3, (2, 7)) if kind == "nll_per_step"
         else np.array([2, 0]))
    out = []
    for backend in ("cpu", "cuda"):
        net = Network(cfg, seed=1, backend=backend, dtype=np.float64)
        for k in net.params:
            if k.endswith("W_in"):
                net.params[k] *= 2.0
        if backend == "cuda":
            net.backend.tile, net.backend.block_threads = 8, 16
        opt = Optimizer(net.params, lr=1e-2)
        res = train_step(net, opt, x, y, None, tbptt=3)
        out.append((res, net.params))
    (l0, c0, n0, f0), p0 = out[0]
    (l1, c1, n1, f1), p1 = out[1]
    assert l1 == pytest.approx(l0, rel=1e-10) and (c1, n1) == (c0, n0)
    assert f0[0] > 0 and f1[0] == pytest.approx(f0[0], rel=1e-10)
    for k in p0:
        assert_same(k, p1[k], p0[k], 1e-10)


def test_the_simulator_guard_keeps_one_shared_array_per_block(monkeypatch):
    """tests/conftest.py guards the simulator's shared-array allocation. With the allocation
    slowed down (as a loaded machine may), the unguarded allocator gives the block's threads
    different arrays and ``sum_squares`` loses their parts; the guarded one gives the exact
    sum. The first half shows that this check can fail."""
    from numba.cuda.simulator import kernelapi
    guarded = kernelapi.FakeCUDAShared.array
    assert hasattr(guarded, "unguarded"), "tests/conftest.py did not install the guard"
    fast_empty = np.empty

    def slow_empty(*args, **kwargs):
        import time
        time.sleep(0.05)            # the other threads start and reach the allocation meanwhile
        return fast_empty(*args, **kwargs)

    g = np.arange(1.0, 65.0)
    ops = optim.DeviceUpdate(np.float64, threads=16)
    dg = ops.to_device(g)
    monkeypatch.setattr(np, "empty", slow_empty)
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", guarded.unguarded)
    lost = ops.norm_squares([dg])[0]
    monkeypatch.setattr(kernelapi.FakeCUDAShared, "array", guarded)
    exact = ops.norm_squares([dg])[0]
    monkeypatch.undo()
    assert exact == (g * g).sum()
    assert lost != (g * g).sum()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["adam", "adamax"])
def test_device_optimizer_matches_the_host(kind, dtype):
    """``Optimizer.to_device``: Adam and Adamax on device arrays (lr_mult, a frozen tensor,
    weight decay of h.W_in, clipping active in some steps and not in others) give the host's
    parameters, moments and gradient norms, step by step: float64 within 1e-12, float32 within
    ``TOL``."""
    from spikesim.train.optim import Optimizer
    rng = np.random.default_rng(3)
    shapes = {"h.W_in": (5, 3), "h.b_in": (5,), "h.tau_m": (5,), "out.W_in": (2, 5)}
    tol = 1e-12 if dtype == np.float64 else TOL[np.float32]
    params = {k: (rng.normal(size=s) + (20.0 if k.endswith("tau_m") else 0.0)).astype(dtype)
              for k, s in shapes.items()}
    kw = dict(lr=1e-2, kind=kind, lr_mult={"h.tau_*": 3.0, "out.*": 0.5}, clip_norm=4.0,
              frozen=("out.W_in",), weight_decay=0.5)
    host = Optimizer({k: v.copy() for k, v in params.items()}, **kw)
    dev = Optimizer({k: v.copy() for k, v in params.items()}, **kw)
    ops = optim.DeviceUpdate(dtype, threads=16)
    dparams = {k: ops.to_device(v) for k, v in params.items()}
    dev.to_device(dparams, ops)
    for step in range(4):
        grads = {k: (rng.normal(size=s) * (0.5 if step % 2 else 3.0)).astype(dtype)
                 for k, s in shapes.items()}
        n_host = host.step(grads)
        n_dev = dev.step({k: ops.to_device(g) for k, g in grads.items()})
        assert n_dev == pytest.approx(n_host, rel=tol)
        dev.sync_params()
        for k in shapes:
            assert_same(k, dev.params[k], host.params[k], tol)
    sd, sh = dev.state_dict(), host.state_dict()
    assert (sd["t"], sd["lr"]) == (sh["t"], sh["lr"])
    for key in ("m", "v"):
        for k in shapes:
            assert_same(f"{key} {k}", sd[key][k], sh[key][k], tol)
    assert np.array_equal(dev.params["out.W_in"], params["out.W_in"])    # frozen
    ops.clamp_min(dparams["h.tau_m"], 20.0)
    dev.sync_params()
    assert np.array_equal(dev.params["h.tau_m"], np.maximum(host.params["h.tau_m"], 20.0))


@pytest.mark.parametrize("kind", ["adam", "adamax"])
def test_trainer_keeps_parameters_on_the_device_and_matches_the_cpu(kind):
    """``Trainer.fit`` on the CUDA backend (parameters, gradients and moments on the device:
    ``bind_params``, ``Optimizer.to_device``) against the CPU: two batches with truncated BPTT
    (3 updates each), lr_mult, clipping, a frozen tau_adp and the tau clamp; the parameters and
    the optimiser's state after the fit agree within 1e-10. Per step no parameter is uploaded
    (``uploads`` stays at what ``bind_params`` counted) and the backend hands out device
    gradients."""
    from spikesim.train.trainer import ArrayDataset, TrainConfig, Trainer
    cfg = NetworkConfig(n_in=4, layers=[
        LayerConfig(11, "rec", beta=1.8, b_j0=0.05, name="h"),
        LayerConfig(6, "dense", beta=0.0, b_j0=0.05, name="lif", train_tau_adp=False),
        LayerConfig(3, "integrator", name="out")], loss=LossConfig("ce_sum_softmax", start=1))
    x = _data(4, 7, 4, seed=9)
    y = np.array([2, 0, 1, 2])
    tcfg = TrainConfig(epochs=1, batch_size=2, lr=1e-2, optimizer=kind, tbptt=3,
                       lr_mult={"h.tau_*": 30.0}, clip_norm=0.5, tau_min=20.0)
    out = {}
    for backend in ("cpu", "cuda"):
        net = Network(cfg, seed=1, backend=backend, dtype=np.float64)
        for k in net.params:
            if k.endswith("W_in"):
                net.params[k] *= 2.0
        if backend == "cuda":
            net.backend.tile, net.backend.block_threads = 8, 16
        tr = Trainer(net, tcfg, ArrayDataset(x, y), progress=False)
        hist = tr.fit()
        out[backend] = (hist, net, tr.opt)
    (h0, n0, o0), (h1, n1, o1) = out["cpu"], out["cuda"]
    assert o1.on_device and not o0.on_device
    assert n1.backend.bound is None           # unbound after the fit, host parameters synced
    assert n1.backend.uploads <= len(n1.params) + 8     # the bind and a few constants, not per step
    assert h1[0]["train_loss"] == pytest.approx(h0[0]["train_loss"], rel=1e-10)
    for name in ("h.tau_m", "lif.tau_m"):     # the clamp held some time constants, not all
        assert (n0.params[name] == 20.0).any() and (n0.params[name] > 20.0).any(), name
    assert np.array_equal(n1.params["lif.tau_adp"], np.full(6, 200.0))      # frozen
    for k in n0.params:
        assert_same(k, n1.params[k], n0.params[k], 1e-10)
    s0, s1 = o0.state_dict(), o1.state_dict()
    assert s1["t"] == s0["t"] == 6
    for key in ("m", "v"):
        for k in n0.params:
            assert_same(f"{key} {k}", s1[key][k], s0[key][k], 1e-10)


def test_bound_parameters_are_checked_on_the_device():
    """With the parameters on the device (``bind_params``) the forward refuses a NaN parameter
    and a time constant <= 0 as the host check does, from counts made on the device."""
    cfg = NetworkConfig(n_in=2, layers=[LayerConfig(3, "rec", name="h"),
                                        LayerConfig(2, "integrator", name="out")],
                        loss=LossConfig("nll_per_step"))
    net = Network(cfg, dtype=np.float64, backend="cuda")
    x = np.zeros((1, 2, 2))
    dev = net.backend.bind_params(net.params)
    net.forward(x)
    for name, value, match in (("h.tau_adp", -1.0, "time constants <= 0"),
                               ("out.W_in", np.nan, "NaN or inf")):
        good = dev[name].copy_to_host()
        bad = good.copy()
        bad.reshape(-1)[1] = value
        dev[name].copy_to_device(bad)
        with pytest.raises(ValueError, match=f"{name}.*{match}"):
            net.forward(x)
        dev[name].copy_to_device(good)
    net.forward(x)


def test_nan_input_and_nan_state_are_refused():
    """As on the CPU: NaN in the input is refused before any launch, and NaN that reaches a
    layer's membrane (here from the initial state) after the forward pass."""
    cfg = NetworkConfig(n_in=2, layers=[LayerConfig(3, "rec", name="h"),
                                        LayerConfig(2, "integrator", name="out")],
                        loss=LossConfig("nll_per_step"))
    net = Network(cfg, dtype=np.float64, backend="cuda")
    x = np.zeros((1, 2, 2))
    x[0, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        net.forward(x)
    state = initial_state(cfg, 1, np.float64)
    state["h"][0][0, 1] = np.inf
    with pytest.raises(ValueError, match="layer 'h' produced NaN or inf"):
        net.forward(np.zeros((1, 2, 2)), state)

def test_zz_every_kernel_was_launched_with_its_ptx_signature():
    """Runs last: every kernel of layers.py, losses.py and optim.py was launched by the tests
    above, each launch with the argument types that tests/test_cuda_backend.py compiles to PTX."""
    if len(SEEN) < 3:
        pytest.skip("run with the whole module")
    assert SEEN == set(layers.KERNELS) | set(losses.KERNELS) | set(optim.KERNELS)
