"""``spikesim gradcheck`` itself: it passes on the kernels, covers what it claims to cover, and
can fail (the metric, the activity floor, the truncated-BPTT carry; the mutated kernels are in
``test_gradcheck_mutations.py``)."""
import numpy as np
import pytest

from spikesim.backends.cpu.trace import Trace
from spikesim.model.config import SurrogateConfig
from spikesim.network import Network
from validation import gradcheck, gradcheck_cases, surrogate_check, tbptt_check
from validation.finite_diff import choose_elements, elementwise_error


@pytest.fixture(scope="module")
def full_report():
    return gradcheck.run_all(quick=False, out=lambda *a: None)


def test_full_gradcheck_passes(full_report):
    assert not full_report.failed, full_report.failed
    kinds = {r[0] for r in full_report.rows}
    assert kinds == {"surrogate", "fd", "tbptt-fd", "ref", "tbptt-ref"}


def test_every_surrogate_is_checked_in_every_layer_kind(full_report):
    cfgs = gradcheck_cases.reference_cases()
    for s in gradcheck_cases.SURROGATES:
        cfg = cfgs[f"surrogate {s}"]
        kinds = {(l.kind, l.beta > 0) for l in cfg.layers if l.spiking}
        assert kinds == {("rec", True), ("rec", False), ("dense", True), ("dense", False)}
        assert all(l.surrogate.name == s for l in cfg.layers if l.spiking)
        rows = [r for r in full_report.rows if r[1] == f"surrogate {s}" and r[3] == "ok"]
        assert {r[2].split(".")[0] for r in rows} >= {l.name for l in cfg.layers}
    checked = {r[1] for r in full_report.rows if r[0] == "surrogate" and r[3] == "ok"}
    assert checked == set(surrogate_check.NAMES)


def test_task_cases_use_their_presets():
    """The reference cases are the task networks, with their surrogates and output layers."""
    cfgs = gradcheck_cases.reference_cases()
    icons = cfgs["smnist-icons"]
    assert icons.layers[-1].kind == "dense" and icons.loss.kind == "ce_sum_softmax"
    assert {l.surrogate.name for l in icons.layers if l.spiking} == {"gaussian"}
    assert not any(l.train_tau_m for l in cfgs["ecg-icons"].layers)


def test_wide_fd_cases_run_the_vector_paths():
    """Widths over 128 and not multiples of 16, two batch chunks of more than one neuron block,
    more than two checkpoint spans of b; every layer kind among the wide cases."""
    from spikesim.backends.cpu.layers import BLOCK, CHECK
    wide = [c for c in gradcheck_cases.fd_cases().values() if c.wide]
    widths = [l.size for c in wide for l in c.config.layers]
    assert max(widths) > 128 and all(w % 16 for w in widths)
    for c in wide:
        assert c.batch // 2 * max(l.size for l in c.config.layers) > BLOCK
        assert c.steps > 2 * CHECK and c.steps % CHECK
    kinds = {(l.kind, l.spiking and l.beta > 0) for c in wide for l in c.config.layers}
    assert {("rec", True), ("rec", False), ("dense", True), ("dense", False),
            ("integrator", False)} <= kinds


def test_frozen_and_structurally_zero_gradients_are_not_passes(full_report):
    status = {(r[1], r[2]): r[3] for r in full_report.rows}
    assert status[("ecg", "hidden.tau_adp")] == "zero"           # LIF: beta = 0
    assert status[("ecg-icons", "hidden.tau_m")] == "frozen"
    assert "not checked" in full_report.summary()


def test_activity_floor_fails_a_silent_layer():
    report = gradcheck.Report(out=lambda *a: None)
    report.activity("ref", "case", ["a", "b", "o"], [0.1, 0.01, None])
    assert report.failed and "below" in report.rows[0][6]


def test_elementwise_metric_catches_a_small_element_a_max_norm_misses():
    """Values spanning three orders of magnitude: an error of 1 % in a small element is 1e-5
    of the tensor's maximum (within a max-normalised tolerance) but fails element-wise."""
    want = np.array([1.0, 3e-3, -2e-3, 0.5])
    got = want.copy()
    got[1] *= 1.01
    assert np.max(np.abs(got - want)) / np.max(np.abs(want)) < 1e-4
    e = elementwise_error(got, want, gradcheck.FD_FLOOR)
    assert e.err > 1e-3 and e.index == (1,)
    assert elementwise_error(want, want, gradcheck.FD_FLOOR).err == 0.0


def test_choose_elements_includes_extremes():
    g = np.arange(1.0, 201.0).reshape(10, 20)
    idx = choose_elements(g, 30, np.random.default_rng(0))
    assert len(idx) == 30 == len(set(idx))
    assert (9, 19) in idx and (0, 0) in idx
    assert len(choose_elements(g[:2, :3], 30, np.random.default_rng(0))) == 6


# (Numba's pedantic SSA check warns about the inlined select of a scalar loop; harmless)
@pytest.mark.filterwarnings("ignore::numba.core.errors.NumbaIRAssumptionWarning")
def test_smooth_spike_vector_loop_equals_scalar_function():
    """The smooth spike and its derivative run in the 16-lane loops; they equal the compiled
    scalar functions of spikesim.model on every lane (masked tail included)."""
    from numba import njit

    from spikesim.model.surrogates import sg_smooth, smooth_spike, surrogate_consts

    @njit
    def scalar(x, sp):
        s, g = np.empty_like(x), np.empty_like(x)
        for i in range(x.size):
            s[i], g[i] = smooth_spike(x[i], sp), sg_smooth(x[i], sp)
        return s, g
    cfg = SurrogateConfig("smooth", k=1.5)
    x = np.linspace(-9, 9, 37)
    s, g = scalar(x, surrogate_consts(cfg, np.float64))
    np.testing.assert_allclose(surrogate_check.kernel_smooth_spike(cfg, x), s, rtol=4e-16,
                               atol=0)
    np.testing.assert_allclose(surrogate_check.kernel_derivative(cfg, x), g, rtol=1e-15, atol=0)


def _tbptt_bad_rows(case_name):
    report = gradcheck.Report(out=lambda *a: None)
    gradcheck.check_tbptt_reference(report, only=[case_name])
    assert report.rows
    return report.failed


@pytest.mark.parametrize("case", list(tbptt_check.tbptt_cases()))
def test_tbptt_check_fails_when_the_carried_state_is_wrong(case, monkeypatch):
    assert not _tbptt_bad_rows(case)
    good = Trace.final_state

    def stale_trace(self, cfg):          # the adaptation trace not carried: b back to b_j0
        out = good(self, cfg)
        return {k: (u, s, np.full_like(b, layer.b_j0))
                for layer, (k, (u, s, b)) in zip(cfg.layers, out.items())}
    monkeypatch.setattr(Trace, "final_state", stale_trace)
    assert _tbptt_bad_rows(case)


def test_tbptt_check_fails_when_the_running_sum_is_dropped(monkeypatch):
    case = "shd (ce_sum_softmax, carried sum)"
    good = Network.loss

    def no_carry(self, trace, labels, carry=None, grad=False, start=None):
        return good(self, trace, labels, carry=None, grad=grad, start=start)
    monkeypatch.setattr(Network, "loss", no_carry)
    assert _tbptt_bad_rows(case)


def test_gradcheck_command(capsys):
    assert gradcheck.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert " 0 failed" in out and "checks in" in out
    for kind in ("surrogate", "fd", "tbptt-fd", "ref", "tbptt-ref"):
        assert f" {kind} " in out
