"""Optimisers against hand-computed PyTorch update rules; schedules; clipping; state."""
import numpy as np
import pytest

from spikesim.train.optim import LinearDecay, Optimizer, StepLR, make_schedule


def test_adam_matches_the_update_rule():
    p = {"w": np.array([1.0, -2.0])}
    opt = Optimizer(p, lr=0.1, kind="adam")
    g = np.array([0.5, -1.0])
    m = v = np.zeros(2)
    w = np.array([1.0, -2.0])
    for t in range(1, 4):
        opt.step({"w": g})
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(p["w"], w, rtol=1e-12)


def test_adamax_matches_the_update_rule():
    p = {"w": np.array([1.0, -2.0])}
    opt = Optimizer(p, lr=0.1, kind="adamax")
    w, m, u = np.array([1.0, -2.0]), np.zeros(2), np.zeros(2)
    for t, g in enumerate([np.array([0.5, -1.0]), np.array([0.1, 2.0])], 1):
        opt.step({"w": g})
        m = 0.9 * m + 0.1 * g
        u = np.maximum(0.999 * u, np.abs(g) + 1e-8)
        w = w - 0.1 / (1 - 0.9 ** t) * m / u
    np.testing.assert_allclose(p["w"], w, rtol=1e-12)


@pytest.mark.parametrize("kind", ["adam", "adamax"])
def test_weight_decay_is_decoupled_and_shrinks_only_the_weights(kind):
    """AdamW's rule: w *= 1 - lr * wd, then the plain update; biases and time constants keep
    their plain update; with wd 0 the update is bit for bit the plain one."""
    g = {"h.W_in": np.array([0.5, -1.0]), "h.b_in": np.array([0.2, 0.3]),
         "h.tau_m": np.array([0.1, -0.4])}
    start = {"h.W_in": np.array([1.0, -2.0]), "h.b_in": np.array([0.5, 0.5]),
             "h.tau_m": np.array([20.0, 25.0])}
    runs = {}
    for wd in (0.0, 0.1):
        p = {k: v.copy() for k, v in start.items()}
        opt = Optimizer(p, lr=0.1, kind=kind, weight_decay=wd)
        for _ in range(3):
            opt.step(g)
        runs[wd] = p
    w, m, v = start["h.W_in"].copy(), np.zeros(2), np.zeros(2)
    gw = g["h.W_in"]
    for t in range(1, 4):
        w = w * (1 - 0.1 * 0.1)
        m = 0.9 * m + 0.1 * gw
        if kind == "adam":
            v = 0.999 * v + 0.001 * gw * gw
            w = w - 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        else:
            v = np.maximum(0.999 * v, np.abs(gw) + 1e-8)
            w = w - 0.1 / (1 - 0.9 ** t) * m / v
    np.testing.assert_allclose(runs[0.1]["h.W_in"], w, rtol=1e-12)
    assert not np.allclose(runs[0.0]["h.W_in"], w)      # the check sees the decay
    for k in ("h.b_in", "h.tau_m"):
        np.testing.assert_array_equal(runs[0.1][k], runs[0.0][k])


def test_weight_decay_equals_torch_adamw():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=(4, 3)), [rng.normal(size=(4, 3)) for _ in range(5)]
    p = {"l.W_rec": w0.copy()}
    opt = Optimizer(p, lr=0.05, kind="adam", weight_decay=0.3)
    tw = torch.tensor(w0.copy(), requires_grad=True)
    topt = torch.optim.AdamW([tw], lr=0.05, weight_decay=0.3, eps=1e-8)
    for gr in grads:
        opt.step({"l.W_rec": gr})
        tw.grad = torch.tensor(gr)
        topt.step()
    np.testing.assert_allclose(p["l.W_rec"], tw.detach().numpy(), rtol=1e-12, atol=1e-14)


def test_bad_weight_decay_is_refused():
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="weight_decay"):
            Optimizer({"w": np.zeros(1)}, lr=0.1, weight_decay=bad)


def test_lr_multipliers_and_frozen():
    p = {"h.tau_m": np.zeros(1), "h.W_in": np.zeros(1), "o.tau_m": np.zeros(1)}
    opt = Optimizer(p, lr=0.1, lr_mult={"h.tau_*": 3.0}, frozen=["o.tau_m"])
    opt.step({k: np.ones(1) for k in p})
    # first Adam step moves every parameter by lr * mult (sign of g)
    np.testing.assert_allclose(p["h.tau_m"], [-0.3], rtol=1e-6)
    np.testing.assert_allclose(p["h.W_in"], [-0.1], rtol=1e-6)
    assert p["o.tau_m"][0] == 0.0


def test_clipping_scales_the_gradient():
    p = {"w": np.zeros(2)}
    opt = Optimizer(p, lr=1.0, kind="adamax", clip_norm=1.0)
    norm = opt.step({"w": np.array([30.0, 40.0])})
    assert norm == pytest.approx(50.0)
    # adamax first step: -lr/(1-b1) * (0.1 g') / (|g'|) with g' = g/50: direction only
    np.testing.assert_allclose(p["w"], [-1.0, -1.0], rtol=1e-6)


def test_nan_gradient_is_refused():
    p = {"w": np.zeros(2)}
    opt = Optimizer(p, lr=0.1)
    with pytest.raises(FloatingPointError):
        opt.step({"w": np.array([np.nan, 0.0])})
    assert np.all(p["w"] == 0)


def test_state_round_trip():
    p = {"w": np.ones(3)}
    a = Optimizer(p, lr=0.1)
    a.step({"w": np.ones(3)})
    b = Optimizer({"w": np.ones(3)}, lr=0.1)
    b.load_state_dict(a.state_dict())
    assert b.t == 1 and np.array_equal(b.m["w"], a.m["w"])
    with pytest.raises(ValueError):
        Optimizer({"w": np.ones(3)}, lr=0.1, kind="adamax").load_state_dict(a.state_dict())


def test_schedules():
    assert [StepLR(100, 0.5).factor(e) for e in (0, 99, 100, 250)] == [1, 1, 0.5, 0.25]
    assert LinearDecay(200).factor(50) == pytest.approx(0.75)
    assert make_schedule(None).factor(7) == 1.0
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule({"kind": "cosine"})
    with pytest.raises(ValueError, match="unknown optimiser"):
        Optimizer({"w": np.ones(1)}, lr=0.1, kind="sgd")


def test_linear_warmup_rises_then_is_the_other_schedule():
    warm = make_schedule({"kind": "linear", "total": 10, "warmup": 4})
    # epochs 0-3: (e + 1) / 4 of the linear decay's factor; from epoch 4 on: the decay alone
    expected = [0.25 * 1.0, 0.5 * 0.9, 0.75 * 0.8, 1.0 * 0.7, 0.6, 0.5, 0.0]
    got = [warm.factor(e) for e in (0, 1, 2, 3, 4, 5, 10)]
    assert got == pytest.approx(expected, abs=1e-15)
    assert [make_schedule({"kind": "constant", "warmup": 2}).factor(e) for e in range(4)] == [
        0.5, 1, 1, 1]
    assert make_schedule({"kind": "step", "step_size": 3, "warmup": 0}).factor(1) == 1.0
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="warm-up epochs"):
            make_schedule({"kind": "linear", "total": 10, "warmup": bad})
    with pytest.raises(ValueError, match="constant schedule takes no settings"):
        make_schedule({"kind": "constant", "total": 10})
