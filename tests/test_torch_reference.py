"""spikesim's float64 BPTT against an independent PyTorch-autograd implementation.

PyTorch is optional (not a spikesim dependency): without it this whole module is skipped.
"""
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is optional; the torch cross-check needs it")

from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig, SurrogateConfig  # noqa: E402
from spikesim.network import Network, initial_state  # noqa: E402
from validation.torch_reference import TorchNet, rel_err, torch_available  # noqa: E402

TOL = 1e-10
L = LayerConfig


def _problem(cfg, B, T, seed, state_mode="zeros", mask=False, carry=False):
    rng = np.random.default_rng(seed)
    net = Network(cfg, seed=seed, dtype=np.float64)
    for k, v in net.params.items():
        if k.endswith("W_in"):
            v *= 3.0
        elif k.endswith("b_in"):
            v += rng.normal(0, 0.1, v.shape)
    x = (rng.random((B, T, cfg.n_in)) < 0.3) * rng.random((B, T, cfg.n_in))
    if cfg.loss.kind == "nll_per_step":
        labels = rng.integers(0, cfg.n_out, (B, T))
        if mask:
            labels[rng.random((B, T)) < 0.25] = -1
    else:
        labels = rng.integers(0, cfg.n_out, B)
    state = (initial_state(cfg, B, np.float64, "random", rng=rng, spikes=True)
             if state_mode == "random" else None)
    c = rng.random((B, cfg.n_out)) * 2.0 if carry else None
    return net, x, labels, state, c


def _assert_agree(cfg, B=3, T=30, seed=0, **kw):
    net, x, labels, state, carry = _problem(cfg, B, T, seed, **kw)
    loss, grads, _, trace = net.loss_and_grad(x, labels, state, carry=carry)
    rates = [r for r in trace.firing_rates() if r is not None]
    assert all(r > 0 for r in rates), f"a silent layer makes the check weak: {rates}"
    tloss, tgrads = TorchNet(cfg, net.params, dtype=torch.float64).loss_and_grads(
        x, labels, state, carry)
    assert abs(loss - tloss) <= TOL * abs(loss)
    assert set(tgrads) == set(grads)
    errs = {k: rel_err(grads[k], tgrads[k]) for k in grads}
    bad = {k: e for k, e in errs.items() if e > TOL}
    assert not bad, bad
    return grads, tgrads


@pytest.mark.parametrize("surrogate", ["multi_gaussian", "gaussian", "linear", "slayer", "smooth"])
def test_rec_alif_integrator_ce_sum_softmax(surrogate):
    sur = SurrogateConfig(surrogate, k=1.5)
    cfg = NetworkConfig(5, [L(8, "rec", b_j0=0.1, tau_m=(20, 5), tau_adp=(150, 10), surrogate=sur),
                            L(4, "integrator", tau_m=(20, 5))], LossConfig("ce_sum_softmax", 5))
    _assert_agree(cfg, T=30, seed=1)


def test_rec_lif_dense_alif_nll_masked_frozen_tau():
    cfg = NetworkConfig(4, [L(10, "rec", name="hidden", beta=0.0, b_j0=0.1, tau_adp=7.0,
                              train_tau_m=False),
                            L(6, "dense", name="out", b_j0=0.1, tau_adp=100.0,
                              surrogate=SurrogateConfig("gaussian"))],
                        LossConfig("nll_per_step", 4))
    grads, tgrads = _assert_agree(cfg, T=30, seed=2, mask=True)
    assert not np.any(tgrads["hidden.tau_m"])          # frozen: zero, as spikesim returns
    assert np.any(tgrads["out.tau_m"]) and np.any(tgrads["hidden.W_rec"])


def test_rec_rec_dense_alif_ce_sum_spike_random_state_and_carry():
    cfg = NetworkConfig(4, [L(8, "rec", tau_adp=(200, 25), tau_m=(20, 5)),
                            L(10, "rec", tau_adp=(200, 25), tau_m=(20, 5), dt=0.8),
                            L(5, "dense", tau_adp=(200, 25), tau_m=(20, 5))],
                        LossConfig("ce_sum_spike", 0))
    _assert_agree(cfg, T=30, seed=3, state_mode="random", carry=True)


def test_detects_a_wrong_surrogate():
    """The comparison is not vacuous: a slightly different surrogate width is caught."""
    import dataclasses
    cfg = NetworkConfig(5, [L(8, "rec", b_j0=0.1), L(4, "integrator")],
                        LossConfig("ce_sum_softmax", 0))
    net, x, labels, state, _ = _problem(cfg, 3, 25, 4)
    _, grads, _, _ = net.loss_and_grad(x, labels, state)
    wrong = dataclasses.replace(cfg, layers=[
        dataclasses.replace(cfg.layers[0], surrogate=SurrogateConfig("multi_gaussian", sigma=0.52)),
        cfg.layers[1]])
    _, tgrads = TorchNet(wrong, net.params, dtype=torch.float64).loss_and_grads(x, labels, state)
    assert max(rel_err(grads[k], tgrads[k]) for k in grads) > 1e-4


def test_float32_default_and_bad_params():
    cfg = NetworkConfig(3, [L(4, "rec"), L(2, "integrator")], LossConfig("ce_sum_softmax", 0))
    net = Network(cfg, seed=0, dtype=np.float32)
    tnet = TorchNet(cfg, net.params)
    assert all(v.dtype == torch.float32 for v in tnet.params.values())
    loss, grads = tnet.loss_and_grads(np.zeros((2, 5, 3), np.float32), np.array([0, 1]))
    assert np.isfinite(loss) and all(g.dtype == np.float32 for g in grads.values())
    bad = dict(net.params)
    bad["layer0.W_in"] = np.zeros((4, 4), np.float32)
    with pytest.raises(ValueError):
        TorchNet(cfg, bad)
    with pytest.raises(KeyError):
        TorchNet(cfg, {k: v for k, v in net.params.items() if k != "layer1.tau_m"})


def test_module_imports_without_torch():
    assert torch_available()
    code = ("import sys; sys.modules['torch'] = None\n"
            "import validation.torch_reference as m\n"
            "assert not m.torch_available()\n"
            "assert m.main(['--check']) == 2\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
