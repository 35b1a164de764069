"""Truncated BPTT (``train_step(..., tbptt=k)``) against full BPTT, float64."""
import numpy as np
import pytest

from spikesim.network import Network, initial_state
from spikesim.tasks.smnist import nmi_config
from spikesim.train.optim import Optimizer
from spikesim.train.trainer import train_step

T, B, K = 40, 6, 4


def _setup(loss_start=1):
    cfg = nmi_config(k=K, hidden=(12, 16, 14), w_rec_init="orthogonal", loss_start=loss_start)
    # a larger b_j0-scale drive so that every layer spikes within 40 steps
    net = Network(cfg, seed=3, dtype=np.float64)
    for n in ("r1", "r2", "d1", "o"):
        net.params[f"{n}.W_in"] *= 3.0
    rng = np.random.default_rng(0)
    x = (rng.random((B, T, K)) > 0.6).astype(np.float64)
    y = rng.integers(0, 10, B)
    st = initial_state(cfg, B, np.float64, mode="random", rng=np.random.default_rng(1))
    return net, x, y, st


def _copy_net(net):
    return Network(net.config, params={k: v.copy() for k, v in net.params.items()}, dtype=net.dtype)


class _Recorder(Optimizer):
    """An optimizer that records every gradient dict it is given."""

    def __init__(self, params, **kw):
        super().__init__(params, **kw)
        self.seen = []

    def step(self, grads):
        self.seen.append({k: v.copy() for k, v in grads.items()})
        return super().step(grads)


def _opt(net):
    return _Recorder(net.params, lr=8e-3, kind="adamax", lr_mult={"*.tau_adp": 3.0, "*.tau_m": 2.0})


@pytest.mark.parametrize("chunk", [T, T + 10])
def test_tbptt_covering_whole_sequence_equals_full_bptt(chunk):
    net, x, y, st = _setup()
    assert all(r > 0 for r in net.forward(x, st).firing_rates())
    # full BPTT by hand
    ref = _copy_net(net)
    loss, grads, res, trace = ref.loss_and_grad(x, y, state=st)
    # train_step with a chunk covering everything
    opt = _opt(net)
    l2, correct, count, _ = train_step(net, opt, x, y, st, tbptt=chunk)
    assert len(opt.seen) == 1
    assert l2 == pytest.approx(loss, rel=1e-13, abs=1e-13)
    assert correct == res.correct and count == B
    for k, g in grads.items():
        np.testing.assert_allclose(opt.seen[0][k], g, rtol=1e-12, atol=1e-12, err_msg=k)
    # same parameters after the update as a full-BPTT step with the same optimizer
    ref_opt = _opt(ref)
    train_step(ref, ref_opt, x, y, st, tbptt=None)
    for k in net.params:
        np.testing.assert_allclose(net.params[k], ref.params[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_tbptt_short_chunks_run_and_sum_matches_forward():
    net, x, y, st = _setup()
    base = _copy_net(net)
    # with no optimizer, the chunked forward must give exactly the full forward's summed logits
    full = base.loss(base.forward(x, st), y)
    logits = []
    orig_loss = Network.loss

    def spy(self, trace, labels, carry=None, grad=False, start=None):
        r = orig_loss(self, trace, labels, carry=carry, grad=grad, start=start)
        logits.append(r.logits.copy())
        return r

    Network.loss = spy
    try:
        l_chunks, c, n, _ = train_step(_copy_net(net), None, x, y, st, tbptt=15)
    finally:
        Network.loss = orig_loss
    assert len(logits) == 3                                     # 15 + 15 + 10 steps
    np.testing.assert_allclose(logits[-1], full.logits, rtol=0, atol=1e-12)
    assert l_chunks == pytest.approx(full.loss, rel=1e-12)
    # with updates: one step per chunk, and the result differs from full BPTT
    opt = _opt(net)
    loss_t, _, _, _ = train_step(net, opt, x, y, st, tbptt=15)
    assert len(opt.seen) == 3 and np.isfinite(loss_t)
    ref = _copy_net(base)
    train_step(ref, _opt(ref), x, y, st, tbptt=None)
    diff = max(np.abs(net.params[k] - ref.params[k]).max() for k in net.params)
    assert diff > 1e-6
    # the first chunk's gradients are those of the first 15 steps alone
    g0 = opt.seen[0]
    part = _copy_net(base)
    _, g_part, _, _ = part.loss_and_grad(x[:, :15], y, state=st)
    for k in g_part:
        np.testing.assert_allclose(g0[k], g_part[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_chunk_boundaries_of_the_official_script():
    """The official S-MNIST script updates after the steps i = 100, 200, ..., 700 (counted
    from 0) and at the end; spikesim's S-MNIST training does the same."""
    from spikesim.tasks.smnist import train_config
    from spikesim.train.trainer import tbptt_chunks
    cfg = train_config()
    assert (cfg.tbptt, cfg.tbptt_offset) == (100, 1)
    chunks = tbptt_chunks(784, cfg.tbptt, cfg.tbptt_offset)
    assert [t1 - 1 for _, t1 in chunks] == [100, 200, 300, 400, 500, 600, 700, 783]
    assert chunks[0] == (0, 101) and all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
    assert tbptt_chunks(784, 100) == [(t, min(784, t + 100)) for t in range(0, 784, 100)]
    assert tbptt_chunks(50, 100, 1) == [(0, 50)] and tbptt_chunks(9) == [(0, 9)]
    assert train_config(tbptt=None).tbptt_offset == 0
    assert train_config().init_state == "random-nmi-smnist"


def test_train_step_updates_at_the_chunk_boundaries():
    net, x, y, st = _setup()
    seen = []
    forward = net.forward
    net.forward = lambda xc, s=None: (seen.append(xc.shape[1]), forward(xc, s))[1]
    opt = _opt(net)
    train_step(net, opt, x, y, st, tbptt=15, tbptt_offset=1)      # T = 40: 16 + 15 + 9
    assert seen == [16, 15, 9] and len(opt.seen) == 3
    seen.clear()
    train_step(net, _opt(net), x, y, st, tbptt=15)
    assert seen == [15, 15, 10]
