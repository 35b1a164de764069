"""One registry of initial states, one evaluation loop, one softmax, and the network presets
in the model layer: what the trainer and the tasks share."""
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from spikesim.io.checkpoint import load_checkpoint, save_checkpoint
from spikesim.model import presets
from spikesim.model.readout import log_softmax, running_sum, softmax
from spikesim.model.state import INITIAL_STATES, preset_state, state_name, state_spec
from spikesim.network import Network
from spikesim.tasks import ecg, smnist, synthetic
from spikesim.train.evaluate import evaluate
from spikesim.train.trainer import ArrayDataset, TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]
OLD_ECG_RUN = ROOT / "experiments" / "ecg" / "runs" / "all618-b32-taumin1-seed4"


# ---------------------------------------------------------------------------- presets
def test_tasks_take_their_networks_from_the_presets():
    assert ecg.network_config is presets.ecg_config
    assert smnist.nmi_config is presets.smnist_nmi_config
    assert smnist.icons_config is presets.smnist_icons_config
    assert presets.PRESETS["ecg"] is presets.ecg_config
    assert (ecg.N_IN, ecg.N_CLASSES, ecg.START) == (4, 6, 10)


# ---------------------------------------------------------------------------- initial states
@pytest.mark.parametrize("spec, name", [
    ({"mode": "zeros"}, "zeros"),
    ({"mode": "random", "scale": "b_j0"}, "random-nmi"),                   # S-MNIST, older
    ({"mode": "random", "scale": "b_j0", "spikes": False}, "random-nmi"),  # ECG, older
    ({"mode": "random", "scale": 1.0, "spikes": True}, "random-icons"),
    ("random-nmi2020", "random-nmi2020"),
])
def test_older_specs_read_as_preset_names(spec, name):
    assert state_name(spec) == name
    assert TrainConfig(init_state=spec).init_state == name


def test_unknown_initial_states_are_refused():
    for bad in ("official", {"mode": "random", "scale": 0.5}, {"mode": "ones"}, {"nope": 1}):
        with pytest.raises(ValueError):
            state_name(bad)
    with pytest.raises(ValueError, match="unknown initial state"):
        TrainConfig(init_state="random")


def test_task_choices_map_onto_the_registry():
    assert ecg.preset_name("random", "nmi") == "random-nmi"
    assert ecg.preset_name("random", "icons") == "random-icons"
    assert smnist.preset_name("random", "pth") == "random-nmi2020"
    assert smnist.preset_name("random", "ckpt") == "random-nmi-smnist"
    assert smnist.preset_name("official") == "random-nmi-smnist"
    assert smnist.preset_name("official2020") == "random-nmi2020"
    for choices, fn in ((ecg.INIT_STATE_CHOICES, ecg.preset_name),
                        (smnist.INIT_STATE_CHOICES, smnist.preset_name)):
        assert all(fn(c) in INITIAL_STATES for c in choices)


def test_preset_state_draws_the_state_then_the_sum():
    cfg = presets.smnist_nmi_config(k=2, hidden=(3, 4, 5))
    st, carry = preset_state(cfg, "zeros", 2, np.float64, np.random.default_rng(0))
    assert carry is None and not any(u.any() or s.any() for u, s, _ in st.values())
    rng = np.random.default_rng(1)
    st, carry = preset_state(cfg, "random-nmi2020", 2, np.float64, rng)
    ref = np.random.default_rng(1)
    for layer in cfg.layers:                      # u, s ~ U[0,1) per layer, then the sum
        np.testing.assert_array_equal(st[layer.name][0], ref.random((2, layer.size)))
        np.testing.assert_array_equal(st[layer.name][1], ref.random((2, layer.size)))
    np.testing.assert_array_equal(carry, ref.random((2, 10)))
    st, carry = preset_state(cfg, "random-nmi-smnist", 2, np.float64, np.random.default_rng(4))
    ref = np.random.default_rng(4)
    assert carry is None
    for layer in cfg.layers:     # the later script: s = u ~ U[0,1) b_j0 in the hidden layers
        u, s, b = st[layer.name]
        np.testing.assert_array_equal(u, ref.random((2, layer.size)) * layer.b_j0)
        np.testing.assert_array_equal(s, u if layer is not cfg.layers[-1] else 0 * u)
        assert (b == layer.b_j0).all() and u.any()
    st, carry = preset_state(presets.ecg_config(), "random-nmi2020", 2, np.float64, rng)
    assert carry is None                          # a per-step loss has no sum
    assert state_spec("random-nmi2020") == {"mode": "random", "scale": 1.0, "spikes": True}


def test_an_older_checkpoint_resumes_without_complaint(tmp_path):
    """A run saved before the registry (train config ``init_state`` a dict, the batch index
    under "batch"): its TrainConfig reads back and the Trainer resumes it without a warning."""
    src = OLD_ECG_RUN / "best_train.ckpt"
    if not src.is_file():
        pytest.skip(f"{src} not found")
    ck = load_checkpoint(src)
    assert isinstance(ck.config["train"]["init_state"], dict) and "batch" in ck.extra
    tc = TrainConfig.from_dict(ck.config["train"])
    assert tc.init_state == "random-nmi" and tc.seed == 4
    shutil.copyfile(src, tmp_path / "last.ckpt")
    net = Network(ck.config["network"], dtype=np.float32)
    tc.epochs = ck.epoch + 1
    rng = np.random.default_rng(0)
    data = ArrayDataset((rng.random((8, 40, 4)) < 0.2).astype(np.float32),
                        rng.integers(0, 6, (8, 40)))
    t = Trainer(net, tc, data, out_dir=tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t.resume()
    assert (t.epoch, t.batch_index) == (ck.epoch, 0)
    t.fit()
    assert t.history[-1]["epoch"] == ck.epoch + 1
    assert load_checkpoint(tmp_path / "last.ckpt").config["train"]["init_state"] == "random-nmi"
    m = json.loads((tmp_path / "manifest.json").read_text())
    assert m["resumes"][0]["epoch"] == ck.epoch


def test_a_mid_epoch_checkpoint_with_the_older_batch_key(tmp_path):
    net = Network(synthetic.network_config(hidden=8), seed=0)
    tr, _ = synthetic.datasets(n_train=48, n_test=16, seed=0)
    cfg = TrainConfig(epochs=1, batch_size=16, seed=0)
    t = Trainer(net, cfg, tr, out_dir=tmp_path, progress=False)
    t.fit()
    ck = load_checkpoint(tmp_path / "last.ckpt")
    train = dict(ck.config["train"], init_state={"mode": "zeros"})
    extra = {k: v for k, v in ck.extra.items() if k != "batch_index"}
    save_checkpoint(tmp_path / "last.ckpt", ck.params, dict(ck.config, train=train),
                    ck.optimizer_state, epoch=0, seed=0, extra=dict(extra, batch=2))
    t2 = Trainer(Network(synthetic.network_config(hidden=8), seed=0), cfg, tr,
                 out_dir=tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert t2.resume()
    assert (t2.epoch, t2.batch_index) == (0, 2)


# ---------------------------------------------------------------------------- evaluation
def test_evaluate_batches_callback_and_collect():
    _, te = synthetic.datasets(n_train=8, n_test=50, seed=0)
    net = Network(synthetic.network_config(hidden=12), seed=0)
    seen = []

    def on_batch(b):
        seen.append((b.start, len(b.idx), b.carry))
        assert b.result.pred.shape == (len(b.idx),) and b.trace.output_mem.shape[1] == len(b.idx)

    r = evaluate(net, te, 16, "random-nmi", seed=3, collect=True, on_batch=on_batch)
    assert seen == [(0, 16, None), (16, 16, None), (32, 16, None), (48, 2, None)]
    assert not net.reuse_buffers                    # restored
    assert r["n_samples"] == 50 and r["count"] == 50
    assert r["accuracy"] == (r["predictions"] == r["labels"]).mean()
    np.testing.assert_array_equal(r["labels"], te.labels)
    np.testing.assert_array_equal(r["predictions"], r["logits"].argmax(1))
    assert r["firing_rates"][1] is None and 0 <= r["firing_rates"][0] <= 1
    again = evaluate(net, te, 16, "random-nmi", seed=3)
    assert again["loss"] == r["loss"] and again["accuracy"] == r["accuracy"]
    other = evaluate(net, te, 16, "random-nmi", seed=4)
    assert other["loss"] != r["loss"]
    one = evaluate(net, te, 64, "zeros")                 # zeros: the batch size changes nothing
    assert one["loss"] == pytest.approx(evaluate(net, te, 7, "zeros")["loss"], rel=1e-6)


# ---------------------------------------------------------------------------- softmax
def test_softmax_and_log_softmax():
    z = np.random.default_rng(0).normal(size=(3, 4, 5)) * 30
    p = softmax(z, axis=1)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(np.log(p), log_softmax(z, axis=1), atol=1e-9)
    np.testing.assert_allclose(softmax(z + 1000.0), softmax(z), rtol=1e-12)   # no overflow
    assert softmax(z.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize("kind", ["ce_sum_softmax", "ce_sum_spike"])
def test_running_sum_ends_at_the_losses_readout(kind):
    """The last step of the running readout sum is the summed readout the loss uses."""
    from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
    last = "integrator" if kind == "ce_sum_softmax" else "dense"
    cfg = NetworkConfig(3, [LayerConfig(6, "rec", name="h"), LayerConfig(4, last, name="o")],
                        LossConfig(kind, start=0))
    net = Network(cfg, seed=1, dtype=np.float64)
    rng = np.random.default_rng(0)
    x = (rng.random((5, 30, 3)) < 0.3).astype(np.float64)
    trace = net.forward(x)
    carry = rng.random((5, 4))
    res = net.loss(trace, rng.integers(0, 4, 5), carry=carry)
    out = trace.output_spikes if cfg.loss.readout == "spike" else trace.output_mem
    run = running_sum(out, cfg.loss.readout, carry)
    np.testing.assert_allclose(run[-1], res.logits, rtol=1e-12)
