"""The device check: the CUDA backend against the CPU backend at task-like sizes on a real GPU,
with timings. Skips where there is no GPU; in the CUDA simulator it runs the same code at tiny
sizes (tests/test_cuda_backend.py runs it there, so the check itself is tested without a GPU).

On a machine with a GPU: ``python3 -m pytest -q -s tests/test_cuda_gpu.py`` (about a minute,
most of it compiling the kernels; ``SPIKESIM_GPU_TIMINGS=FILE`` also writes the timings as
JSON). Cases: an ECG-like network (rec LIF 36 -> dense ALIF 6, per-step NLL on the membrane),
an SHD-like one (700 -> rec 128 -> rec 128 -> integrator 20, summed softmax; W_rec 128 x 128
too large for shared memory in float32), and a wide one (rec 300 on blocks of 256 threads, each
thread owning one or two neurons; spike readout). Tolerances, per array relative to its largest
element: float64 1e-9 and identical spikes; float32 with the smooth mode (no threshold, so no
spike can flip) 1e-3; float32 with Heaviside spikes, where a last-bit difference near the
threshold flips a spike and the runs then part, only firing rates and loss within 5 %.
"""
import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("numba.cuda")
from numba import cuda  # noqa: E402

from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig  # noqa: E402
from spikesim.network import Network  # noqa: E402

SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"
if not (SIM or cuda.is_available()):
    pytest.skip("needs an NVIDIA GPU (or the CUDA simulator, where it runs at tiny sizes)",
                allow_module_level=True)

TIMINGS = {}


def _cases():
    """name -> (config, B, T, input density, labels(rng, B, T, C)). Tiny in the simulator."""
    def per_step(rng, B, T, C):
        return rng.integers(0, C, (B, T))

    def per_sample(rng, B, T, C):
        return rng.integers(0, C, B)
    s = (lambda full, tiny: tiny) if SIM else (lambda full, tiny: full)
    return {
        "ecg": (lambda sg: NetworkConfig(n_in=4, layers=[
                    LayerConfig(s(36, 7), "rec", beta=0.0, b_j0=0.1, name="hidden", surrogate=sg),
                    LayerConfig(6, "dense", b_j0=0.1, name="out", surrogate=sg)],
                    loss=LossConfig("nll_per_step", start=s(10, 1))),
                s(32, 2), s(300, 5), 0.2, per_step),
        "shd": (lambda sg: NetworkConfig(n_in=s(700, 9), layers=[
                    LayerConfig(s(128, 9), "rec", b_j0=0.01, name="l1", surrogate=sg),
                    LayerConfig(s(128, 6), "rec", b_j0=0.01, name="l2", surrogate=sg),
                    LayerConfig(s(20, 3), "integrator", name="out")],
                    loss=LossConfig("ce_sum_softmax", start=s(11, 1))),
                s(16, 2), s(100, 5), 0.05, per_sample),
        "wide": (lambda sg: NetworkConfig(n_in=16, layers=[
                    LayerConfig(s(300, 20), "rec", b_j0=0.02, name="h", surrogate=sg),
                    LayerConfig(10, "dense", b_j0=0.02, name="out", surrogate=sg)],
                    loss=LossConfig("ce_sum_spike", start=1)),
                 s(8, 1), s(50, 5), 0.2, per_sample),
    }


def _same(name, a, b, tol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    err, scale = np.abs(a - b).max(), np.abs(b).max()
    assert err <= tol * scale or err == 0.0, f"{name}: error {err:.3g} of max {scale:.3g}"


def _timed(net, x, y, repeats):
    """(result of loss_and_grad, the best wall time of ``repeats`` runs after a first one, which
    compiles; of the first one if ``repeats`` is 0)."""
    t0 = time.perf_counter()
    out = net.loss_and_grad(x, y)
    best = time.perf_counter() - t0 if repeats == 0 else float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        net.loss_and_grad(x, y)
        if not SIM:
            cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return out, best


MODES = ["float64", "float32-smooth", "float32"]
#: every case in every mode on a GPU; in the simulator each case and each mode once (the check's
#: every path, in a few seconds)
RUNS = ([("ecg", "float32"), ("shd", "float64"), ("wide", "float32-smooth")] if SIM
        else [(c, m) for c in ("ecg", "shd", "wide") for m in MODES])


@pytest.mark.parametrize("case, mode", RUNS)
def test_gpu_matches_cpu(case, mode):
    make, B, T, density, labels = _cases()[case]
    dtype = np.float32 if mode.startswith("float32") else np.float64
    cfg = make("smooth" if mode == "float32-smooth" else "multi_gaussian")
    rng = np.random.default_rng(0)
    x = (rng.random((B, T, cfg.n_in)) < density).astype(dtype)
    y = labels(rng, B, T, cfg.layers[-1].size)
    cpu = Network(cfg, seed=0, dtype=dtype)
    for layer in cfg.layers:
        cpu.params[f"{layer.name}.W_in"] *= dtype(4.0)
    gpu = Network(cfg, params={k: v.copy() for k, v in cpu.params.items()}, dtype=dtype,
                  backend="cuda")
    if SIM:
        gpu.backend.tile, gpu.backend.block_threads = 8, 16
    repeats = 0 if SIM else 3
    (l0, g0, r0, t0), s0 = _timed(cpu, x, y, repeats)
    (l1, g1, r1, t1), s1 = _timed(gpu, x, y, repeats)
    TIMINGS[f"{case} {mode}"] = {"cpu_s": s0, "cuda_s": s1, "B": B, "T": T}
    rates0, rates1 = t0.firing_rates(), t1.firing_rates()
    for layer, a, b in zip(cfg.layers, rates1, rates0):
        if layer.spiking:
            assert b > 0, f"{layer.name} does not fire"
            assert a == pytest.approx(b, rel=0.05), layer.name
    if mode == "float32":
        assert l1 == pytest.approx(l0, rel=0.05)
        return
    tol = 1e-9 if dtype == np.float64 else 1e-3
    assert l1 == pytest.approx(l0, rel=tol)
    for layer, a, b in zip(cfg.layers, t1.layers, t0.layers):
        _same(f"{layer.name}.u", a.u_full, b.u_full, tol)
        if layer.spiking and mode == "float64":
            np.testing.assert_array_equal(a.s_full, b.s_full)
    for k in g0:
        _same(k, g1[k], g0[k], tol)


def test_zz_timings():
    """Prints the timings of the cases above (and writes them to $SPIKESIM_GPU_TIMINGS)."""
    if not TIMINGS:
        pytest.skip("run with the whole module")
    for name, t in TIMINGS.items():
        print(f"{name:22s} B={t['B']:3d} T={t['T']:4d}  cpu {t['cpu_s'] * 1e3:9.2f} ms  "
              f"cuda {t['cuda_s'] * 1e3:9.2f} ms")
    path = os.environ.get("SPIKESIM_GPU_TIMINGS")
    if path:
        with open(path, "w") as f:
            json.dump(TIMINGS, f, indent=1)
