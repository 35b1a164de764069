"""The per-step NLL loss (ECG) against a direct NumPy computation: value, gradient, predictions
and the counts of correct and scored steps, with masked steps and row counts that leave a
partial block of 8 rows in the kernel."""
import numpy as np
import pytest

from spikesim.backends.cpu.losses import nll_per_step
from spikesim.backends.cpu.threads import compute_threads


def _reference(out, labels, start):
    u = out[start:].astype(np.float64)                      # (T', B, C)
    y = labels[:, start:].T                                 # (T', B)
    m = u.max(axis=2, keepdims=True)
    logp = u - m - np.log(np.exp(u - m).sum(axis=2, keepdims=True))
    mask = y >= 0
    yy = np.where(mask, y, 0)
    picked = np.take_along_axis(logp, yy[..., None], axis=2)[..., 0]
    B = out.shape[1]
    loss = -(picked * mask).sum() / B
    g = np.zeros(out.shape)
    p = np.exp(logp)
    p[np.arange(p.shape[0])[:, None], np.arange(B)[None, :], yy] -= 1
    g[start:] = p * mask[..., None] / B
    pred = out.argmax(axis=2).T                             # (B, T)
    correct = int(((pred[:, start:] == labels[:, start:]) & (labels[:, start:] >= 0)).sum())
    return loss, g, pred, correct, int(mask.sum())


@pytest.mark.parametrize("dtype,T,B,C,start,threads", [
    (np.float64, 13, 5, 6, 2, 1), (np.float64, 11, 7, 3, 0, 2), (np.float32, 17, 6, 6, 3, 2),
    (np.float64, 9, 3, 20, 1, 2)])
def test_nll_per_step_matches_numpy(dtype, T, B, C, start, threads):
    rng = np.random.default_rng(T * B + C)
    out = (rng.standard_normal((T, B, C)) * 3).astype(dtype)
    out[4, 1, :] = out[4, 1, 0]                             # ties: the first index wins
    labels = rng.integers(0, C, (B, T))
    labels[rng.random((B, T)) < 0.3] = -1                   # masked steps
    ref_loss, ref_g, ref_pred, ref_correct, ref_count = _reference(out, labels, start)
    with compute_threads(threads):
        res = nll_per_step(out, labels, start)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert res.loss == pytest.approx(ref_loss, rel=tol)
    np.testing.assert_allclose(res.grad, ref_g, rtol=tol * 10, atol=tol * 1e-2)
    assert np.array_equal(res.pred, ref_pred)
    assert (res.correct, res.count) == (ref_correct, ref_count)
    masked_t, masked_b = np.nonzero(labels.T < 0)
    assert not res.grad[masked_t[masked_t >= start], masked_b[masked_t >= start]].any()


@pytest.mark.parametrize("kind", ["nll_per_step", "ce_sum_softmax", "ce_sum_spike"])
def test_reused_work_arrays_give_the_same_results(kind):
    """With a ``work`` dict the gradient (and NLL predictions) live in arrays reused from call
    to call: the steps before ``start`` must still be zero, whatever the previous call left."""
    from spikesim.backends.cpu.losses import compute
    rng = np.random.default_rng(4)
    T, B, C = 12, 5, 4
    out = rng.standard_normal((T, B, C))
    labels = rng.integers(0, C, (B, T) if kind == "nll_per_step" else B)
    work = {}
    compute(kind, rng.standard_normal((T, B, C)), labels, 0, work=work)   # fills all of them
    fresh = compute(kind, out, labels, 3)
    reused = compute(kind, out, labels, 3, work=work)
    assert reused.grad is work[next(k for k in work if k.endswith(".g"))]
    assert reused.loss == fresh.loss
    np.testing.assert_array_equal(reused.grad, fresh.grad)
    np.testing.assert_array_equal(reused.pred, fresh.pred)
    assert not reused.grad[:3].any()
