"""Gradient correctness of the Numba kernels beyond ``spikesim gradcheck``
(``test_gradcheck.py``): float32 against float64, thread counts, the trace's dense views,
the sparse scatter path and the streamed stores."""
import numpy as np
import pytest

from spikesim.backends.cpu.threads import compute_threads
from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig, SurrogateConfig
from spikesim.network import Network
from validation import gradcheck_cases as cases


def _rel(a, b) -> float:
    """max|a - b| / max(|a|, |b|) over a tensor."""
    scale = max(np.max(np.abs(a)), np.max(np.abs(b)))
    return 0.0 if scale == 0 else float(np.max(np.abs(a - b)) / scale)


def test_wide_reference_case_reaches_the_wide_layer_paths():
    """The "wide" reference case exists to check the kernels' paths for wide layers; make sure
    it still reaches them: scatters grouped by column (at least GROUP_N neurons and four
    entries per column and step in each batch chunk, input and recurrent), and a top layer
    that sends dL/dI down (eight times narrower than its input)."""
    from spikesim.backends.cpu.gather_scatter import GROUP_N
    from spikesim.backends.cpu.threads import n_chunks
    cfg = cases.reference_cases()["wide"]
    p = cases.reference_problem("wide", cfg, quick=True)
    x = p.x
    trace = p.net.forward(x, p.state)
    hidden, top = cfg.layers
    assert hidden.size >= GROUP_N and 8 * top.size <= hidden.size
    rows = x.shape[0] // n_chunks(x.shape[0])
    s = trace.layers[0].s_full[:-1]                 # s_{t-1}, read by step t's W_rec gradient
    assert (s != 0).sum(axis=(1, 2)).min() / n_chunks(x.shape[0]) >= 4 * hidden.size
    assert (x != 0).sum(axis=(0, 2)).min() / n_chunks(x.shape[0]) >= 4 * cfg.n_in
    assert rows >= 4


def _two_layer(dtype, surrogate="multi_gaussian"):
    cfg = NetworkConfig(6, [LayerConfig(16, "rec", surrogate=surrogate),
                            LayerConfig(4, "integrator")], LossConfig("ce_sum_softmax", 5))
    return cfg, Network(cfg, seed=2, dtype=dtype)


def test_float32_close_to_float64_in_smooth_mode():
    cfg, n64 = _two_layer(np.float64, SurrogateConfig("smooth", k=2.0))
    n32 = Network(cfg, params={k: v.astype(np.float32) for k, v in n64.params.items()},
                  dtype=np.float32)
    rng = np.random.default_rng(0)
    x = rng.random((4, 30, 6)) * 2
    y = rng.integers(0, 4, 4)
    l64, g64, _, _ = n64.loss_and_grad(x, y)
    l32, g32, _, _ = n32.loss_and_grad(x.astype(np.float32), y)
    assert abs(l32 - l64) < 1e-5 * abs(l64)
    for k in g64:
        assert _rel(g32[k].astype(np.float64), g64[k]) < 1e-4, k


def test_float32_surrogate_exp_accuracy():
    """The float32 kernels' polynomial exp agrees with the exact surrogate to float32 precision."""
    from validation.reference_numpy import surrogate_derivative
    cfg, n32 = _two_layer(np.float32)
    n64 = Network(cfg, params={k: v.astype(np.float64) for k, v in n32.params.items()},
                  dtype=np.float64)
    x = (np.random.default_rng(1).random((3, 20, 6)) < 0.5).astype(np.float32) * 3
    y = np.array([0, 1, 2])
    tr32, tr64 = n32.forward(x), n64.forward(x)
    _, g32, _, _ = n32.loss_and_grad(x, y)
    _, g64, _, _ = n64.loss_and_grad(x, y)
    # this input gives the same spikes in both precisions, so the gradients agree to float32
    # rounding (the polynomial exp of the float32 surrogate included)
    assert np.array_equal(tr32.layers[0].s, tr64.layers[0].s)
    for k in g64:
        assert _rel(g32[k].astype(np.float64), g64[k]) < 1e-4, k
    xs = np.linspace(-4, 4, 1001)
    sur = SurrogateConfig("multi_gaussian")
    exact = surrogate_derivative(xs, sur)
    from spikesim.backends.cpu.neuron_rows import surrogate_rows
    from spikesim.model.surrogates import surrogate_consts
    o32 = np.empty(xs.size, np.float32)        # the kernels' own surrogate loop, in float32
    surrogate_rows(xs.astype(np.float32), o32, xs.size, surrogate_consts(sur, np.float32))
    assert np.max(np.abs(o32 - exact)) < 1e-5          # peak 0.878: ~1e-5 relative


def test_results_do_not_depend_on_thread_count_beyond_rounding():
    cfg, net = _two_layer(np.float64)
    rng = np.random.default_rng(5)
    x = (rng.random((6, 25, 6)) < 0.4) * 2.0
    y = rng.integers(0, 4, 6)
    with compute_threads(1):
        l1, g1, _, _ = net.loss_and_grad(x, y)
    with compute_threads(2):
        l2, g2, _, _ = net.loss_and_grad(x, y)
        l3, g3, _, _ = net.loss_and_grad(x, y)
    assert l1 == pytest.approx(l2, rel=1e-13)
    for k in g1:
        assert _rel(g1[k], g2[k]) < 1e-12
        assert np.array_equal(g2[k], g3[k]), "same thread count must give identical results"


def test_backward_runs_in_the_forward_chunks_when_the_thread_count_changes():
    """The kernels read each chunk's list entries as one run (``lists.entry_rows``): a backward
    under another thread count must still use the forward's chunks, and give its results."""
    cfg, net = _two_layer(np.float64)
    rng = np.random.default_rng(6)
    x = (rng.random((7, 20, 6)) < 0.4) * 1.0
    y = rng.integers(0, 4, 7)
    with compute_threads(2):
        _, g2, _, _ = net.loss_and_grad(x, y)
        trace = net.forward(x)
        res = net.loss(trace, y, grad=True)
    assert trace.nch == 2
    with compute_threads(1):
        g1 = net.backward(trace, res.grad)
    for k in g2:
        assert np.array_equal(g1[k], g2[k]), k


@pytest.mark.parametrize("name", ["shd", "wide"])
def test_trace_state_matches_the_numpy_reference(name):
    """The trace keeps only u in full (spikes as lists, b every few steps): the dense s and b it
    builds on demand, its final state and firing rates must equal the reference forward's."""
    from validation.reference_numpy import forward
    cfg = cases.reference_cases()[name]
    p = cases.reference_problem(name, cfg, quick=True)
    net, x, state = p.net, p.x, p.state
    trace = net.forward(x, state)
    ref = forward(cfg, net.params, x, state)
    final = trace.final_state(cfg)
    for layer, tr in zip(cfg.layers, trace.layers):
        r = ref[layer.name]
        np.testing.assert_allclose(tr.u, r["u"], rtol=1e-12, atol=1e-12)
        if not layer.spiking:
            assert tr.s is None and tr.bt is None
            continue
        assert np.array_equal(tr.s, r["s"]) and np.any(r["s"])
        np.testing.assert_allclose(tr.bt, r["b"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(tr.s_full[0], state[layer.name][1])
        u, s, b = final[layer.name]
        np.testing.assert_allclose(u, r["u"][-1], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(s, r["s"][-1])
        np.testing.assert_allclose(b, r["b"][-1], rtol=1e-12, atol=1e-12)
    rates = [r for r in trace.firing_rates() if r is not None]
    want = [ref[l.name]["s"].mean() for l in cfg.layers if l.spiking]
    np.testing.assert_allclose(rates, want, rtol=1e-12)


def test_wide_layer_sparse_scatters_against_the_reference():
    """The "wide" network with one batch row per chunk: each step has fewer than four entries
    per column, so its weight gradients take the per-entry scatter (``gather_scatter._scatter_row``,
    a 128-lane block and a rest) instead of the grouped one; checked against the NumPy
    reference in float64."""
    from validation.reference_numpy import reference_loss_and_grads
    cfg = cases.reference_cases()["wide"]
    p = cases.reference_problem("wide", cfg, quick=True)
    net, x, labels, state = p.net, p.x, p.labels, p.state
    x, labels = x[:2], labels[:2]
    state = {k: tuple(a[:2] for a in v) for k, v in state.items()}
    loss, grads, _, trace = net.loss_and_grad(x, labels, state)
    s = trace.layers[0].s_full
    assert 0 < (s != 0).sum(axis=(1, 2)).max() < 4 * cfg.layers[0].size   # per-entry path
    rloss, rgrads = reference_loss_and_grads(cfg, net.params, x, labels, state)
    assert abs(loss - rloss) <= 1e-12 * abs(rloss)
    for k in grads:
        assert _rel(grads[k], rgrads[k]) <= 1e-12, k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_streamed_and_cached_membrane_stores_agree(dtype):
    """The forward writes u with non-temporal stores when a chunk's rows are 64-byte aligned
    (``layers.alif_forward``; ``CpuBackend._buf`` aligns them): on misaligned buffers (plain
    stores) the same network must give the same loss, u and gradients, bit for bit."""
    from spikesim.backends.cpu.workspace import empty_aligned
    cfg, net = _two_layer(dtype)
    _, other = _two_layer(dtype)
    rng = np.random.default_rng(8)
    x = (rng.random((8, 21, 6)) < 0.4) * 1.5          # B * N = 128: whole vectors per step
    y = rng.integers(0, 4, 8)

    def misaligned(key, shape):
        a = np.empty(int(np.prod(shape)) + 1, dtype)[1:].reshape(shape)
        assert a.ctypes.data % 64 != 0
        return a
    other.backend._buf = misaligned
    assert empty_aligned((3, 5), np.float32).ctypes.data % 64 == 0
    with compute_threads(2):
        l1, g1, _, t1 = net.loss_and_grad(x, y)
        l2, g2, _, t2 = other.loss_and_grad(x, y)
    assert t1.layers[0].u_full.ctypes.data % 64 == 0
    assert l1 == l2
    assert np.array_equal(t1.layers[0].u_full, t2.layers[0].u_full)
    for k in g1:
        assert np.array_equal(g1[k], g2[k]), k
